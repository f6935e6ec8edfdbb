"""JSON documents read from requests, with their nesting bounded.

``json.loads`` recurses once per level, so a body of a hundred thousand ``[`` exhausts
the interpreter's stack (``RecursionError``, a 500). ``load`` refuses anything nested
deeper than ``MAX_DEPTH`` with a ``ValueError`` the caller turns into a clear 400; the
depth is measured only for a body holding that many brackets at all (a C-speed count),
so ordinary bodies cost nothing more.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32


def depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in ``raw`` (brackets inside strings do
    not count)."""
    deepest = level = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            level += 1
            deepest = max(deepest, level)
        elif byte in (0x5D, 0x7D):  # ] }
            level -= 1
    return deepest


def load(raw: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse a JSON document, refusing one nested deeper than ``max_depth``."""
    data = raw.encode() if isinstance(raw, str) else raw
    if data.count(b"[") + data.count(b"{") > max_depth and depth(data) > max_depth:
        raise ValueError(f"JSON nested deeper than {max_depth} levels")
    return json.loads(data)
