"""The SQLAlchemy store: SQLite (WAL) by default, PostgreSQL with asyncpg.

``engine`` makes the engine, ``errors`` maps driver errors, ``rows`` turns rows into
records; each aggregate's statements live in a module of its own (``tenancy``,
``credentials``, ``tokens``, ``invalidations``, ``portal``, ``audit``, ``webhooks``,
``analytics``), and ``store`` composes them into the ``SqlTransaction`` that
``SqlStore.begin`` hands out.
"""

from apiward.adapters.storage.sql.engine import create_engine
from apiward.adapters.storage.sql.errors import map_db_errors
from apiward.adapters.storage.sql.store import SqlStore, SqlTransaction

__all__ = [
    "SqlStore",
    "SqlTransaction",
    "create_engine",
    "map_db_errors",
]
