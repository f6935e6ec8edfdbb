"""Alembic migrations, run on start and by ``apiward migrate``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from apiward.adapters.storage.sql.errors import map_db_errors

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(connection: Any = None) -> Config:
    from alembic.config import Config  # Alembic loads only where migrations run

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


MIGRATION_LOCK = 0x61706977  # "apiw": the advisory lock every migrating process takes
"""Processes starting together (workers, several machines) migrate one at a time: each
takes this PostgreSQL advisory lock in the migration's transaction, so the first applies
the migrations and the others find the schema at head when they get the lock."""


def head() -> str:
    """The newest revision, read from the file names (``NNNN_what.py`` holds revision
    ``NNNN``; a test holds every file to it), without loading Alembic."""
    names = (p.name for p in (MIGRATIONS / "versions").glob("[0-9]*.py"))
    return max(name.partition("_")[0] for name in names)


async def at_head(engine: AsyncEngine) -> bool:
    """Whether the database's schema is the newest one (no migration to run)."""
    async with engine.connect() as conn:
        try:
            found = await conn.execute(text("SELECT version_num FROM alembic_version"))
        except DBAPIError:
            return False  # an empty database
        return [row[0] for row in found] == [head()]


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Apply the migrations up to ``revision``, once however many processes ask at once.
    A database already at the newest revision costs one read (a CLI command, a restart)."""
    if revision == "head" and await at_head(engine):
        return

    def run(connection: Any) -> None:
        from alembic import command

        command.upgrade(alembic_config(connection), revision)

    with map_db_errors(), _file_lock(engine):
        async with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK}
                )
            await conn.run_sync(run)


@contextmanager
def _file_lock(engine: AsyncEngine) -> Iterator[None]:
    """For a SQLite file, an exclusive lock on ``<database>.migrate.lock`` beside it (a
    SQLite transaction does not hold back another process's DDL until it writes)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    import fcntl

    with open(f"{database}.migrate.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # held until the file closes
        yield
