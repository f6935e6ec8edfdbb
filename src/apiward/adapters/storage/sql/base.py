"""What every aggregate's SQL shares: the transaction's connection and three ways to
read from it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from apiward.core.models import Page, PageRequest


class SqlBase:
    """One transaction's connection; the aggregates' classes add their statements."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._c = conn

    async def _all(self, stmt: Any) -> list[Any]:
        return list((await self._c.execute(stmt)).fetchall())

    async def _one(self, stmt: Any) -> Any:
        return (await self._c.execute(stmt)).first()

    async def _page(
        self, stmt: Any, order: Sequence[Any], page: PageRequest, conv: Any
    ) -> Page[Any]:
        """One page of ``stmt`` in ``order``, each row through ``conv``, and the total."""
        total = (
            await self._c.execute(sa.select(sa.func.count()).select_from(stmt.subquery()))
        ).scalar_one()
        rows = await self._all(stmt.order_by(*order).limit(page.page_size).offset(page.offset))
        return Page([conv(r) for r in rows], int(total), page.page, page.page_size)
