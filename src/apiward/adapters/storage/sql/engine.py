"""The engine: SQLite (WAL, a private file) by default, PostgreSQL with asyncpg, and
PostgreSQL's notifications of new invalidations."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from apiward.adapters.logging import get_logger
from apiward.adapters.storage.sql.errors import map_db_errors
from apiward.services.background import cancel

log = get_logger(__name__)

NOTIFY_CHANNEL = "apiward_invalidations"


def private_sqlite_file(url: str) -> None:
    """Create the SQLite database file readable by its owner only (it holds password
    hashes, emails and addresses), and narrow an existing one and its ``-wal``/``-shm``
    files to that. SQLite gives the journal files the database file's permissions."""
    if ":///" not in url:
        return
    name = url.split(":///", 1)[1].split("?", 1)[0]
    if not name or name == ":memory:" or name.startswith("file:"):
        return
    path = Path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for file in (path, Path(f"{name}-wal"), Path(f"{name}-shm")):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if file.stat().st_mode & 0o077:
                file.chmod(0o600)


def create_engine(url: str, *, pool_size: int = 10, timeout: float | None = 10.0) -> AsyncEngine:
    """An engine for ``url``: SQLite gets its pragmas and immediate transactions,
    PostgreSQL a pool of ``pool_size`` connections (as many again on overflow), and with
    ``timeout`` a bound on each wait: to connect, for a pooled connection, and for each
    statement's answer (a hung server costs a caller at most that, then a 503)."""
    if url.startswith("sqlite"):
        private_sqlite_file(url)
        engine = create_async_engine(url, connect_args={"timeout": 30})
        _sqlite_events(engine)
        return engine
    bounded: dict[str, Any] = {}
    if timeout is not None:
        bounded = {"connect_args": {"timeout": timeout, "command_timeout": timeout}}
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=timeout if timeout is not None else 30,
        **bounded,
    )


def _sqlite_events(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # FULL: a key whose plaintext was returned survives power loss too.
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()
        # Let SQLAlchemy's "begin" event below issue BEGIN itself.
        dbapi_conn.isolation_level = None

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        # Take the write lock up front: a deferred transaction that reads and then
        # writes fails at once (SQLITE_BUSY_SNAPSHOT) when another writer got in
        # between, where an immediate one waits its turn.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class Listener:
    """PostgreSQL's notifications of new invalidations, kept alive.

    One connection LISTENs for the whole process. When it is lost (the database restarted,
    the session was terminated), the loss is logged, ``on_notify`` runs at once (the
    invalidations missed meanwhile are in the table, and the poll reads them), and the
    connection is made again with back-off (``min_delay`` doubling up to ``max_delay``
    seconds); the recovery is logged and ``on_notify`` runs again. Between the loss and the
    recovery, invalidations arrive by the poll alone (``APIWARD_INVALIDATION_POLL_SECONDS``).
    """

    def __init__(
        self,
        url: str,
        on_notify: Callable[[], None],
        *,
        min_delay: float = 0.25,
        max_delay: float = 30.0,
    ) -> None:
        self._url = url
        self._on_notify = on_notify
        self._min_delay = min_delay
        self._max_delay = max_delay
        self._conn: Any = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.losses = 0
        """How many times the connection was lost since the start."""

    @property
    def connected(self) -> bool:
        """Whether notifications arrive now (else invalidations wait for the poll)."""
        return self._conn is not None and not self._lost.is_set()

    async def start(self) -> None:
        """Connect (a failure is the start's), then watch the connection."""
        with map_db_errors():
            await self._connect()
        self._task = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close(timeout=2)
            self._conn = None

    async def _connect(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(
            self._url, timeout=10, server_settings={"application_name": "apiward-listen"}
        )
        self._lost.clear()
        conn.add_termination_listener(lambda *_: self._lost.set())
        await conn.add_listener(NOTIFY_CHANNEL, lambda *_: self._on_notify())
        self._conn = conn

    async def _watch(self) -> None:
        while True:
            await self._lost.wait()
            self.losses += 1
            log.warning(
                "invalidation_notifications_lost",
                note="Reconnecting; until then invalidations arrive by the poll.",
            )
            self._on_notify()
            delay = self._min_delay
            while True:
                await asyncio.sleep(delay)
                try:
                    await self._connect()
                    break
                except Exception as exc:  # any driver or network error: try again later
                    log.info(
                        "invalidation_notifications_reconnect_failed", error=type(exc).__name__
                    )
                    delay = min(delay * 2, self._max_delay)
            log.info("invalidation_notifications_restored", losses=self.losses)
            self._on_notify()


async def listen(engine: AsyncEngine, on_notify: Callable[[], None]) -> Listener | None:
    """On PostgreSQL, call ``on_notify`` whenever any process writes an invalidation,
    through a connection that is made again whenever it is lost (``Listener``).

    Returns the listener (``stop()`` ends it), or None on back-ends without
    notifications (SQLite), where the poll alone carries invalidations.
    """
    if engine.dialect.name != "postgresql":
        return None
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    listener = Listener(url, on_notify)
    await listener.start()
    return listener
