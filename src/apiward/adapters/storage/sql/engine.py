"""The engine: SQLite (WAL, a private file) by default, PostgreSQL with asyncpg, and
PostgreSQL's notifications of new invalidations."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from apiward.adapters.storage.sql.errors import map_db_errors

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


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An engine for ``url``: SQLite gets its pragmas and immediate transactions,
    PostgreSQL a pool of ``pool_size`` connections (as many again on overflow)."""
    if url.startswith("sqlite"):
        private_sqlite_file(url)
        engine = create_async_engine(url, connect_args={"timeout": 30})
        _sqlite_events(engine)
        return engine
    return create_async_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, pool_timeout=10
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


async def listen(
    engine: AsyncEngine, on_notify: Callable[[], None]
) -> Callable[[], Awaitable[None]] | None:
    """On PostgreSQL, call ``on_notify`` whenever any process writes an invalidation.

    Returns a function that stops listening, or None on back-ends without
    notifications (SQLite), where the poll alone carries invalidations.
    """
    if engine.dialect.name != "postgresql":
        return None
    import asyncpg

    url = engine.url.set(drivername="postgresql")
    with map_db_errors():
        conn = await asyncpg.connect(url.render_as_string(hide_password=False))

    def callback(*_: object) -> None:
        on_notify()

    await conn.add_listener(NOTIFY_CHANNEL, callback)

    async def stop() -> None:
        with contextlib.suppress(Exception):
            await conn.close(timeout=2)

    return stop
