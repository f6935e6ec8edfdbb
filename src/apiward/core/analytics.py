"""Verification analytics: what every authentication decision is counted as.

A decision is counted once, per minute, under its organisation, environment, credential
(an API key or an OAuth client), route and outcome. Each count lands in its minute, its
hour and its day at once (``GRANULARITIES``), so every granularity is exact without a
roll-up pass, and each keeps its own retention. The outcomes are the verify API's codes,
and the two refusals of metering; ``WOULD_REFUSE`` counts what rules in report mode
would have refused of the admitted requests.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from apiward.core import errors as e
from apiward.core import times
from apiward.core.errors import InvalidInput

OUTCOMES = (
    "VALID",
    "NOT_FOUND",
    "DISABLED",
    "EXPIRED",
    "REVOKED",
    "FORBIDDEN",
    "INSUFFICIENT_PERMISSIONS",
    "RATE_LIMITED",
    "USAGE_EXCEEDED",
    "WOULD_REFUSE",
)
WOULD_REFUSE = "WOULD_REFUSE"
"""Not a decision of its own: an admitted request (counted ``VALID``) that a rule in
report mode would have refused, counted once more for each such rule."""
GRANULARITIES: dict[str, int] = {"minute": 60, "hour": 3600, "day": 86400}
DIMENSIONS = ("outcome", "key", "client", "route", "environment")
"""What a query may group by."""

# Each refusal's outcome; anything that says "no such key here" is NOT_FOUND, so that a
# caller never learns whether a key exists in another organisation or instance.
_OUTCOMES: dict[type[e.ApiwardError], str] = {
    e.UsageExceeded: "USAGE_EXCEEDED",
    e.RateLimited: "RATE_LIMITED",
    e.LoginThrottled: "RATE_LIMITED",
    e.DisabledCredential: "DISABLED",
    e.ExpiredCredential: "EXPIRED",
    e.ExpiredToken: "EXPIRED",
    e.RevokedCredential: "REVOKED",
    e.RevokedToken: "REVOKED",
    e.InsufficientScope: "INSUFFICIENT_PERMISSIONS",
    e.InvalidScope: "INSUFFICIENT_PERMISSIONS",
    e.PermissionDenied: "FORBIDDEN",
    e.UnauthorizedClient: "FORBIDDEN",
    e.AuthenticationError: "NOT_FOUND",
}


def outcome_of(exc: e.ApiwardError) -> str:
    """The outcome a refusal is counted (and the verify API answers) as."""
    for cls in type(exc).__mro__:
        found = _OUTCOMES.get(cls)
        if found is not None:
            return found
    return "NOT_FOUND"


@dataclass(frozen=True, slots=True)
class Decision:
    """One counted kind of decision, in one minute (``minute``: unix seconds // 60)."""

    minute: int
    org_id: str
    environment: str
    key_id: str
    client_id: str
    route: str
    outcome: str


@dataclass(frozen=True, slots=True)
class Bucket:
    """A stored count: ``count`` decisions of one kind in the bucket starting at ``start``
    (unix seconds), of one granularity. Empty strings stand for "none" (no key, say)."""

    granularity: str
    start: int
    org_id: str
    environment: str
    key_id: str
    client_id: str
    route: str
    outcome: str
    count: int


def buckets(counted: Iterable[tuple[Decision, int]]) -> list[Bucket]:
    """The rows a batch of minute counts adds to, in every granularity."""
    merged: dict[tuple[str, int, str, str, str, str, str, str], int] = {}
    for d, n in counted:
        for granularity, seconds in GRANULARITIES.items():
            start = d.minute * 60 // seconds * seconds
            row = (
                granularity,
                start,
                d.org_id,
                d.environment,
                d.key_id,
                d.client_id,
                d.route,
                d.outcome,
            )
            merged[row] = merged.get(row, 0) + n
    return [Bucket(*row, count=n) for row, n in merged.items()]


@dataclass(frozen=True, slots=True)
class Query:
    """What ``GET /v1/analytics/verifications`` asks, validated."""

    since: datetime
    until: datetime
    granularity: str
    group_by: tuple[str, ...]
    key_id: str | None = None
    client_id: str | None = None
    route: str | None = None
    outcome: str | None = None
    limit: int | None = None

    def buckets(self) -> range:
        """The starts (unix seconds) of the buckets the span ``[since, until)`` touches:
        from the one holding ``since`` to the last that starts before ``until`` (a
        bucket starting at 00:00:00 is before an until of 00:00:00.5)."""
        step = GRANULARITIES[self.granularity]
        first = int(self.since.timestamp()) // step * step
        return range(first, math.ceil(self.until.timestamp()), step)


def moment(
    text: str | None, now: datetime, default: timedelta | None, name: str = "time"
) -> datetime:
    """An ISO time, or a span back from ``now`` (``1h``, ``24h``, ``7d``, ``30d``), as
    ``times.instant`` takes them."""
    if not text:
        return now - default if default is not None else now
    return times.instant(text, name=name, now=now)


def query(
    *,
    since: str | None,
    until: str | None,
    granularity: str | None,
    group_by: str | None,
    now: datetime,
    **filters: str | int | None,
) -> Query:
    """Validate a query's parameters, with a clear message for each mistake."""
    start = moment(since, now, timedelta(hours=24), "since")
    end = moment(until, now, None, "until")
    if start >= end:
        raise InvalidInput("since must be before until.")
    chosen = granularity or ("minute" if end - start <= timedelta(hours=6) else "hour")
    if chosen not in GRANULARITIES:
        raise InvalidInput(f"granularity must be one of: {', '.join(GRANULARITIES)}.")
    steps = (end - start).total_seconds() / GRANULARITIES[chosen]
    if steps > 50_000:
        raise InvalidInput(
            f"{steps:,.0f} {chosen}s is too many; use a coarser granularity or a shorter span."
        )
    groups = tuple(g.strip() for g in (group_by or "outcome").split(",") if g.strip())
    unknown = [g for g in groups if g not in DIMENSIONS]
    if unknown:
        raise InvalidInput(f"group_by takes any of: {', '.join(DIMENSIONS)} (not {unknown}).")
    outcome = filters.get("outcome")
    if outcome is not None and outcome not in OUTCOMES:
        raise InvalidInput(f"outcome must be one of: {', '.join(OUTCOMES)}.")
    limit = filters.get("limit")
    if limit is not None and not (isinstance(limit, int) and 1 <= limit <= 1000):
        raise InvalidInput("limit must be between 1 and 1000.")
    return Query(
        start,
        end,
        chosen,
        tuple(dict.fromkeys(groups)),
        key_id=_text(filters.get("key_id")),
        client_id=_text(filters.get("client_id")),
        route=_text(filters.get("route")),
        outcome=_text(outcome),
        limit=limit if isinstance(limit, int) else None,
    )


def _text(value: str | int | None) -> str | None:
    return None if value is None else str(value)
