"""The SQL store: one ``SqlTransaction``, every aggregate's statements on one
connection, per ``begin``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from apiward.adapters.storage.sql.analytics import SqlAnalytics
from apiward.adapters.storage.sql.audit import SqlAudit
from apiward.adapters.storage.sql.credentials import SqlCredentials
from apiward.adapters.storage.sql.engine import Listener, create_engine, listen
from apiward.adapters.storage.sql.errors import map_db_errors
from apiward.adapters.storage.sql.hygiene import SqlHygiene
from apiward.adapters.storage.sql.invalidations import SqlInvalidations
from apiward.adapters.storage.sql.mfa import SqlMfa
from apiward.adapters.storage.sql.portal import SqlPortal
from apiward.adapters.storage.sql.tenancy import SqlTenancy
from apiward.adapters.storage.sql.tokens import SqlTokens
from apiward.adapters.storage.sql.webhooks import SqlWebhooks
from apiward.core.errors import ServiceUnavailable
from apiward.core.models import Invalidation
from apiward.core.readings import Reading

if TYPE_CHECKING:
    from apiward.services.ports import Store, Transaction


class SqlTransaction(
    SqlTenancy,
    SqlCredentials,
    SqlTokens,
    SqlInvalidations,
    SqlPortal,
    SqlMfa,
    SqlAudit,
    SqlWebhooks,
    SqlAnalytics,
    SqlHygiene,
):
    """Every aggregate's statements, run on one transaction's connection."""


Announce = Callable[[Sequence[Invalidation]], None]
"""Told the invalidations a transaction wrote, once it committed (``adapters/pubsub.py``)."""


class SqlStore:
    def __init__(self, engine: AsyncEngine, announce: Announce | None = None) -> None:
        self.engine = engine
        self._announce = announce
        self.unavailable = 0
        """Transactions that failed because the database was unreachable (for metrics)."""
        self.listener: Listener | None = None
        """The notifications of invalidations, once ``listen`` started them."""

    @classmethod
    def from_url(
        cls, url: str, *, timeout: float | None = 10.0, announce: Announce | None = None
    ) -> SqlStore:
        return cls(create_engine(url, timeout=timeout), announce)

    def readings(self) -> list[Reading]:
        found = [
            Reading.counter(
                "db_unavailable",
                "Store transactions that failed because the database was unreachable (503s).",
                self.unavailable,
            )
        ]
        if self.listener is not None:
            found += [
                Reading.gauge(
                    "notifications_connected",
                    "1 while PostgreSQL's notifications of invalidations arrive, 0 while "
                    "their connection is made again (invalidations wait for the poll).",
                    1 if self.listener.connected else 0,
                ),
                Reading.counter(
                    "notifications_lost",
                    "Times the connection of the notifications of invalidations was lost.",
                    self.listener.losses,
                ),
            ]
        return found

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[SqlTransaction]:
        """A transaction, committed when the block exits without an error; driver errors
        come out as domain errors, and an unreachable database is counted. The
        invalidations it wrote are announced after the commit, never before: a process
        that hears of one reads the change itself."""
        try:
            with map_db_errors():
                async with self.engine.begin() as conn:
                    tx = SqlTransaction(conn)
                    yield tx
        except ServiceUnavailable:
            self.unavailable += 1
            raise
        if tx.written and self._announce is not None:
            self._announce(tx.written)

    async def ping(self) -> None:
        with map_db_errors():
            async with self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()

    async def listen(self, on_notify: Callable[[], None]) -> Listener | None:
        """On PostgreSQL, call ``on_notify`` whenever any process writes an invalidation
        (``engine.Listener``, which reconnects when the connection is lost); None on
        back-ends without notifications (SQLite), where the poll alone carries them."""
        self.listener = await listen(self.engine, on_notify)
        return self.listener


if TYPE_CHECKING:

    def _satisfies_every_port(store: SqlStore) -> Store[Transaction]:
        """Type-checked only: the SQL store hands out a full ``Transaction``, so it
        satisfies every service's narrower ``Store[...]``."""
        return store
