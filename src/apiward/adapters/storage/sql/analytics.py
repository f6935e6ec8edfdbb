"""Verification counts and scope uses in SQL: rows that concurrent flushes add to."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from apiward.adapters.storage import tables as t
from apiward.adapters.storage.sql.base import SqlBase
from apiward.core.addresses import MAX_COUNTRIES, AddressUse, Overflow, Sketch
from apiward.core.analytics import Bucket, Query
from apiward.core.scope_usage import ScopeUse

_VERIFICATION_KEY = tuple(t.verification_counts.primary_key.columns.keys())
_SCOPE_USE_KEY = tuple(t.scope_uses.primary_key.columns.keys())
_ADDRESS_KEY = tuple(t.address_uses.primary_key.columns.keys())


class SqlAnalytics(SqlBase):
    """Verification counts, and the scopes credentials used."""

    async def add_verifications(self, rows: Sequence[Bucket]) -> None:

        v = t.verification_counts
        values = sorted(  # one order everywhere: concurrent upserts cannot deadlock
            (
                {
                    "org_id": b.org_id,
                    "environment": b.environment,
                    "granularity": b.granularity,
                    "bucket": b.start,
                    "key_id": b.key_id,
                    "client_id": b.client_id,
                    "route": b.route[:256],
                    "outcome": b.outcome,
                    "count": b.count,
                }
                for b in rows
            ),
            key=lambda r: tuple(str(r[k]) for k in _VERIFICATION_KEY),
        )
        await self._add_counts(v, _VERIFICATION_KEY, values)

    async def verification_counts(
        self, org_id: str, environment: str, query: Query
    ) -> list[Bucket]:
        v = t.verification_counts.c
        named = {
            "outcome": v.outcome,
            "key": v.key_id,
            "client": v.client_id,
            "route": v.route,
            "environment": v.environment,
        }
        groups = [named[g] for g in query.group_by]
        span = query.buckets()
        start = span.start
        where = [
            v.org_id == org_id,
            v.environment == environment,
            v.granularity == query.granularity,
            v.bucket >= start,
            v.bucket < span.stop,
        ]
        for column, wanted in (
            (v.key_id, query.key_id),
            (v.client_id, query.client_id),
            (v.route, query.route),
            (v.outcome, query.outcome),
        ):
            if wanted is not None:
                where.append(column == wanted)
        total = sa.func.sum(v["count"]).label("total")
        stmt: Any
        if query.limit is not None:  # top consumers over the whole span
            stmt = (
                sa.select(*groups, total)
                .where(*where)
                .group_by(*groups)
                .order_by(total.desc(), *groups)
                .limit(query.limit)
            )
        else:
            stmt = (
                sa.select(v.bucket, *groups, total)
                .where(*where)
                .group_by(v.bucket, *groups)
                .order_by(v.bucket, *groups)
            )
        out = []
        for row in await self._all(stmt):
            data = row._mapping
            out.append(
                Bucket(
                    query.granularity,
                    int(data["bucket"]) if "bucket" in data else start,
                    org_id,
                    str(data.get("environment", environment)),
                    str(data.get("key_id", "")),
                    str(data.get("client_id", "")),
                    str(data.get("route", "")),
                    str(data.get("outcome", "")),
                    int(data["total"]),
                )
            )
        return out

    async def prune_verifications(self, granularity: str, before: datetime) -> int:
        v = t.verification_counts.c
        result = await self._c.execute(
            t.verification_counts.delete().where(
                v.granularity == granularity, v.bucket < int(before.timestamp())
            )
        )
        return int(result.rowcount or 0)

    async def add_scope_uses(self, rows: Sequence[ScopeUse]) -> None:

        u = t.scope_uses
        values = sorted(  # one order everywhere: concurrent upserts cannot deadlock
            (
                {
                    "org_id": r.org_id,
                    "credential_id": r.credential_id,
                    "day": r.day,
                    "scope": r.scope[:160],
                    "environment": r.environment,
                    "count": r.count,
                }
                for r in rows
            ),
            key=lambda r: tuple(str(r[k]) for k in _SCOPE_USE_KEY),
        )
        await self._add_counts(u, _SCOPE_USE_KEY, values)

    async def _add_counts(
        self, table: sa.Table, key: Sequence[str], values: list[dict[str, Any]]
    ) -> None:
        """Upsert rows that add their ``count`` to the stored one, never overwrite it."""
        from sqlalchemy.dialects import postgresql, sqlite

        if not values:
            return
        dialect: Any = postgresql if self._c.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=list(key),
            set_={"count": table.c["count"] + stmt.excluded["count"]},
        )
        await self._c.execute(stmt, values)

    async def scope_uses(
        self, org_id: str, environment: str, credential_id: str, first_day: int, last_day: int
    ) -> list[ScopeUse]:
        u = t.scope_uses.c
        stmt = (
            sa.select(u.day, u.scope, u["count"])
            .where(
                u.org_id == org_id,
                u.credential_id == credential_id,
                u.environment == environment,
                u.day >= first_day,
                u.day <= last_day,
            )
            .order_by(u.day, u.scope)
        )
        return [
            ScopeUse(int(day), org_id, environment, credential_id, str(scope), int(count))
            for day, scope, count in await self._all(stmt)
        ]

    async def prune_scope_uses(self, before_day: int) -> int:
        result = await self._c.execute(t.scope_uses.delete().where(t.scope_uses.c.day < before_day))
        return int(result.rowcount or 0)

    async def add_address_uses(self, rows: Sequence[AddressUse]) -> None:
        from sqlalchemy.dialects import postgresql, sqlite

        if not rows:
            return
        a = t.address_uses
        values = sorted(  # one order everywhere: concurrent upserts cannot deadlock
            (
                {
                    "org_id": r.org_id,
                    "credential_id": r.credential_id,
                    "day": r.day,
                    "prefix": r.prefix,
                    "environment": r.environment,
                    "country": r.country,
                    "count": r.count,
                }
                for r in rows
            ),
            key=lambda r: tuple(str(r[k]) for k in _ADDRESS_KEY),
        )
        dialect: Any = postgresql if self._c.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(a)
        stmt = stmt.on_conflict_do_update(
            index_elements=list(_ADDRESS_KEY),
            set_={
                "count": a.c["count"] + stmt.excluded["count"],
                "country": sa.func.coalesce(a.c.country, stmt.excluded.country),
            },
        )
        await self._c.execute(stmt, values)

    async def merge_address_overflows(self, rows: Sequence[Overflow]) -> None:
        """Merge each overflow into the stored one: requests add, registers take their
        maximum, countries unite. Read under a row lock (PostgreSQL; SQLite serialises
        writers), in one key order, so that concurrent flushes merge, never overwrite."""
        from sqlalchemy.dialects import postgresql, sqlite

        o = t.address_overflows
        dialect: Any = postgresql if self._c.dialect.name == "postgresql" else sqlite
        for row in sorted(rows, key=lambda r: (r.org_id, r.credential_id, r.day)):
            where = (
                o.c.org_id == row.org_id,
                o.c.credential_id == row.credential_id,
                o.c.day == row.day,
            )
            insert = dialect.insert(o).values(
                org_id=row.org_id,
                credential_id=row.credential_id,
                day=row.day,
                environment=row.environment,
                requests=row.requests,
                registers=bytes(row.sketch.registers),
                countries=_countries(row.countries),
            )
            inserted = await self._c.execute(insert.on_conflict_do_nothing())
            if inserted.rowcount:
                continue
            stored = (
                await self._c.execute(
                    sa.select(o.c.requests, o.c.registers, o.c.countries)
                    .where(*where)
                    .with_for_update()
                )
            ).one()
            merged = _overflow(row.day, row.org_id, row.environment, row.credential_id, stored)
            merged.merge(row)
            await self._c.execute(
                o.update()
                .where(*where)
                .values(
                    requests=merged.requests,
                    registers=bytes(merged.sketch.registers),
                    countries=_countries(merged.countries),
                )
            )

    async def address_uses(
        self, org_id: str, environment: str, credential_id: str, first_day: int, last_day: int
    ) -> list[AddressUse]:
        a = t.address_uses.c
        stmt = (
            sa.select(a.day, a.prefix, a.country, a["count"])
            .where(
                a.org_id == org_id,
                a.credential_id == credential_id,
                a.environment == environment,
                a.day >= first_day,
                a.day <= last_day,
            )
            .order_by(a.day, a.prefix)
        )
        return [
            AddressUse(
                int(day), org_id, environment, credential_id, str(prefix), country, int(count)
            )
            for day, prefix, country, count in await self._all(stmt)
        ]

    async def address_overflows(
        self, org_id: str, environment: str, credential_id: str, first_day: int, last_day: int
    ) -> list[Overflow]:
        o = t.address_overflows.c
        stmt = (
            sa.select(o.day, o.requests, o.registers, o.countries)
            .where(
                o.org_id == org_id,
                o.credential_id == credential_id,
                o.environment == environment,
                o.day >= first_day,
                o.day <= last_day,
            )
            .order_by(o.day)
        )
        return [
            _overflow(int(r[0]), org_id, environment, credential_id, r[1:])
            for r in await self._all(stmt)
        ]

    async def address_candidates(
        self, day: int, networks: int | None, countries: int | None
    ) -> list[tuple[str, str, str]]:
        a = t.address_uses.c
        o = t.address_overflows.c
        found: set[tuple[str, str, str]] = set()
        having = []
        if networks is not None:
            having.append(sa.func.count() >= networks)
        if countries is not None:
            having.append(sa.func.count(sa.distinct(a.country)) >= countries)
        if having:
            stmt = (
                sa.select(a.org_id, a.environment, a.credential_id)
                .where(a.day == day)
                .group_by(a.org_id, a.environment, a.credential_id)
                .having(sa.or_(*having))
            )
            found.update((str(r[0]), str(r[1]), str(r[2])) for r in await self._all(stmt))
            over = sa.select(o.org_id, o.environment, o.credential_id).where(o.day == day)
            found.update((str(r[0]), str(r[1]), str(r[2])) for r in await self._all(over))
        return sorted(found)

    async def prune_addresses(self, before_day: int) -> int:
        removed = 0
        for table in (t.address_uses, t.address_overflows):
            result = await self._c.execute(table.delete().where(table.c.day < before_day))
            removed += int(result.rowcount or 0)
        return removed


def _countries(countries: set[str]) -> str:
    return ",".join(sorted(countries)[:MAX_COUNTRIES])


def _overflow(day: int, org_id: str, environment: str, credential: str, row: Any) -> Overflow:
    requests, registers, countries = row
    return Overflow(
        day,
        org_id,
        environment,
        credential,
        int(requests),
        Sketch(bytes(registers)),
        {c for c in str(countries).split(",") if c},
    )
