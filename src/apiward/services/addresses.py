"""Counting the networks (and countries) credentials' allowed requests come from, in
memory, flushed in batches, and reading them back per key or client
(``apiward.core.addresses``; README, "Keeping keys healthy").

Counted like scope usage (``apiward.services.scope_usage``): the request path pays a
dict lookup or two, with no write, no lock and no I/O (a country database is read once
per new address, cached); every ``APIWARD_ANALYTICS_FLUSH_SECONDS`` the counts go to the
store as additive upserts, the overflow sketches as merges, and a flush that fails keeps
its counts for the next one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from apiward.core.addresses import (
    EXACT_CAP,
    AddressUse,
    DayFigures,
    Overflow,
    figures,
    prefix_of,
)
from apiward.core.clock import Clock
from apiward.core.models import CredentialKind, Principal
from apiward.core.scope_usage import DAY, day_of, since
from apiward.services.ports import AnalyticsTx, Front, Store

if TYPE_CHECKING:
    from apiward.services.clients import Clients
    from apiward.services.keys import Keys

_Key = tuple[int, str, str, str, str, str | None]
"""day, organisation, environment, credential, prefix, country."""
_Day = tuple[int, str, str, str]
_KEY = CredentialKind.API_KEY
_CACHED = 8192
"""Addresses whose prefix and country are remembered (a dict, emptied when full)."""

CountryOf = Callable[[str], str | None]


def _no_country(ip: str) -> str | None:
    return None


class AddressTally:
    """The in-process count of allowed requests per credential, day and network.

    The first ``EXACT_CAP`` networks of a credential's day in this process are counted
    exactly; the requests from any further one go into the day's ``Overflow`` (a count,
    a sketch of their prefixes, their countries). Memory per credential and day is so
    bounded by the cap's prefixes and one sketch of 1 KiB."""

    def __init__(
        self, wall: Callable[[], float] = time.time, country_of: CountryOf = _no_country
    ) -> None:
        self._wall = wall
        self._country_of = country_of
        self._known: dict[tuple[str, str], _Key] = {}
        """(credential, address) to the count it was counted under: the common case, a
        caller seen before, costs one lookup."""
        self._where: dict[str, tuple[str, str | None]] = {}
        """Each address's prefix ("" when it is none) and country: found once."""
        self._pending: dict[_Key, int] = {}
        self._overflow: dict[_Day, Overflow] = {}
        self._seen: dict[str, set[str]] = {}
        """The prefixes each credential was counted under exactly today, in this process."""
        self._seen_day = -1
        self.front: Front | None = None
        """Where allowed requests wait to be counted here (``AllowedTally``)."""

    def count(self, principal: Principal) -> None:
        """``principal``'s request was allowed: count it under its network, for its API
        key or the OAuth client its token was issued to."""
        if principal.credential_kind is _KEY:
            credential: str | None = principal.credential_id
        else:
            credential = principal.client_id
        context = principal.context
        if credential and context.ip:
            day = int(self._wall()) // DAY
            org_id, environment = principal.org_id, principal.environment
            self.add(day, org_id, environment, credential, context.ip, context.country, 1)

    def add(
        self,
        day: int,
        org_id: str,
        environment: str,
        credential: str,
        ip: str,
        country: str | None,
        n: int,
    ) -> None:
        """``n`` allowed requests of ``credential`` from ``ip`` on ``day`` (``country``:
        what the request said, if it said)."""
        pending = self._pending
        key = self._known.get((credential, ip))  # a caller seen today: one lookup
        if key is not None and key[0] == day and key[1] == org_id:
            pending[key] = pending.get(key, 0) + n
            return
        where = self._where.get(ip)
        if where is None:
            where = self._locate(ip, country)
        if not where[0]:
            return
        key = (day, org_id, environment, credential, where[0], where[1])
        if key in pending or self._admit(day, credential, where[0]):
            pending[key] = pending.get(key, 0) + n
            if len(self._known) >= _CACHED:
                self._known.clear()
            self._known[credential, ip] = key
        else:
            self._overflowed(day, org_id, environment, credential, where, n)

    def _locate(self, ip: str, told: str | None) -> tuple[str, str | None]:
        if len(self._where) >= _CACHED:
            self._where.clear()
        prefix = prefix_of(ip)
        where = ("", None) if prefix is None else (prefix, told or self._country_of(ip))
        self._where[ip] = where
        return where

    def _admit(self, day: int, credential: str, prefix: str) -> bool:
        if day != self._seen_day:
            self._seen.clear()
            self._seen_day = day
        seen = self._seen.setdefault(credential, set())
        if prefix in seen:
            return True
        if len(seen) >= EXACT_CAP:
            return False
        seen.add(prefix)
        return True

    def _overflowed(
        self,
        day: int,
        org_id: str,
        environment: str,
        credential: str,
        where: tuple[str, str | None],
        n: int,
    ) -> None:
        key = (day, org_id, environment, credential)
        over = self._overflow.get(key)
        if over is None:
            over = self._overflow[key] = Overflow(day, org_id, environment, credential)
        over.requests += n
        over.sketch.add(where[0])
        if where[1]:
            over.countries.add(where[1])

    def drain(self) -> tuple[list[AddressUse], list[Overflow]]:
        if self.front is not None:
            self.front.spill()
        pending, self._pending = self._pending, {}
        overflow, self._overflow = self._overflow, {}
        return [AddressUse(*key, count=n) for key, n in pending.items()], list(overflow.values())

    async def flush(self, store: Store[AnalyticsTx]) -> int:
        """Add what was counted since the last flush to the store; the rows written. A
        write that fails, or is cancelled, puts its counts back for the next flush."""
        uses, overflows = self.drain()
        if uses or overflows:
            try:
                async with store.begin() as tx:
                    await tx.add_address_uses(uses)
                    await tx.merge_address_overflows(overflows)
            except BaseException:
                self._restore(uses, overflows)
                raise
        return len(uses) + len(overflows)

    def _restore(self, uses: list[AddressUse], overflows: list[Overflow]) -> None:
        pending = self._pending
        for u in uses:
            key = (u.day, u.org_id, u.environment, u.credential_id, u.prefix, u.country)
            pending[key] = pending.get(key, 0) + u.count
        for o in overflows:
            day = (o.day, o.org_id, o.environment, o.credential_id)
            if (mine := self._overflow.get(day)) is None:
                self._overflow[day] = o
            else:
                mine.merge(o)


async def figures_of(
    tx: AnalyticsTx,
    org_id: str,
    environment: str,
    credential_id: str,
    first_day: int,
    last_day: int,
) -> list[DayFigures]:
    """The figures of each day with counts, from ``first_day`` to ``last_day``."""
    uses = await tx.address_uses(org_id, environment, credential_id, first_day, last_day)
    overflows = {
        o.day: o
        for o in await tx.address_overflows(org_id, environment, credential_id, first_day, last_day)
    }
    by_day: dict[int, list[AddressUse]] = {}
    for u in uses:
        by_day.setdefault(u.day, []).append(u)
    days = sorted({*by_day, *overflows})
    return [figures(day, by_day.get(day, []), overflows.get(day)) for day in days]


class Addresses:
    """Reading where one key's or client's requests came from, found as
    ``GET /v1/keys/{id}`` finds it (another organisation's or environment's is not
    found, so no other tenant's networks are ever read)."""

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

    async def of_key(
        self, principal: Principal, key_id: str, since_text: str | None
    ) -> tuple[datetime, datetime, list[DayFigures]]:
        now = self._clock.now()
        start = since(since_text, now, self.retention)
        key = await self._keys.get(principal, key_id)
        return start, now, await self._read(key.org_id, key.environment, key.id, start, now)

    async def of_client(
        self, principal: Principal, client_id: str, since_text: str | None
    ) -> tuple[datetime, datetime, list[DayFigures]]:
        now = self._clock.now()
        start = since(since_text, now, self.retention)
        client = await self._clients.get(principal, client_id)
        found = await self._read(client.org_id, client.environment, client.id, start, now)
        return start, now, found

    async def today(self, org_id: str, environment: str, credential_id: str) -> DayFigures:
        """The figures of the current UTC day (the dashboard's key page)."""
        day = day_of(self._clock.now())
        async with self._store.begin() as tx:
            found = await figures_of(tx, org_id, environment, credential_id, day, day)
        return found[0] if found else DayFigures(day, 0, 0, True, None, [], 0)

    async def _read(
        self, org_id: str, environment: str, credential_id: str, start: datetime, now: datetime
    ) -> list[DayFigures]:
        async with self._store.begin() as tx:
            return await figures_of(
                tx, org_id, environment, credential_id, day_of(start), day_of(now)
            )
