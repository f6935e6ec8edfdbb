"""Least privilege, measured: which of a credential's scopes its allowed requests used.

A request that passes its scope check *uses* the scopes it was required to hold: the
concrete scopes a route (``require``), a forward-auth check (``X-Apiward-Require``) or a
verify call (``scopes``) asked for, whichever of the credential's scopes (a wildcard
included) granted them. Each use is counted per credential (an API key, or the OAuth
client behind a token), per UTC day and per scope: one stored row per (credential, day,
scope used), holding a count.

``report`` compares what was used with what the credential holds now: the scopes it
holds that no allowed request needed, and the narrowest scopes that would still have
allowed every counted request (what "narrow to what was used" sets).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from apiward.core import times
from apiward.core.errors import InvalidInput
from apiward.core.scopes import ScopeSet, normalise, parse

DAY = 86400
DEFAULT_SPAN = timedelta(days=30)


def day_of(moment: datetime) -> int:
    """The UTC day ``moment`` falls in, as days since 1970-01-01."""
    return int(moment.timestamp()) // DAY


def date_of(day: int) -> date:
    return date(1970, 1, 1) + timedelta(days=day)


@dataclass(frozen=True, slots=True)
class ScopeUse:
    """``count`` allowed requests of one credential that used ``scope`` on ``day``."""

    day: int
    org_id: str
    environment: str
    credential_id: str
    scope: str
    count: int


@dataclass(frozen=True, slots=True)
class Used:
    """A scope the credential's requests used over the span."""

    scope: str
    requests: int
    last_day: int
    granted_by: str | None
    """The credential's scope that grants it now (None: it no longer does)."""


@dataclass(frozen=True, slots=True)
class Report:
    since: datetime
    until: datetime
    granted: list[str]
    used: list[Used]
    unused: list[str]
    """The credential's scopes that grant none of the used ones."""
    narrowed: list[str]
    """What the credential's scopes would be if narrowed to what was used (and is still
    granted); empty when nothing was used."""


def since(text: str | None, now: datetime, retention: timedelta) -> datetime:
    """The start of the span asked: an ISO time or date, or a span back from ``now``
    (``7d``, ``24h``); 30 days when absent. A clear 400 for anything else, a time in
    the future, or one before the counts are kept."""
    if not text:
        return now - DEFAULT_SPAN
    start = times.instant(text.strip(), name="since", now=now)
    if start > now:
        raise InvalidInput("since must not be in the future.")
    if start < now - retention:
        days = retention.days
        raise InvalidInput(f"since reaches back at most {days} days (the counts' retention).")
    return start


def report(
    granted: Sequence[str], uses: Iterable[ScopeUse], since: datetime, until: datetime
) -> Report:
    """Compare the uses counted with the scopes the credential holds."""
    held = ScopeSet(granted)
    totals: dict[str, int] = {}
    last: dict[str, int] = {}
    for use in uses:
        totals[use.scope] = totals.get(use.scope, 0) + use.count
        last[use.scope] = max(last.get(use.scope, use.day), use.day)
    used = [
        Used(scope, totals[scope], last[scope], _granted_by(held, scope))
        for scope in sorted(totals)
    ]
    patterns = held.as_list()
    unused = [p for p in patterns if not any(ScopeSet([p]).grants(u.scope) for u in used)]
    still = [u.scope for u in used if u.granted_by is not None]
    return Report(since, until, patterns, used, unused, normalise(still))


def _granted_by(held: ScopeSet, scope: str) -> str | None:
    """The narrowest of ``held``'s patterns granting ``scope`` (the scope itself first)."""
    try:
        parse(scope)
    except InvalidInput:
        return None
    granting = [p for p in held if ScopeSet([p]).grants(scope)]
    return min(granting, key=lambda p: (p.count("*"), p)) if granting else None
