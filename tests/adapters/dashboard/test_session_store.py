"""The store's dashboard sessions, on SQLite and PostgreSQL (migration 0005)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command

from apiward.adapters.storage.migrate import alembic_config, upgrade
from apiward.adapters.storage.sql import SqlStore, create_engine
from apiward.core.ids import new_id
from apiward.core.models import DashboardSession, Organisation, User
from apiward.services.ports import Store, Transaction

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store[Transaction]]:
    sql = SqlStore(create_engine(database_url))
    await upgrade(sql.engine)
    yield sql
    await sql.close()


async def _session(store: Store[Transaction], now: datetime, ttl: timedelta) -> DashboardSession:
    org = Organisation(new_id("org"), f"Org {new_id('x')}", now)
    user = User(new_id("usr"), org.id, f"{new_id('u').lower()}@example.test", "U", None, now)
    session = DashboardSession(
        id=new_id("ses"),
        digest=hashlib.sha256(new_id("cookie").encode()).hexdigest(),
        org_id=org.id,
        user_id=user.id,
        created_at=now,
        expires_at=now + ttl,
        ip="203.0.113.9",
        user_agent="pytest",
    )
    async with store.begin() as tx:
        await tx.insert_org(org)
        await tx.insert_user(user)
        await tx.insert_session(session)
    return session


async def test_sessions_are_found_by_digest_and_revoked(store: Store[Transaction]) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    session = await _session(store, now, timedelta(hours=1))
    async with store.begin() as tx:
        assert await tx.find_session(session.digest) == session
        assert await tx.find_session("0" * 64) is None
        await tx.revoke_session(session.id, now + timedelta(minutes=1))
        await tx.revoke_session(session.id, now + timedelta(minutes=2))  # the first time stays
    async with store.begin() as tx:
        found = await tx.find_session(session.digest)
    assert found is not None
    assert found.revoked_at == now + timedelta(minutes=1)


async def test_expired_sessions_are_pruned(store: Store[Transaction]) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    old = await _session(store, now - timedelta(hours=2), timedelta(hours=1))
    live = await _session(store, now, timedelta(hours=1))
    async with store.begin() as tx:
        assert await tx.prune_sessions(now) >= 1
        assert await tx.find_session(old.digest) is None
        assert await tx.find_session(live.digest) == live


async def test_the_migration_goes_down_and_up_again(store: Store[Transaction]) -> None:
    assert isinstance(store, SqlStore)

    def down_and_up(connection: object) -> None:
        command.downgrade(alembic_config(connection), "0004")
        command.upgrade(alembic_config(connection), "head")

    async with store.engine.begin() as conn:
        await conn.run_sync(down_and_up)
    await _session(store, datetime.now(UTC), timedelta(hours=1))
