"""Impact before a change: what the last seven days of a credential's allowed requests
would have looked like under a proposed scope set or IP allow-list, or revoked.

It is answered from counts apiward already keeps, never from a request log:

- the allowed requests per route (the daily verification counts, ``core.analytics``):
  exact, and what "revoking or disabling refuses all of them" reports;
- the requests per scope they needed (``core.scope_usage``): a request that needed a
  scope the proposal no longer grants would be refused. A request counts once under
  each scope it needed, so when two or more scopes drop, the refused requests are at
  least the largest of their counts and at most their sum;
- the requests per network (``core.addresses``): a network wholly outside the proposed
  allow-list would be refused, one wholly inside kept; one that only overlaps it (an
  allow-list narrower than a /24 or /48) and the requests whose network was not kept
  (beyond the exact cap) are unknown, and counted in the upper bound only.

The answer is a range, ``refused_at_least`` to ``refused_at_most``; ``exact`` says the
two are equal (docs/keeping-keys-healthy.md).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from apiward.core.errors import InvalidInput
from apiward.core.models import IPNetwork
from apiward.core.scopes import ScopeSet, parse

DAYS = 7
MAX_SCOPES = 100
MAX_NETWORKS = 100
"""As many as a key may hold: a proposal is a key's possible new scopes or allow-list."""


@dataclass(frozen=True, slots=True)
class Proposal:
    """None: that part does not change. Both None: the credential is revoked or
    disabled, and every request would be refused."""

    scopes: tuple[str, ...] | None = None
    ip_allow: tuple[IPNetwork, ...] | None = None

    @property
    def refuses_all(self) -> bool:
        return self.scopes is None and self.ip_allow is None


PROPOSAL_LENGTH = 4096
"""Characters of each proposal parameter: a hundred networks or scopes, and a URL that
every server's request-line limit takes (16 KB and more)."""
PROPOSAL_TEXT = r"^[ -~]*$"
"""Scopes (RFC 6749 3.3) and networks are printable ASCII."""


def proposal(scopes: str | None, ip_allow: str | None) -> Proposal:
    """The proposal of ``?scopes=a,b&ip_allow=10.0.0.0/8,...``; a clear 400 for a bad
    scope or network, or more than a key may hold."""
    wanted = None
    if scopes is not None:
        wanted = tuple(s.strip() for s in scopes.split(",") if s.strip())
        if len(wanted) > MAX_SCOPES:
            raise InvalidInput(f"scopes names at most {MAX_SCOPES} scopes.")
        for scope in wanted:
            parse(scope)
    allowed = None
    if ip_allow is not None:
        cidrs = [c.strip() for c in ip_allow.split(",") if c.strip()]
        if len(cidrs) > MAX_NETWORKS:
            raise InvalidInput(f"ip_allow names at most {MAX_NETWORKS} networks.")
        try:
            allowed = tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)
        except ValueError as exc:
            raise InvalidInput(f"ip_allow: {exc}.") from None
    return Proposal(wanted, allowed)


def window(now: datetime) -> tuple[datetime, datetime]:
    """The current UTC day and the six before it: seven days of daily counts."""
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=DAYS - 1), now


@dataclass(frozen=True, slots=True)
class Refused:
    name: str
    """A route, a scope or a network prefix."""
    requests: int
    verdict: str = "refused"
    """``refused``, or ``unknown`` (a network the allow-list only partly covers)."""


@dataclass(frozen=True, slots=True)
class Impact:
    since: datetime
    until: datetime
    requests: int
    refused_at_least: int
    refused_at_most: int
    by_route: list[Refused] = field(default_factory=list)
    by_scope: list[Refused] = field(default_factory=list)
    by_network: list[Refused] = field(default_factory=list)
    unlisted_requests: int = 0
    """Requests whose network was not kept (beyond the exact cap): counted as unknown."""

    @property
    def exact(self) -> bool:
        return self.refused_at_least == self.refused_at_most


def _covers(allow: tuple[IPNetwork, ...], prefix: str) -> str:
    """``kept``, ``refused`` or ``unknown`` for the requests of network ``prefix``."""
    net = ipaddress.ip_network(prefix)
    same = [a for a in allow if a.version == net.version]
    if any(net.subnet_of(a) for a in same):  # type: ignore[arg-type]
        return "kept"
    if any(a.overlaps(net) for a in same):
        return "unknown"
    return "refused"


def impact(
    since: datetime,
    until: datetime,
    routes: Mapping[str, int],
    scopes: Mapping[str, int],
    networks: Mapping[str, int],
    unlisted: int,
    change: Proposal,
) -> Impact:
    """What ``change`` would have refused of the counted requests."""
    total = sum(routes.values())
    if change.refuses_all:
        by_route = [Refused(r, n) for r, n in sorted(routes.items(), key=lambda i: (-i[1], i[0]))]
        return Impact(since, until, total, total, total, by_route=by_route)
    low = high = 0
    by_scope: list[Refused] = []
    if change.scopes is not None:
        held = ScopeSet(change.scopes)
        by_scope = sorted(
            (Refused(s, n) for s, n in scopes.items() if n and not held.grants(s)),
            key=lambda r: (-r.requests, r.name),
        )
        low = max((r.requests for r in by_scope), default=0)
        high = sum(r.requests for r in by_scope)
    by_network: list[Refused] = []
    kept_unlisted = 0
    if change.ip_allow is not None:
        for prefix, n in networks.items():
            verdict = _covers(change.ip_allow, prefix)
            if verdict != "kept" and n:
                by_network.append(Refused(prefix, n, verdict))
        by_network.sort(key=lambda r: (r.verdict != "refused", -r.requests, r.name))
        refused = sum(r.requests for r in by_network if r.verdict == "refused")
        unknown = sum(r.requests for r in by_network if r.verdict == "unknown")
        kept_unlisted = unlisted
        low = max(low, refused)
        high += refused + unknown + unlisted
    return Impact(
        since,
        until,
        total,
        min(low, total),
        min(high, total),
        by_scope=by_scope,
        by_network=by_network,
        unlisted_requests=kept_unlisted,
    )


def sentence(impact: Impact, change: str = "this change") -> str:
    """The sentence a confirmation shows: what the change would have refused of the last
    seven days (``core.impact``; a range when the counts cannot tell exactly)."""
    plural = "" if impact.requests == 1 else "s"
    made = f"In the last {DAYS} days this key made {impact.requests:,} request{plural}"
    if not impact.requests:
        return f"{made}: {change} would have refused none."
    low, high = impact.refused_at_least, impact.refused_at_most
    if low == high == impact.requests:
        return f"{made}; {change} would have refused all of them."
    if low == high:
        return f"{made}; {low:,} would have been refused."
    return f"{made}; between {low:,} and {high:,} would have been refused."
