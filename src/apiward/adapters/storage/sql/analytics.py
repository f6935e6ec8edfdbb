"""Verification counts and scope uses in SQL: rows that concurrent flushes add to."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from apiward.adapters.storage import tables as t
from apiward.adapters.storage.sql.base import SqlBase
from apiward.core.analytics import Bucket, Query
from apiward.core.scope_usage import ScopeUse

_VERIFICATION_KEY = tuple(t.verification_counts.primary_key.columns.keys())
_SCOPE_USE_KEY = tuple(t.scope_uses.primary_key.columns.keys())


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
