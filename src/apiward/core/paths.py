"""The path of an original request, as route rules must see it.

A proxy reports the path its client asked for as the client wrote it (nginx's
``$request_uri``). Upstreams decode and resolve it before routing, so ``/v1/%74hings``,
``/v1//things``, ``/v1/./things`` and ``/v1/x/../things`` all reach ``/v1/things``:
route rules and limits must match on that same canonical form (RFC 3986 section 6.2.2),
or a client picks the spelling that escapes them.

``canonical`` drops the query, decodes percent-encoded unreserved characters, writes the
remaining escapes in upper case, removes dot segments (section 5.2.4) and collapses
repeated slashes. It refuses what has no single meaning: a path that is not absolute,
bad or non-ASCII escapes, encoded ``/``, ``\\`` or NUL (an upstream may or may not decode
them), control characters, and ``..`` above the root.
"""

from __future__ import annotations

import re
import string

from apiward.core.errors import InvalidInput

MAX_PATH = 2048
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_ESCAPE = re.compile(r"%(.{0,2})")
_AMBIGUOUS = frozenset({"2F", "5C", "00"})


def _bad(uri: str, why: str) -> InvalidInput:
    return InvalidInput(f"The original request's path {uri[:80]!r} {why}.")


def _decode(path: str, uri: str) -> str:
    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        if len(code) != 2 or not all(c in string.hexdigits for c in code):
            raise _bad(uri, "has an invalid percent-escape")
        code = code.upper()
        if code in _AMBIGUOUS:
            raise _bad(uri, "encodes '/', '\\' or NUL, which upstreams read differently")
        char = chr(int(code, 16))
        if int(code, 16) > 0x7F:
            return f"%{code}"  # a byte of UTF-8: kept escaped, in one spelling
        if int(code, 16) < 0x20 or code == "7F":
            raise _bad(uri, "encodes a control character")
        return char if char in _UNRESERVED else f"%{code}"

    return _ESCAPE.sub(one, path)


def _remove_dot_segments(segments: list[str], uri: str) -> list[str]:
    out: list[str] = []
    for segment in segments:
        if segment == ".":
            continue
        if segment == "..":
            if not out:
                raise _bad(uri, "climbs above the root with '..'")
            out.pop()
            continue
        out.append(segment)
    return out


def canonical(uri: str) -> str:
    """The canonical path of a request target (``/v1/things``), or ``InvalidInput``."""
    path = uri.split("?", 1)[0].split("#", 1)[0]
    if len(path) > MAX_PATH:
        raise _bad(uri, f"is longer than {MAX_PATH} characters")
    if not path.startswith("/"):
        raise _bad(uri, "does not start with '/'")
    if not path.isascii() or any(ord(c) < 0x21 or ord(c) == 0x7F for c in path):
        raise _bad(uri, "holds characters a request line cannot")
    decoded = _decode(path, uri)
    trailing = decoded.endswith(("/", "/.", "/.."))
    segments = [s for s in decoded.split("/") if s]
    kept = _remove_dot_segments(segments, uri)
    result = "/" + "/".join(kept)
    if trailing and kept:
        result += "/"
    return result
