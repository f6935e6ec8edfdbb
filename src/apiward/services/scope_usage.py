"""Counting the scopes allowed requests used, in memory, flushed in batches, and reading
them back per key or client (``apiward.core.scope_usage``).

Counted like the verification analytics (``apiward.services.analytics``): the hot path
pays a dict update per scope it was required to hold, with no write, no lock and no I/O;
every ``APIWARD_ANALYTICS_FLUSH_SECONDS`` the counts go to the store as additive upserts
(one row per credential, day and scope), and a flush that fails keeps its counts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from apiward.core.clock import Clock
from apiward.core.models import CredentialKind, Principal
from apiward.core.scope_usage import DAY, Report, ScopeUse, day_of, report, since
from apiward.services.ports import AnalyticsTx, Front, Store

if TYPE_CHECKING:
    from apiward.services.clients import Clients
    from apiward.services.keys import Keys

_Key = tuple[int, str, str, str, str]
"""day, organisation, environment, credential, scope."""
_KEY = CredentialKind.API_KEY
MAX_SCOPES_A_DAY = 100
"""The distinct scopes one credential is counted under per day and process."""


class ScopeTally:
    """The in-process count of scopes used, per credential and day, until the next flush.

    ``wall`` is the time in unix seconds: ``time.time`` (a datetime per request would
    cost more than the count), or an injected clock's (``Runtime.scope_tally``)."""

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self._pending: dict[_Key, int] = {}
        self._seen: dict[str, set[str]] = {}
        """The scopes each credential was counted under today, whatever was flushed."""
        self._seen_day = -1
        self.dropped = 0
        """Uses not counted: a credential's scopes past ``MAX_SCOPES_A_DAY``."""
        self.front: Front | None = None
        """Where allowed requests wait to be counted here (``AllowedTally``)."""

    def count(self, principal: Principal, scopes: Sequence[str]) -> None:
        """``principal``'s request was allowed holding ``scopes``: count each as used,
        under its API key, or under the OAuth client its token was issued to."""
        if principal.credential_kind is _KEY:
            credential: str | None = principal.credential_id
        else:
            credential = principal.client_id
        if credential:  # else a dashboard session, or a token no client holds
            day = int(self._wall()) // DAY
            self.add(day, principal.org_id, principal.environment, credential, scopes, 1)

    def add(
        self,
        day: int,
        org_id: str,
        environment: str,
        credential: str,
        scopes: Sequence[str],
        n: int,
    ) -> None:
        """``n`` allowed requests of ``credential`` on ``day``, each holding ``scopes``. A
        pattern (``*``, ``invoices:*``) names no scope of the API and is not counted:
        narrowing to what was used never keeps a wildcard because a request asked for
        one."""
        pending = self._pending
        for scope in scopes:
            if "*" in scope:
                continue
            key = (day, org_id, environment, credential, scope)
            found = pending.get(key)
            if found is None and not self._admit(day, credential, scope):
                continue
            pending[key] = (found or 0) + n

    def _admit(self, day: int, credential: str, scope: str) -> bool:
        """Whether a scope new to this flush may be counted: a credential is counted
        under at most ``MAX_SCOPES_A_DAY`` scopes a day in a process, so that callers of
        a wildcard key who make scopes up (``X-Apiward-Require``) cannot mint rows."""
        if day != self._seen_day:
            self._seen.clear()
            self._seen_day = day
        seen = self._seen.setdefault(credential, set())
        if scope in seen:
            return True
        if len(seen) >= MAX_SCOPES_A_DAY:
            self.dropped += 1
            return False
        seen.add(scope)
        return True

    def drain(self) -> list[ScopeUse]:
        if self.front is not None:
            self.front.spill()
        pending, self._pending = self._pending, {}
        return [ScopeUse(*key, count=n) for key, n in pending.items()]

    async def flush(self, store: Store[AnalyticsTx]) -> int:
        """Add what was counted since the last flush to the store; the rows written. A
        write that fails, or is cancelled, puts its counts back for the next flush."""
        batch = self.drain()
        if batch:
            try:
                async with store.begin() as tx:
                    await tx.add_scope_uses(batch)
            except BaseException:
                self._restore(batch)
                raise
        return len(batch)

    def _restore(self, batch: list[ScopeUse]) -> None:
        pending = self._pending
        for u in batch:
            key = (u.day, u.org_id, u.environment, u.credential_id, u.scope)
            pending[key] = pending.get(key, 0) + u.count


class ScopeUsage:
    """Reading the uses of one key or client: found as ``GET /v1/keys/{id}`` finds it
    (another organisation's or environment's is not found)."""

    def __init__(
        self,
        store: Store[AnalyticsTx],
        keys: Keys,
        clients: Clients,
        clock: Clock,
        retention: timedelta,
    ) -> None:
        self._store = store
        self._keys = keys
        self._clients = clients
        self._clock = clock
        self.retention = retention

    async def of_key(self, principal: Principal, key_id: str, since_text: str | None) -> Report:
        now = self._clock.now()
        start = since(since_text, now, self.retention)
        key = await self._keys.get(principal, key_id)
        return await self._report(key.org_id, key.environment, key.id, key.scopes, start, now)

    async def of_client(
        self, principal: Principal, client_id: str, since_text: str | None
    ) -> Report:
        now = self._clock.now()
        start = since(since_text, now, self.retention)
        client = await self._clients.get(principal, client_id)
        return await self._report(
            client.org_id, client.environment, client.id, client.scopes, start, now
        )

    async def _report(
        self,
        org_id: str,
        environment: str,
        credential_id: str,
        scopes: Sequence[str],
        start: datetime,
        now: datetime,
    ) -> Report:
        async with self._store.begin() as tx:
            uses = await tx.scope_uses(
                org_id, environment, credential_id, day_of(start), day_of(now)
            )
        return report(scopes, uses, start, now)
