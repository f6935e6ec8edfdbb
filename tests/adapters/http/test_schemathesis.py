"""Schemathesis against the live server's /openapi.json, every operation, with a valid
and with an invalid credential: no 5xx, and every response matches the document."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from apiward.adapters.http.app import create_app
from apiward.adapters.runtime import build
from tests.conftest import fast_settings
from tests.live import serve

CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance"
)
EXAMPLES = os.environ.get("APIWARD_SCHEMATHESIS_EXAMPLES", "20")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    db = tmp_path_factory.mktemp("schemathesis") / "s.db"
    settings = fast_settings(
        database_url=f"sqlite+aiosqlite:///{db}",
        auth_failure_limit="1000000/minute",
        login_max_failures=1_000_000,
        login_ip_max_failures=1_000_000,
    )

    async def owner_key() -> str:
        runtime = build(settings)
        await runtime.start(background=False)
        try:
            boot = await runtime.tenancy.bootstrap("Fuzz", "f@fuzz.test", "correct horse battery")
            principal = await runtime.operators.principal(boot.org.id)
            return (await runtime.keys.create(principal, name="o", scopes=["*"])).plaintext
        finally:
            await runtime.stop()

    key = asyncio.run(owner_key())
    with serve(create_app(settings)) as base:
        yield base, key


@pytest.mark.parametrize("credential", ["valid", "invalid"])
def test_every_operation_conforms(server: tuple[str, str], credential: str) -> None:
    base, key = server
    token = key if credential == "valid" else "aw_live_not-a-real-key"
    binary = Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [
            str(binary),
            "run",
            f"{base}/openapi.json",
            "--checks",
            CHECKS,
            "--max-examples",
            EXAMPLES,
            "--seed",
            "20261122",
            "-H",
            f"Authorization: Bearer {token}",
            "--request-timeout",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    tail = result.stdout[-6000:]
    assert result.returncode == 0, tail
    assert "Tested: " in result.stdout
