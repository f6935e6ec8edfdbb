"""The store under test: migrated and empty, once on SQLite and once on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from apiward.adapters.storage.migrate import upgrade
from apiward.adapters.storage.sql import SqlStore, create_engine
from apiward.services.ports import Store, Transaction


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store[Transaction]]:
    """A migrated, empty store on the back-end of this parametrization."""
    sql = SqlStore(create_engine(database_url))
    await upgrade(sql.engine)
    contract: Store[Transaction] = sql
    yield contract
    await sql.close()
