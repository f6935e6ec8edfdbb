"""The path and method of an original request, as route rules must see them.

A proxy reports the path its client asked for as the client wrote it (nginx's
``$request_uri``). Upstreams decode and resolve it before routing, so ``/v1/%74hings``,
``/v1//things``, ``/v1/./things`` and ``/v1/x/../things`` all reach ``/v1/things``:
route rules and limits must match on that same canonical form (RFC 3986 section 6.2.2),
or a client picks the spelling that escapes them.

``canonical`` drops the query (everything from the first ``?``, where every parser
splits it), decodes percent-encoded unreserved characters, writes the remaining escapes
in upper case, removes dot segments (section 5.2.4), collapses repeated slashes and drops
a trailing slash: upstream routers commonly serve ``/v1/things/`` as ``/v1/things``
(strict routing is rarely on), so both, and ``/v1/things/.``, are one route to the rules.

It refuses what upstreams read differently (docs/forward-auth.md), rather than guess
which reading the upstream behind the proxy takes:

- characters a path cannot hold (RFC 3986 section 3.3 allows unreserved characters,
  escapes, sub-delimiters, ``:``, ``@`` and ``/``): non-ASCII, controls and spaces
  (WHATWG URL parsers drop tabs and newlines), ``\\`` (which WHATWG parsers read as
  ``/``), ``#`` (a fragment to them, part of the path to others), ``"``, ``<``, ``>``,
  ``^``, ``|``, ``{``, ``}``, `````, ``[`` and ``]``;
- ``;``, raw or encoded: path parameters, which servlet containers strip from a segment
  (``/v1/things;x`` is ``/v1/things`` to them) and others keep;
- encoded ``/``, ``\\`` and NUL (an upstream may or may not decode them), and other
  encoded controls;
- a dot segment written with escapes (``%2e``, ``.%2E``): WHATWG parsers resolve it,
  parsers that resolve before decoding do not;
- a path starting ``//``, which WHATWG parsers read as a host (``//v1/things`` is the
  path ``/things`` on the host ``v1``);
- bad escapes, and ``..`` above the root.
"""

from __future__ import annotations

import re
import string

from apiward.core.errors import InvalidInput

MAX_PATH = 2048
MAX_METHOD = 32
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
# RFC 3986 section 3.3: pchar and '/', without ';' (see the module's docstring) and with
# '%' (escapes are judged one by one).
_PATH_CHARS = frozenset(_UNRESERVED | set("!$&'()*+,=:@/%"))
_ESCAPE = re.compile(r"%(.{0,2})")
_AMBIGUOUS = {"2F": "'/'", "5C": "'\\'", "00": "NUL", "3B": "';'"}
_DOTS = frozenset({".", ".."})
# RFC 9110 section 9.1: a method is a token.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _bad(uri: str, why: str) -> InvalidInput:
    return InvalidInput(f"The original request's path {uri[:80]!r} {why}.")


def _decode(path: str, uri: str) -> str:
    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        if len(code) != 2 or not all(c in string.hexdigits for c in code):
            raise _bad(uri, "has an invalid percent-escape")
        code = code.upper()
        if code in _AMBIGUOUS:
            raise _bad(uri, f"encodes {_AMBIGUOUS[code]}, which upstreams read differently")
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
    path = uri.split("?", 1)[0]
    if len(path) > MAX_PATH:
        raise _bad(uri, f"is longer than {MAX_PATH} characters")
    if not path.startswith("/"):
        raise _bad(uri, "does not start with '/'")
    if path.startswith("//"):
        raise _bad(uri, "starts with '//', which upstreams may read as a host")
    odd = next((c for c in path if c not in _PATH_CHARS), None)
    if odd == ";":
        raise _bad(uri, "holds ';' path parameters, which upstreams read differently")
    if odd is not None:
        raise _bad(uri, f"holds {odd!r}, which a path cannot hold (RFC 3986 section 3.3)")
    raw_segments = [s for s in path.split("/") if s]
    decoded = [_decode(s, uri) for s in raw_segments]
    if any(d in _DOTS and r not in _DOTS for r, d in zip(raw_segments, decoded, strict=True)):
        raise _bad(uri, "has an encoded dot segment, which upstreams read differently")
    return "/" + "/".join(_remove_dot_segments(decoded, uri))


def original_method(raw: str) -> str:
    """The original request's method, upper case (route rules compare it so), or
    ``InvalidInput`` for what is not one token (RFC 9110 section 9.1)."""
    if len(raw) > MAX_METHOD or not _TOKEN.fullmatch(raw):
        raise InvalidInput(f"The original request's method {raw[:40]!r} is not a method.")
    return raw.upper()
