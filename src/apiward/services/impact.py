"""Impact before a change (``apiward.core.impact``): reading a key's or client's counts of
the last seven days and weighing a proposal against them.

The key or client is found as ``GET /v1/keys/{id}`` finds it, so that another
organisation's or environment's counts (and networks) are never read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from apiward.core.analytics import Query
from apiward.core.clock import Clock
from apiward.core.impact import Impact, Proposal, impact, window
from apiward.core.models import Principal
from apiward.core.scope_usage import day_of
from apiward.services.addresses import figures_of
from apiward.services.ports import AnalyticsTx, Store

if TYPE_CHECKING:
    from apiward.services.clients import Clients
    from apiward.services.keys import Keys


class Impacts:
    def __init__(self, store: Store[AnalyticsTx], keys: Keys, clients: Clients, clock: Clock):
        self._store = store
        self._keys = keys
        self._clients = clients
        self._clock = clock

    async def of_key(self, principal: Principal, key_id: str, change: Proposal) -> Impact:
        key = await self._keys.get(principal, key_id)
        return await self._weigh(key.org_id, key.environment, key.id, None, change)

    async def of_client(self, principal: Principal, client_id: str, change: Proposal) -> Impact:
        client = await self._clients.get(principal, client_id)
        return await self._weigh(client.org_id, client.environment, None, client.id, change)

    async def _weigh(
        self,
        org_id: str,
        environment: str,
        key_id: str | None,
        client_id: str | None,
        change: Proposal,
    ) -> Impact:
        since, until = window(self._clock.now())
        credential = key_id or client_id or ""
        first, last = day_of(since), day_of(until)
        query = Query(
            since, until, "day", ("route",), key_id=key_id, client_id=client_id, outcome="VALID"
        )
        async with self._store.begin() as tx:
            routes: dict[str, int] = {}
            for bucket in await tx.verification_counts(org_id, environment, query):
                routes[bucket.route] = routes.get(bucket.route, 0) + bucket.count
            scopes: dict[str, int] = {}
            if change.scopes is not None:
                for use in await tx.scope_uses(org_id, environment, credential, first, last):
                    scopes[use.scope] = scopes.get(use.scope, 0) + use.count
            networks: dict[str, int] = {}
            unlisted = 0
            if change.ip_allow is not None:
                for day in await figures_of(tx, org_id, environment, credential, first, last):
                    unlisted += day.unlisted_requests
                    for net in day.top:
                        networks[net.prefix] = networks.get(net.prefix, 0) + net.requests
        return impact(since, until, routes, scopes, networks, unlisted, change)
