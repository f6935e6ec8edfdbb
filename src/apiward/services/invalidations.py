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

With Redis, each row is also pushed to every process once committed (``receive``;
docs/architecture.md, "Pushed invalidations"). A pushed credential, organisation or
unknown-credentials row drops those cache entries at once; a pushed revocation or
signing row only asks for the log to be read now, because those apply what the store
holds. A message is therefore trusted for nothing but a cache drop or an early read:
the poll still applies every row it reads, pushed or not, so a lost or forged message
can never make a process skip a change.

Each process measures how long its changes take to land: from a row's timestamp (taken
in the transaction that made the change) to the moment this process applied it, the
longest a revoked or disabled credential stayed honoured here
(``apiward_invalidation_delay_seconds``; README, "Revocation"). The process that made a
change applied it at once, so its own rows count its poll too: the figure is a bound.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from apiward.core.clock import Clock
from apiward.core.models import Invalidation
from apiward.core.readings import Histogram, Reading
from apiward.services.ports import Cache, InvalidationsTx, Store
from apiward.services.revocations import Revocations
from apiward.services.signing import Keyring

WINDOW = timedelta(seconds=30)
"""Rows younger than this are read at each poll; older ones are pruned at 4x."""

KINDS = frozenset({"key", "org", "unknown", "revocation", "signing"})
"""What a row may invalidate (the module's docstring)."""

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
        self._pushed: dict[tuple[int, str, str], datetime] = {}
        """Rows pushed here, by seq, kind and target, with when they arrived: their delay
        was measured on arrival, not again when the poll reads them."""
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
            if row.kind == "revocation":
                kind, _, value = row.target.partition(":")
                self._revocations.add(kind, value)
            else:
                self._drop(row)
        if any(row.kind == "signing" for row in fresh):
            await self._keyring.load()
        applied = self._clock.now()
        for row in fresh:
            if self._pushed.pop((row.seq, row.kind, row.target), None) is None:
                self.delays.observe(max(0.0, (applied - row.created_at).total_seconds()))
        horizon = applied - WINDOW * 2
        self._pushed = {k: at for k, at in self._pushed.items() if at >= horizon}
        return len(fresh)

    def receive(self, row: Invalidation) -> bool:
        """Apply a row pushed by the process that committed it; whether the log must be
        read now (a revocation or a signing key: what they apply is in the store, and a
        message is not trusted to say it).

        Before the first poll nothing is applied: that poll primes from the log.
        """
        if not self._primed or row.kind not in KINDS:
            return False
        if row.kind in ("revocation", "signing"):
            return True
        self._drop(row)
        now = self._clock.now()
        self._pushed[(row.seq, row.kind, row.target)] = now
        self.delays.observe(max(0.0, (now - row.created_at).total_seconds()))
        return False

    def _drop(self, row: Invalidation) -> None:
        if row.kind == "key":
            self._cache.invalidate(row.target)
        elif row.kind == "org":
            self._cache.invalidate_org(row.target)
        elif row.kind == "unknown":
            self._cache.forget_unknown()
