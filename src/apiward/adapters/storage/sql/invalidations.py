"""The cache invalidation log in SQL; on PostgreSQL each write also notifies the
listeners (``engine.listen``)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from apiward.adapters.storage import tables as t
from apiward.adapters.storage.sql.base import SqlBase
from apiward.adapters.storage.sql.engine import NOTIFY_CHANNEL
from apiward.core.models import Invalidation


class SqlInvalidations(SqlBase):
    """The cache invalidation log every process polls."""

    def __init__(self, conn: AsyncConnection) -> None:
        super().__init__(conn)
        self.written: list[Invalidation] = []
        """The rows this transaction wrote: the store pushes them once it committed."""

    async def insert_invalidation(self, kind: str, target: str, at: datetime) -> None:
        seq = (
            await self._c.execute(
                t.invalidations.insert()
                .values(kind=kind, target=target, created_at=at)
                .returning(t.invalidations.c.seq)
            )
        ).scalar_one()
        self.written.append(Invalidation(int(seq), kind, target, at))
        if self._c.dialect.name == "postgresql":
            # Delivered at commit: listeners poll the log at once instead of waiting.
            await self._c.execute(sa.text(f"NOTIFY {NOTIFY_CHANNEL}"))

    async def invalidations_since(self, since: datetime) -> list[Invalidation]:
        c = t.invalidations.c
        rows = await self._all(
            sa.select(c.seq, c.kind, c.target, c.created_at)
            .where(c.created_at >= since)
            .order_by(c.seq)
        )
        return [Invalidation(int(r.seq), r.kind, r.target, r.created_at) for r in rows]

    async def prune_invalidations(self, before: datetime) -> None:
        await self._c.execute(t.invalidations.delete().where(t.invalidations.c.created_at < before))
