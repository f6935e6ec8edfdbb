"""Reading the response headers apiward sends: ``Retry-After`` and ``WWW-Authenticate``."""

from __future__ import annotations

import math
import re
from email.utils import parsedate_to_datetime

__all__ = ["parse_bearer_challenge", "parse_retry_after"]

# RFC 9110 section 11.2: auth-param = token BWS "=" BWS ( token / quoted-string )
_AUTH_PARAM = re.compile(r'([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]+)')


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait according to a ``Retry-After`` value (RFC 9110 section 10.2.3).

    The value is either a number of seconds or an HTTP date, read against ``now``
    (Unix seconds). A date in the past means "now" (0.0); anything unreadable is
    ``None``.

    >>> parse_retry_after("7", now=0.0)
    7.0
    >>> parse_retry_after("Thu, 01 Jan 1970 00:01:00 GMT", now=30.0)
    30.0
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive parse means "-0000"
            return None
        return max(0.0, when.timestamp() - now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def parse_bearer_challenge(value: str | None) -> dict[str, str]:
    """The parameters of a ``Bearer`` challenge (RFC 6750 section 3), lower-cased names.

    >>> parse_bearer_challenge('Bearer realm="apiward", error="invalid_token"')
    {'realm': 'apiward', 'error': 'invalid_token'}
    """
    if not value:
        return {}
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return {}
    params: dict[str, str] = {}
    for name, raw in _AUTH_PARAM.findall(rest):
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params.setdefault(name.lower(), raw)
    return params
