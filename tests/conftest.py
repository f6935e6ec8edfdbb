"""Shared fixtures: settings on a fresh database, an app with its lifespan, an org."""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from fastapi.testclient import TestClient

from apiward.adapters.http.app import create_app
from apiward.adapters.runtime import Runtime
from apiward.adapters.settings import Settings
from apiward.adapters.storage.migrate import head, upgrade
from apiward.adapters.storage.sql import SqlStore, create_engine

pytest_plugins = ["tests.redis_topologies"]

POSTGRES_URL = os.environ.get(
    "APIWARD_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/apiward_tests"
)
TEST_DATABASE_MARK = "apiward test database: emptied by every test run"
"""The comment the suite puts on a database it creates. Without APIWARD_TEST_POSTGRES_URL,
the suite empties only a database that carries it, never one of the user's own."""
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
QUICK = os.environ.get("APIWARD_TEST_DEPTH", "full") == "quick"
"""``APIWARD_TEST_DEPTH=quick``: every test runs, each property test on a fifth of its
examples. CI runs the full depth on one Python and the quick one on the others: a
property's examples find a logic error on any Python; what differs between Pythons is
caught by every test running on each."""


def examples(n: int, *, least: int = 5) -> int:
    """A property test's number of examples at this depth (at least ``least``)."""
    return max(least, n // 5) if QUICK else n


hypothesis.settings.register_profile("quick", max_examples=examples(100))
if QUICK:
    hypothesis.settings.load_profile("quick")


def fast_settings(**overrides: Any) -> Settings:
    """Settings for tests: cheap Argon2 (the real cost is a production setting), quiet logs."""
    base: dict[str, Any] = {
        "argon2_time_cost": 1,
        "argon2_memory_kib": 1024,
        "argon2_parallelism": 1,
        "log_level": "warning",
        "last_used_flush_seconds": 3600,
        "invalidation_poll_seconds": 3600,
        "secret_key": "test-secret-that-is-at-least-32-bytes-long",
        # Webhook receivers of the tests listen on this machine.
        "webhook_allowed_networks": ["127.0.0.0/8", "::1/128"],
    }
    base.update(overrides)
    return Settings(**base)


_MIGRATED = False
"""Whether this process has migrated the test database's schema to the head once: after
that, a test's reset empties the tables instead of dropping and migrating them anew."""


def _postgres_reachable(*, empty: bool = False) -> str | None:
    import asyncpg

    dsn = POSTGRES_URL.replace("postgresql+asyncpg", "postgresql")
    chosen = "APIWARD_TEST_POSTGRES_URL" in os.environ

    async def create(name: str) -> None:
        server = await asyncpg.connect(dsn.rsplit("/", 1)[0] + "/postgres", timeout=3)
        try:
            await server.execute(f'CREATE DATABASE "{name}"')
            await server.execute(f"COMMENT ON DATABASE \"{name}\" IS '{TEST_DATABASE_MARK}'")
        except asyncpg.DuplicateDatabaseError:
            pass  # another test process made it first
        finally:
            await server.close()

    async def probe() -> None:
        try:
            conn = await asyncpg.connect(dsn, timeout=3)
        except asyncpg.InvalidCatalogNameError:
            if chosen:
                raise
            await create(dsn.rsplit("/", 1)[1])
            conn = await asyncpg.connect(dsn, timeout=3)
        try:
            mark = await conn.fetchval(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database"
                " WHERE datname = current_database()"
            )
            if not chosen and mark != TEST_DATABASE_MARK:
                raise _NotOurs(
                    "that database was not created by this test suite, and the tests empty "
                    "it; set APIWARD_TEST_POSTGRES_URL to a database they may empty"
                )
            await _reset(conn, empty=empty)
        finally:
            await conn.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncpg.PostgresError, _NotOurs) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


async def _reset(conn: Any, *, empty: bool) -> None:
    """Give the next test a schema with no rows: emptied tables when the schema is the
    migrated head this process left (a tenth of a drop and migration), else a dropped
    schema, migrated to the head unless the test asks for ``empty`` (the migration tests,
    several processes migrating together)."""
    global _MIGRATED
    if not empty and _MIGRATED:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename <> 'alembic_version'"
        )
        version = await _version(conn)
        if tables and version == head():
            names = ", ".join(f'public."{row[0]}"' for row in tables)
            await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
            return
    await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    _MIGRATED = False
    if not empty:
        engine = create_engine(POSTGRES_URL)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()
        _MIGRATED = True


async def _version(conn: Any) -> str | None:
    import asyncpg

    try:
        found: str | None = await conn.fetchval("SELECT version_num FROM alembic_version")
    except asyncpg.UndefinedTableError:
        return None
    return found


class _NotOurs(Exception):
    """The default test database exists but is not one this suite created."""


def require_postgres(*, empty: bool = False) -> str:
    """The PostgreSQL URL, its schema migrated to the head with no rows (or, with
    ``empty``, no schema at all); skip (fail in CI) when unreachable."""
    problem = _postgres_reachable(empty=empty)
    if problem:
        message = (
            f"PostgreSQL is not reachable at {POSTGRES_URL} ({problem}). Start it, or point "
            "APIWARD_TEST_POSTGRES_URL at a server, to run these tests."
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return POSTGRES_URL


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store contract test runs once on SQLite and once on the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'apiward.db'}"
    return require_postgres()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """As ``database_url``, with no schema at all: for tests of the migrations themselves."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'apiward.db'}"
    return require_postgres(empty=True)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'apiward.db'}"


@functools.cache
def _migrated_sqlite() -> Path:
    """A SQLite database at the newest revision, made once per test process: an app's
    database starts as a copy of it, so that each test does not migrate one anew."""
    path = Path(tempfile.mkdtemp(prefix="apiward-tests-")) / "migrated.db"

    async def build() -> None:
        store = SqlStore(create_engine(f"sqlite+aiosqlite:///{path}"))
        try:
            await upgrade(store.engine)
        finally:
            await store.close()

    with ThreadPoolExecutor(1) as pool:  # a test may already run an event loop
        pool.submit(asyncio.run, build()).result()
    return path


def migrated_sqlite(target: Path) -> str:
    """The URL of a SQLite database at ``target``, already at the newest revision (the
    migrations themselves are tested in ``tests/adapters/storage/test_migrations.py``,
    from an empty file)."""
    if not target.exists():
        shutil.copyfile(_migrated_sqlite(), target)
    return f"sqlite+aiosqlite:///{target}"


@pytest.fixture
def migrated_sqlite_url(sqlite_url: str) -> str:
    """``sqlite_url``, already at the newest revision."""
    return migrated_sqlite(Path(sqlite_url.removeprefix("sqlite+aiosqlite:///")))


@pytest.fixture
def settings(migrated_sqlite_url: str) -> Settings:
    return fast_settings(database_url=migrated_sqlite_url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


@dataclass
class Org:
    """A bootstrapped organisation and the owner's live and test keys."""

    client: TestClient
    id: str
    space_id: str
    owner_id: str
    owner_key: str
    owner_test_key: str

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.client.app.state.runtime  # type: ignore[attr-defined]
        return runtime

    def operator_key(self, env: str = "live") -> str:
        """A key made by the deployment's operator (as the CLI does), holding the operator
        permissions that set plans, limits that loosen them, and credits."""
        runtime = self.runtime

        async def run() -> str:
            principal = await runtime.operators.principal(self.id, env)
            scopes = ["*", "owner:*", "operator:*"]
            return (await runtime.keys.create(principal, name="operator", scopes=scopes)).plaintext

        return self.client.portal.call(run)  # type: ignore[union-attr]

    def headers(self, key: str | None = None, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.owner_key}", **extra}

    def create_key(
        self, scopes: list[str], *, env: str = "live", by: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        owner = by or (self.owner_key if env == "live" else self.owner_test_key)
        r = self.client.post(
            "/v1/keys", headers=self.headers(owner), json={"name": "k", "scopes": scopes, **fields}
        )
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
        return body

    def create_user(
        self,
        email: str,
        role: str | None = None,
        space_id: str | None = None,
        password: str | None = None,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {"email": email, "role": role, "space_id": space_id}
        if password:
            payload["password"] = password
        r = self.client.post("/v1/users", headers=self.headers(), json=payload)
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
        return body


def bootstrap(
    client: TestClient, name: str = "Acme", email: str = "owner@acme.test", *, another: bool = False
) -> Org:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]

    async def run() -> Org:
        boot = await runtime.tenancy.bootstrap(
            name, email, "correct horse battery", allow_another=another
        )
        keys = {}
        for env in runtime.settings.environments:  # a deployment may serve one only
            principal = await runtime.operators.principal(boot.org.id, env)
            created = await runtime.keys.create(principal, name="owner", scopes=["*", "owner:*"])
            keys[env] = created.plaintext
        live = keys.get("live") or next(iter(keys.values()))
        return Org(client, boot.org.id, boot.space.id, boot.owner.id, live, keys.get("test", ""))

    return client.portal.call(run)  # type: ignore[union-attr]


def embedded_key(client: TestClient, runtime: Runtime, scopes: list[str]) -> tuple[str, str]:
    """An organisation and an API key of ``scopes`` in the runtime of an app apiward is
    embedded in (``Apiward().runtime``): the organisation's id and the key."""

    async def run() -> tuple[str, str]:
        boot = await runtime.tenancy.bootstrap("Acme", "o@acme.test", "correct horse battery")
        owner = await runtime.operators.principal(boot.org.id)
        made = await runtime.keys.create(owner, name="a", scopes=scopes)
        return boot.org.id, made.plaintext

    return client.portal.call(run)  # type: ignore[union-attr]


@pytest.fixture
def org(client: TestClient) -> Org:
    return bootstrap(client)


@pytest.fixture
def other_org(client: TestClient, org: Org) -> Org:
    return bootstrap(client, "Globex", "owner@globex.test", another=True)


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        import datetime as dt

        self.current = dt.datetime.now(dt.UTC)

    def now(self) -> Any:
        return self.current

    def advance(self, seconds: float) -> None:
        import datetime as dt

        self.current += dt.timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def timed_org(settings: Settings, clock: FakeClock) -> Iterator[Org]:
    """An org on an app whose clock the test moves."""
    with TestClient(create_app(settings, clock=clock), raise_server_exceptions=False) as c:
        yield bootstrap(c)
