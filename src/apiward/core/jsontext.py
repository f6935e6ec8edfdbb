"""JSON documents: read from requests with their nesting bounded, and written from
plain values only.

``json.loads`` recurses once per level, so a body of a hundred thousand ``[`` exhausts
the interpreter's stack (``RecursionError``, a 500). ``load`` refuses anything nested
deeper than ``MAX_DEPTH`` with a ``ValueError`` the caller turns into a clear 400; the
depth is measured only for a body holding that many brackets at all (a C-speed count),
so ordinary bodies cost nothing more.

``plain`` turns a record's values (times, tuples, dataclasses, enums) into the JSON
types a store's JSON column and a webhook body can hold, the same way every time: a
time as RFC 3339 text (``2030-01-01T00:00:00Z``), a duration as seconds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from datetime import date, datetime, time, timedelta
from enum import Enum
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


def rfc3339(at: datetime) -> str:
    """A time as RFC 3339 text, UTC written ``Z`` (RFC 3339 section 5.6)."""
    text = at.isoformat()
    return text[:-6] + "Z" if at.utcoffset() == timedelta(0) else text


def plain(value: object) -> Any:
    """``value`` as JSON types only (dict, list, str, int, float, bool, None).

    Anything else raises ``TypeError`` at once, where it is made, rather than in the
    store's serialiser or a webhook sender later.
    """
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Enum):
        return plain(value.value)
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted((plain(v) for v in value), key=json.dumps)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    raise TypeError(f"{type(value).__name__} has no JSON form: {value!r}")
