"""Processes that start together on an empty database migrate it once, and all serve:
four `apiward serve` processes, each migrating on start, launched at the same moment."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import require_postgres
from tests.live import SECRET, free_port


def _start_together(database_url: str, count: int) -> None:
    ports = [free_port() for _ in range(count)]
    env = {
        **os.environ,
        "APIWARD_DATABASE_URL": database_url,
        "APIWARD_SECRET_KEY": SECRET,
        "APIWARD_LOG_LEVEL": "warning",
        "APIWARD_MIGRATE_ON_START": "true",
    }
    # Each process runs the migrations itself (as workers of another server, or machines
    # of one deployment, would): the CLI's own migration step is turned off by serving
    # through uvicorn's factory, as `uvicorn --factory apiward.adapters.http.app:create_app`.
    command = [sys.executable, "-m", "uvicorn", "--factory", "apiward.adapters.http.app:create_app"]
    procs = [
        subprocess.Popen(
            [*command, "--port", str(port), "--log-level", "warning"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for port in ports
    ]
    try:
        pending = set(ports)
        deadline = time.monotonic() + 90
        while pending and time.monotonic() < deadline:
            for port in list(pending):
                try:
                    ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                except httpx.TransportError:
                    continue
                if ready.status_code == 200:
                    pending.discard(port)
            if any(p.poll() is not None for p in procs):
                break
            time.sleep(0.1)
        failed = [p for p in procs if p.poll() is not None]
        for proc in failed:
            assert proc.stderr is not None
            raise AssertionError(proc.stderr.read().decode()[-3000:])
        assert not pending, f"{len(pending)} of {count} processes never served"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
            if proc.stderr:
                proc.stderr.close()


def _schema_at_head(database_url: str) -> None:
    from alembic.script import ScriptDirectory

    from apiward.adapters.storage.migrate import alembic_config
    from apiward.adapters.storage.sql import create_engine

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()

    async def read() -> tuple[list[str], set[str]]:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(sa.text("SELECT version_num FROM alembic_version"))
                tables = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
                return [r[0] for r in rows], tables
        finally:
            await engine.dispose()

    versions, tables = asyncio.run(read())
    assert versions == [head]
    assert {"orgs", "api_keys", "audit_events"} <= tables


@pytest.mark.postgres
def test_four_processes_migrate_an_empty_postgres_database_once() -> None:
    url = require_postgres(empty=True)
    _start_together(url, 4)
    _schema_at_head(url)


def test_four_processes_migrate_an_empty_sqlite_database_once(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'together.db'}"
    _start_together(url, 4)
    _schema_at_head(url)
