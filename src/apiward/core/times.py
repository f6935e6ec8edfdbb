"""Times and durations that come from outside: the one way in, and the range apiward takes.

Every time a caller gives (an API body or query parameter, a dashboard form or query
string, a CLI option, an imported key's expiry) goes through :func:`instant`, which
answers an aware UTC datetime or refuses the input with :class:`InvalidInput` (a 400
over HTTP). The range is :data:`EARLIEST` to :data:`LATEST`: far enough inside what a
``datetime`` holds (years 1 to 9999) that adding the longest duration apiward adds to a
time (:data:`LONGEST`: a retention, a grace, an expiry span) or taking it away never
overflows, and so that converting to UTC from any offset (at most 23:59 either way,
RFC 3339 section 5.6) never does either. Durations from outside go through
:func:`duration`, bounded by :data:`LONGEST`.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

from apiward.core.errors import InvalidInput

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
"""The earliest time accepted (the Unix epoch)."""
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
"""The latest time accepted: near a thousand years short of ``datetime.max``."""
LONGEST = timedelta(days=36_500)
"""The longest duration accepted (an expiry span, a retention): 100 years."""

_SPAN = re.compile(r"^(\d{1,12})([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_EXAMPLE = "2030-01-01T00:00:00Z"


def _range() -> str:
    return f"between {EARLIEST:%Y-%m-%dT%H:%M:%SZ} and {LATEST:%Y-%m-%dT%H:%M:%SZ}"


def instant(
    value: str | datetime | date,
    *,
    name: str = "time",
    zoned: bool = False,
    now: datetime | None = None,
) -> datetime:
    """The aware UTC time an input names, within ``EARLIEST..LATEST``, or InvalidInput.

    ``value`` is an ISO 8601 time (RFC 3339; ``Z`` or an offset), a datetime already
    parsed, or a date (00:00 UTC that day). A time without an offset is UTC, unless
    ``zoned`` asks for one. With ``now``, a span back from it is accepted too: ``15m``,
    ``24h``, ``7d`` (``s``, ``m``, ``h`` or ``d``, at most :data:`LONGEST`)."""
    if isinstance(value, str):
        text = value.strip()
        back = span(text, name=name) if now is not None else None
        if back is not None and now is not None:
            return instant(now - back, name=name)
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            spans = ", or a span back from now: 15m, 24h, 7d" if now is not None else ""
            raise InvalidInput(
                f"{name} {value[:64]!r} is not an ISO time (ISO 8601), e.g. {_EXAMPLE}{spans}."
            ) from None
        return instant(parsed, name=name, zoned=zoned)
    if not isinstance(value, datetime):
        value = datetime.combine(value, time(), tzinfo=UTC)
    if value.tzinfo is None or value.utcoffset() is None:
        if zoned:
            raise InvalidInput(f"{name} needs a time zone, e.g. {_EXAMPLE}.")
        value = value.replace(tzinfo=UTC)
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(f"{name} must be {_range()}.") from None
    if not EARLIEST <= utc <= LATEST:
        raise InvalidInput(f"{name} must be {_range()}.")
    return utc


def span(text: str, *, name: str = "span") -> timedelta | None:
    """A span such as ``90s``, ``15m``, ``24h`` or ``7d`` (at most :data:`LONGEST`, else
    InvalidInput); None when ``text`` is no span."""
    match = _SPAN.match(text.strip())
    if match is None:
        return None
    return duration(int(match.group(1)) * _UNITS[match.group(2)], name=name)


def duration(seconds: float, *, name: str = "duration", most: timedelta = LONGEST) -> timedelta:
    """A duration from outside, 0 to ``most`` (at most :data:`LONGEST`), or InvalidInput."""
    most = min(most, LONGEST)
    if not 0 <= seconds <= most.total_seconds():  # NaN fails both
        raise InvalidInput(
            f"{name} must be between 0 and {int(most.total_seconds())} seconds ({most.days} days)."
        )
    return timedelta(seconds=seconds)


def later(start: datetime, seconds: float, *, name: str = "duration") -> datetime:
    """``start`` plus a duration from outside, both within range, or InvalidInput."""
    return instant(start + duration(seconds, name=name), name=name)
