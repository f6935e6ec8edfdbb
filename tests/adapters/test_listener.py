"""PostgreSQL's notifications of invalidations survive the loss of their connection: a
revocation made by another process reaches a warm cache within a second, before and
after the listening session is terminated, without waiting for the poll."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import asyncpg
import pytest
from fastapi.testclient import TestClient

from apiward.adapters.http.app import create_app
from apiward.adapters.runtime import Runtime, build
from tests.conftest import fast_settings, require_postgres

pytestmark = pytest.mark.postgres


def elsewhere(url: str, action: Callable[[Runtime], object]) -> None:
    """Run ``action`` in another runtime on the same database (another process's)."""

    async def run() -> None:
        runtime = build(fast_settings(database_url=url))
        await runtime.start(background=False)
        try:
            await action(runtime)  # type: ignore[misc]
        finally:
            await runtime.stop()

    asyncio.run(run())


def terminate_listening_sessions(url: str) -> int:
    async def run() -> int:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        try:
            ended = await conn.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'apiward-listen' AND datname = current_database()"
            )
            return len(ended)
        finally:
            await conn.close()

    return asyncio.run(run())


def refused_within(client: TestClient, key: str, seconds: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if client.get("/v1/keys", headers={"Authorization": f"Bearer {key}"}).status_code == 401:
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"the revocation did not arrive within {seconds} s")


def test_notifications_come_back_after_their_session_is_terminated() -> None:
    url = require_postgres()
    made: dict[str, str] = {}

    async def setup(runtime: Runtime) -> None:
        boot = await runtime.tenancy.bootstrap("Acme", "o@acme.test", "correct horse battery")
        owner = await runtime.operators.principal(boot.org.id)
        for name in ("before", "after"):
            created = await runtime.keys.create(owner, name=name, scopes=["keys:read"])
            made[name], made[f"{name}-id"] = created.plaintext, created.key.id
        made["org"] = boot.org.id

    def revoke(name: str) -> Callable[[Runtime], object]:
        async def run(runtime: Runtime) -> None:
            owner = await runtime.operators.principal(made["org"])
            await runtime.keys.revoke(owner, made[f"{name}-id"])

        return run

    elsewhere(url, setup)
    # The poll would take an hour: only a notification makes the revocation arrive.
    settings = fast_settings(database_url=url, invalidation_poll_seconds=3600)
    with TestClient(create_app(settings)) as client:
        runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
        for name in ("before", "after"):  # warm caches
            auth = {"Authorization": f"Bearer {made[name]}"}
            assert client.get("/v1/keys", headers=auth).status_code == 200
        elsewhere(url, revoke("before"))
        refused_within(client, made["before"], 1.0)

        assert terminate_listening_sessions(url) == 1
        deadline = time.monotonic() + 10
        while not (runtime.listener and runtime.listener.losses and runtime.listener.connected):
            assert time.monotonic() < deadline, "the notifications did not come back"
            time.sleep(0.02)
        assert client.get("/readyz").json()["checks"]["notifications"] == "ok"
        metrics = client.get("/metrics").text
        assert "apiward_notifications_connected 1.0" in metrics
        assert "apiward_notifications_lost_total 1.0" in metrics

        elsewhere(url, revoke("after"))
        refused_within(client, made["after"], 1.0)
