"""Counting every authentication decision in memory, flushing the counts in batches, and
reading them back for one organisation and environment.

The hot path pays one dict update (``Verifications.count``): no write, no lock, no I/O.
Every ``APIWARD_ANALYTICS_FLUSH_SECONDS`` the counts go to the sink (the SQL store by
default) as additive upserts, so processes and machines sharing a database sum, never
overwrite; a graceful shutdown flushes, a crash loses at most one interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

from apiward.core.analytics import Bucket, Decision, Query, buckets
from apiward.core.models import Principal
from apiward.core.scope_usage import day_of
from apiward.services.keys import effective_environment
from apiward.services.ports import AnalyticsTx, Front, Store

_Key = tuple[int, str, str, str, str, str, str]


class Verifications:
    """The in-process tally of decisions, per minute, until the next flush."""

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self._pending: dict[_Key, int] = {}
        self.front: Front | None = None
        """Where allowed requests wait to be counted here (``AllowedTally``)."""

    @property
    def wall(self) -> Callable[[], float]:
        """The time in unix seconds the counts are made at."""
        return self._wall

    def count(
        self,
        org_id: str | None,
        environment: str | None,
        outcome: str,
        *,
        key_id: str | None = None,
        client_id: str | None = None,
        route: str | None = None,
    ) -> None:
        key = (
            int(self._wall()) // 60,
            org_id or "",
            environment or "",
            key_id or "",
            client_id or "",
            route or "",
            outcome,
        )
        pending = self._pending
        pending[key] = pending.get(key, 0) + 1

    def add(self, key: _Key, n: int) -> None:
        """``n`` decisions under ``key`` (minute, organisation, environment, key, client,
        route and outcome; "" for none)."""
        pending = self._pending
        pending[key] = pending.get(key, 0) + n

    def drain(self) -> list[tuple[Decision, int]]:
        if self.front is not None:
            self.front.spill()
        pending, self._pending = self._pending, {}
        return [(Decision(*key), n) for key, n in pending.items()]

    async def flush(self, store: Store[AnalyticsTx]) -> int:
        """Add what was counted since the last flush to the store; the rows written.

        A write that fails, or is cancelled (a stopping server), puts its counts back, so
        the next flush (the one at shutdown, say) writes them: none is lost on the way.
        """
        batch = self.drain()
        rows = buckets(batch)
        if rows:
            try:
                async with store.begin() as tx:
                    await tx.add_verifications(rows)
            except BaseException:
                self._restore(batch)
                raise
        return len(rows)

    def _restore(self, batch: list[tuple[Decision, int]]) -> None:
        pending = self._pending
        for d, n in batch:
            key = (d.minute, d.org_id, d.environment, d.key_id, d.client_id, d.route, d.outcome)
            pending[key] = pending.get(key, 0) + n


class Analytics:
    """Reading the counts: only the caller's organisation and environment, ever."""

    def __init__(self, store: Store[AnalyticsTx], retention: dict[str, timedelta]) -> None:
        self._store = store
        self.retention = retention

    async def verifications(
        self, principal: Principal, query: Query, *, environment: str | None = None
    ) -> list[Bucket]:
        """The counts of the principal's organisation, in its environment (a dashboard
        session, which spans environments, names the one its page shows)."""
        env = effective_environment(principal, environment)
        async with self._store.begin() as tx:
            return await tx.verification_counts(principal.org_id, env, query)

    async def unattributed(self, query: Query) -> list[Bucket]:
        """The operator's view of refusals no organisation owns: credentials nobody
        issued (unknown keys, bad tokens), counted under no organisation."""
        async with self._store.begin() as tx:
            return await tx.verification_counts("", "", query)

    async def prune(self, now: datetime) -> int:
        """Delete counts past each granularity's retention, and the scope uses past the
        daily counts' (housekeeping)."""
        removed = 0
        async with self._store.begin() as tx:
            for granularity, kept in self.retention.items():
                removed += await tx.prune_verifications(granularity, now - kept)
            # The scopes credentials used, kept as long as the daily counts.
            removed += await tx.prune_scope_uses(day_of(now - self.retention["day"]))
            removed += await tx.prune_addresses(day_of(now - self.retention["day"]))
        return removed
