"""Migration 0007 on a database that already holds data: every row and reference stays,
project names stop being unique, and the way back restores the constraint."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from apiward.adapters.storage.migrate import alembic_config
from apiward.adapters.storage.sql import create_engine
from apiward.adapters.storage.tables import UTCDateTime

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
ROWS = [
    "INSERT INTO orgs (id, name, created_at) VALUES ('org_a', 'Acme', :now)",
    "INSERT INTO environments (id, org_id, name, created_at) "
    "VALUES ('env_a', 'org_a', 'live', :now)",
    "INSERT INTO spaces (id, org_id, name, is_default, created_at) "
    "VALUES ('spc_a', 'org_a', 'Default', :true, :now)",
    "INSERT INTO users (id, org_id, email, name, password_hash, created_at) "
    "VALUES ('usr_a', 'org_a', 'o@acme.test', 'o', 'x', :now)",
    "INSERT INTO memberships (org_id, user_id, space_id, role, created_at) "
    "VALUES ('org_a', 'usr_a', '', 'owner', :now)",
    "INSERT INTO dashboard_sessions (id, digest, org_id, user_id, created_at, expires_at) "
    "VALUES ('ses_a', 'd', 'org_a', 'usr_a', :now, :now)",
    "INSERT INTO audit_events (id, org_id, type, created_at, data) "
    "VALUES ('evt_a', 'org_a', 'org.created', :now, '{}')",
]
ANOTHER_ACME = "INSERT INTO orgs (id, name, created_at) VALUES (:id, 'Acme', :now)"
ORGLESS_EVENT = (
    "INSERT INTO audit_events (id, org_id, type, created_at, data) "
    "VALUES ('evt_b', NULL, 'account.signed_up', :now, '{}')"
)
DANGLING_USER = (
    "INSERT INTO users (id, org_id, email, name, created_at) "
    "VALUES ('usr_x', 'org_nope', 'x@x.test', 'x', :now)"
)


def _to(revision: str, *, down: bool = False) -> Any:
    def run(connection: Any) -> None:
        (command.downgrade if down else command.upgrade)(alembic_config(connection), revision)

    return run


async def _run(conn: Any, sql: str, **params: object) -> None:
    # The store's own type binds the time, as the application does: no driver default.
    statement = sa.text(sql).bindparams(sa.bindparam("now", type_=UTCDateTime()))
    await conn.execute(statement, {"now": NOW, **params})


async def _count(conn: Any, table: str) -> int:
    return int((await conn.execute(sa.text(f"SELECT count(*) FROM {table}"))).scalar_one())  # noqa: S608


async def test_0007_keeps_rows_and_references_and_can_be_undone(empty_database_url: str) -> None:
    engine = create_engine(empty_database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_to("0006"))
            for row in ROWS:
                await _run(conn, row, true=True) if ":true" in row else await _run(conn, row)
        async with engine.begin() as conn:
            await conn.run_sync(_to("head"))
        async with engine.begin() as conn:
            for table in ("orgs", "environments", "spaces", "users", "memberships"):
                assert await _count(conn, table) == 1, table
            user = (await conn.execute(sa.text("SELECT account_id, email FROM users"))).one()
            assert tuple(user) == (None, "o@acme.test")
            # Another project may take the same name now.
            await _run(conn, ANOTHER_ACME, id="org_b")
            # An event outside any org is possible.
            await _run(conn, ORGLESS_EVENT)
        # References still hold after the rebuild of "orgs".
        with pytest.raises(sa.exc.IntegrityError):
            async with engine.begin() as conn:
                await _run(conn, DANGLING_USER)
        if engine.dialect.name == "sqlite":
            async with engine.begin() as conn:
                assert (await conn.execute(sa.text("PRAGMA foreign_key_check"))).all() == []

        async with engine.begin() as conn:
            await conn.execute(sa.text("DELETE FROM orgs WHERE id = 'org_b'"))
            await conn.run_sync(_to("0006", down=True))
        async with engine.begin() as conn:
            assert await _count(conn, "users") == 1
            assert await _count(conn, "audit_events") == 1  # the org-less one is gone
        with pytest.raises(sa.exc.IntegrityError):
            async with engine.begin() as conn:
                await _run(conn, ANOTHER_ACME, id="org_c")
        async with engine.begin() as conn:
            await conn.run_sync(_to("head"))
    finally:
        await engine.dispose()


KEY_ROW = (
    "INSERT INTO api_keys (id, org_id, environment, name, digest, prefix, last4, scopes, "
    "created_by, created_at, updated_at, expires_at, ip_allow, space_allow) VALUES ('key_a', "
    "'org_a', 'live', 'k', 'd', 'aw_live_', 'abcd', '[\"keys:read\"]', 'usr_a', :now, :now, "
    ":now, '[\"10.0.0.0/8\"]', '[]')"
)


async def test_0009_keys_made_before_record_nothing_as_the_operators(
    empty_database_url: str,
) -> None:
    """A key made before the operator's bounds were recorded has none: its expiry and
    allow-lists stay as they were, and the way back drops the columns."""
    from apiward.adapters.storage.sql.rows import key_record

    engine = create_engine(empty_database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_to("0008"))
            for row in [*ROWS, KEY_ROW]:
                await _run(conn, row, true=True) if ":true" in row else await _run(conn, row)
        async with engine.begin() as conn:
            await conn.run_sync(_to("0009"))
            # Read as the application does, with every later column there too.
            await conn.run_sync(_to("head"))
        async with engine.begin() as conn:
            from apiward.adapters.storage import tables as t

            key = key_record((await conn.execute(t.api_keys.select())).one())
            assert (key.expires_at, key.ip_allow) == (NOW, ("10.0.0.0/8",))
            assert key.operator_expires_at is None
            assert key.operator_ip_allow is None and key.operator_space_allow is None
            await conn.run_sync(_to("0008", down=True))
        async with engine.begin() as conn:
            assert await _count(conn, "api_keys") == 1
            await conn.run_sync(_to("head"))
    finally:
        await engine.dispose()


def test_the_newest_revision_is_read_from_file_names_as_alembic_reads_it() -> None:
    from alembic.script import ScriptDirectory

    from apiward.adapters.storage.migrate import head

    scripts = ScriptDirectory.from_config(alembic_config())
    assert scripts.get_heads() == [head()]
    for script in scripts.walk_revisions():
        assert script.path is not None
        assert script.path.rsplit("/", 1)[1].startswith(f"{script.revision}_")


async def test_a_database_at_the_newest_revision_is_not_migrated_again(tmp_path: Any) -> None:
    from apiward.adapters.storage.migrate import at_head, head, upgrade

    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/a.db")
    try:
        assert not await at_head(engine)  # empty
        await upgrade(engine, "0009")
        assert not await at_head(engine)
        await upgrade(engine)
        assert await at_head(engine)
        await upgrade(engine)  # one read, nothing applied
        async with engine.connect() as conn:
            versions = await conn.execute(sa.text("SELECT version_num FROM alembic_version"))
            assert [row[0] for row in versions] == [head()]
    finally:
        await engine.dispose()


ARCHIVED_SPACE = (
    "INSERT INTO spaces (id, org_id, name, is_default, created_at, archived_at) "
    "VALUES ('spc_old', 'org_a', 'Old', :false, :now, :now)"
)


async def test_0011_spaces_archived_before_have_no_recorded_archiver(
    empty_database_url: str,
) -> None:
    """A space archived before its archiver was recorded stays archived with none (so
    only an owner or the operator brings it back), and the way back drops the column."""
    engine = create_engine(empty_database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_to("0010"))
            for row in ROWS:
                await _run(conn, row, true=True) if ":true" in row else await _run(conn, row)
            await _run(conn, ARCHIVED_SPACE, false=False)
        async with engine.begin() as conn:
            await conn.run_sync(_to("0011"))
        async with engine.begin() as conn:
            rows = await conn.execute(
                sa.text("SELECT id, archived_at IS NOT NULL, archived_by FROM spaces ORDER BY id")
            )
            assert [tuple(r) for r in rows] == [("spc_a", False, None), ("spc_old", True, None)]
            await conn.run_sync(_to("0010", down=True))
        async with engine.begin() as conn:
            assert await _count(conn, "spaces") == 2
            await conn.run_sync(_to("head"))
    finally:
        await engine.dispose()


CLIENT_ROW = (
    "INSERT INTO oauth_clients (id, org_id, environment, name, secret_digest, secret_last4, "
    "scopes, created_by, created_at, updated_at) VALUES ('client_a', 'org_a', 'live', 'c', "
    "'s', 'wxyz', '[\"keys:read\"]', 'usr_a', :now, :now)"
)


async def test_0012_credentials_made_before_belong_to_no_external_id(
    empty_database_url: str,
) -> None:
    """A key and a client made before migration 0012 have no external_id and an empty
    meta, a list by external_id finds none of them, and the way back drops the columns."""
    from apiward.adapters.storage import tables as t
    from apiward.adapters.storage.sql.rows import client_record, key_record

    engine = create_engine(empty_database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_to("0011"))
            for row in [*ROWS, KEY_ROW, CLIENT_ROW]:
                await _run(conn, row, true=True) if ":true" in row else await _run(conn, row)
        async with engine.begin() as conn:
            await conn.run_sync(_to("0012"))
        async with engine.begin() as conn:
            key = key_record((await conn.execute(t.api_keys.select())).one())
            client = client_record((await conn.execute(t.oauth_clients.select())).one())
            assert (key.external_id, key.meta) == (None, {})
            assert (client.external_id, client.meta) == (None, {})
            found = await conn.execute(
                sa.select(t.api_keys.c.id).where(
                    t.api_keys.c.org_id == "org_a", t.api_keys.c.external_id == "cus_1"
                )
            )
            assert found.all() == []
            await conn.run_sync(_to("0011", down=True))
        async with engine.begin() as conn:
            columns = await conn.run_sync(
                lambda sync: {c["name"] for c in sa.inspect(sync).get_columns("api_keys")}
            )
            assert "external_id" not in columns and "meta" not in columns
            assert await _count(conn, "api_keys") == 1
            assert await _count(conn, "oauth_clients") == 1
            await conn.run_sync(_to("head"))
    finally:
        await engine.dispose()


async def test_0015_adds_the_second_factor_tables_and_the_way_back_drops_them(
    empty_database_url: str,
) -> None:
    """Migration 0015 keeps every row; organisations made before it require no second
    factor; the way back removes its two tables and the column."""
    engine = create_engine(empty_database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_to("0014"))
            for row in ROWS:
                await _run(conn, row, true=True) if ":true" in row else await _run(conn, row)
        async with engine.begin() as conn:
            await conn.run_sync(_to("0015"))
        async with engine.begin() as conn:
            await _run(
                conn,
                "INSERT INTO mfa_factors (owner_id, secret_sealed, created_at) "
                "VALUES ('usr_a', 'sealed', :now)",
            )
            assert await _count(conn, "mfa_factors") == 1
            assert await _count(conn, "users") == 1
            required = await conn.execute(sa.text("SELECT require_mfa FROM orgs"))
            assert [bool(r[0]) for r in required] == [False]
            await conn.run_sync(_to("0014", down=True))
        async with engine.begin() as conn:
            tables = await conn.run_sync(lambda sync: set(sa.inspect(sync).get_table_names()))
            assert not {"mfa_factors", "mfa_recovery_codes"} & tables
            columns = await conn.run_sync(
                lambda sync: {c["name"] for c in sa.inspect(sync).get_columns("orgs")}
            )
            assert "require_mfa" not in columns and "key_hygiene" in columns
            assert await _count(conn, "dashboard_sessions") == 1
            await conn.run_sync(_to("head"))
    finally:
        await engine.dispose()
