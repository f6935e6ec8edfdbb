"""Allowed requests, counted once for the three tallies that read them.

An allowed request is counted by the verification analytics (``services.analytics``),
the scopes it used (``services.scope_usage``) and the network it came from
(``services.addresses``). On the request path it costs one tuple and one dict update
here; what each tally makes of it is worked out when a tally drains for its flush
(``spill``), once per distinct request shape rather than once per request. The buffer
is bounded: past ``LIMIT`` distinct shapes, it spills at once.
"""

from __future__ import annotations

from collections.abc import Sequence

from apiward.core.models import CredentialKind, Principal
from apiward.core.scope_usage import DAY
from apiward.services.addresses import AddressTally
from apiward.services.analytics import Verifications
from apiward.services.scope_usage import ScopeTally

_KEY = CredentialKind.API_KEY
LIMIT = 4096
"""Distinct request shapes held before they are handed to the tallies."""

_Shape = tuple[
    int, str, str, bool, str, str | None, str | None, str | None, str | None, tuple[str, ...]
]
"""minute, organisation, environment, is an API key, credential, client, route, address,
country, scopes required."""


class AllowedTally:
    def __init__(
        self, verifications: Verifications, scopes: ScopeTally, addresses: AddressTally
    ) -> None:
        self._verifications = verifications
        self._scopes = scopes
        self._addresses = addresses
        self._wall = verifications.wall
        self._pending: dict[_Shape, int] = {}
        for tally in (verifications, scopes, addresses):
            tally.front = self  # a tally's drain spills what waits here first

    def count(self, principal: Principal, scopes: Sequence[str]) -> None:
        """``principal``'s request was allowed, holding the ``scopes`` it was required
        to hold."""
        context = principal.context
        shape = (
            int(self._wall()) // 60,
            principal.org_id,
            principal.environment,
            principal.credential_kind is _KEY,
            principal.credential_id,
            principal.client_id,
            context.counted_route or context.route,
            context.ip,
            context.country,
            scopes if type(scopes) is tuple else tuple(scopes),
        )
        pending = self._pending
        found = pending.get(shape)
        if found is None and len(pending) >= LIMIT:
            self.spill()
            pending = self._pending
        pending[shape] = (found or 0) + 1

    def spill(self) -> None:
        """Hand what waits to the three tallies."""
        pending, self._pending = self._pending, {}
        verifications, scopes_used, addresses = self._verifications, self._scopes, self._addresses
        for shape, n in pending.items():
            minute, org, env, is_key, credential_id, client_id, route, ip, country, scopes = shape
            key_id = credential_id if is_key else ""
            verifications.add((minute, org, env, key_id, client_id or "", route or "", "VALID"), n)
            credential = credential_id if is_key else client_id
            if not credential:
                continue  # a dashboard session, or a token no client holds
            day = minute * 60 // DAY
            if scopes:
                scopes_used.add(day, org, env, credential, scopes, n)
            if ip:
                addresses.add(day, org, env, credential, ip, country, n)
