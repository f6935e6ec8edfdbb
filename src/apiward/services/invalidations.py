"""Keeping every process's caches current: the invalidation log, read by time window.

A change that makes cached answers wrong (a key revoked, a role edited, a token
revoked, a signing key rotated) writes a row to the invalidation log in the same
transaction. A row names what it invalidates: one credential (``key``: its cache
key), one organisation's records (``org``: a change to its users, roles, spaces or
settings leaves every other organisation's records warm), the credentials held as
unknown (``unknown``: keys were imported), a token or session (``revocation``), or
the signing keys (``signing``). Every process polls the log (and wakes early on a PostgreSQL
notification) and applies what it has not seen: the same log serves one process
and many.

Each process measures how long its changes take to land: from a row's timestamp (taken
in the transaction that made the change) to the moment this process applied it, the
longest a revoked or disabled credential stayed honoured here
(``apiward_invalidation_delay_seconds``; README, "Revocation"). The process that made a
change applied it at once, so its own rows count its poll too: the figure is a bound.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from apiward.core.clock import Clock
from apiward.core.readings import Histogram, Reading
from apiward.services.ports import Cache, InvalidationsTx, Store
from apiward.services.revocations import Revocations
from apiward.services.signing import Keyring

WINDOW = timedelta(seconds=30)
"""Rows younger than this are read at each poll; older ones are pruned at 4x."""

DELAY_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""The buckets of the delay histogram, in seconds (the documented bound is 1 s)."""


class InvalidationPoller:
    def __init__(
        self,
        store: Store[InvalidationsTx],
        clock: Clock,
        cache: Cache,
        revocations: Revocations,
        keyring: Keyring,
    ) -> None:
        self._store = store
        self._clock = clock
        self._cache = cache
        self._revocations = revocations
        self._keyring = keyring
        self._seen: set[int] = set()
        self._primed = False
        self.delays = Histogram(DELAY_BOUNDS)
        """Seconds from each change to this process applying it."""

    def readings(self) -> Iterable[Reading]:
        return [
            Reading.histogram(
                "invalidation_delay_seconds",
                "Time from a change (a revocation, a disabled key, an edited role...) to "
                "this process applying it: how long it could still honour what changed.",
                self.delays,
            )
        ]

    async def poll(self) -> int:
        """Apply invalidations written by any process (this one included) since the last
        poll; the number applied.

        Rows are read by time window, not by "sequence greater than the last seen":
        PostgreSQL sequence values can commit out of order, and a row committed late
        with a smaller number would otherwise be skipped. The first poll only primes:
        everything already in the log predates this process's cache.
        """
        now = self._clock.now()
        async with self._store.begin() as tx:
            rows = await tx.invalidations_since(now - WINDOW)
            if now.second == 0:
                await tx.prune_invalidations(now - WINDOW * 4)
        fresh = [row for row in rows if row.seq not in self._seen]
        self._seen = {row.seq for row in rows}
        if not self._primed:
            self._primed = True
            return 0
        for row in fresh:
            if row.kind == "key":
                self._cache.invalidate(row.target)
            elif row.kind == "revocation":
                kind, _, value = row.target.partition(":")
                self._revocations.add(kind, value)
            elif row.kind == "org":
                self._cache.invalidate_org(row.target)
            elif row.kind == "unknown":
                self._cache.forget_unknown()
        if any(row.kind == "signing" for row in fresh):
            await self._keyring.load()
        applied = self._clock.now()
        for row in fresh:
            self.delays.observe(max(0.0, (applied - row.created_at).total_seconds()))
        return len(fresh)
