"""Schemathesis against the live server's /openapi.json, every operation, with a valid
and with an invalid credential: no 5xx, and every response matches the document. Times
(every ``date-time`` input, analytics' since/until) are drawn at the edges of what a date
holds, at offsets up to 23:59 (schemathesis_hooks.py). Both runs go at once: one
server, two schemathesis processes."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from apiward.adapters.http.app import create_app
from apiward.adapters.runtime import build
from tests.conftest import examples, fast_settings
from tests.live import serve

CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance"
)
EXAMPLES = os.environ.get("APIWARD_SCHEMATHESIS_EXAMPLES", str(examples(20)))
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
CREDENTIALS = ("valid", "invalid")


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


@pytest.fixture(scope="module")
def runs(server: tuple[str, str]) -> dict[str, subprocess.CompletedProcess[str]]:
    """Both runs, started together, each to its end: the output of each."""
    base, key = server
    binary = Path(sys.executable).parent / "schemathesis"
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)}
    started = {}
    for credential in CREDENTIALS:
        token = key if credential == "valid" else "aw_live_not-a-real-key"
        command = [
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
        ]
        started[credential] = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
    done = {}
    for credential, process in started.items():
        try:
            out, _ = process.communicate(timeout=900)
        finally:
            process.kill()
        done[credential] = subprocess.CompletedProcess(process.args, process.returncode, out)
    return done


@pytest.mark.parametrize("credential", CREDENTIALS)
def test_every_operation_conforms(
    runs: dict[str, subprocess.CompletedProcess[str]], credential: str
) -> None:
    result = runs[credential]
    assert result.returncode == 0, _failures(result.stdout)
    assert "Tested: " in result.stdout


def _failures(out: str) -> str:
    """The report's failures, each request as sent (long runs of escaped bytes cut)."""
    start = out.find("FAILURES")
    text = out[start:] if start >= 0 else out[-6000:]
    return re.sub(r"(%[0-9A-F]{2}){16,}", "%...", text)[:8000]
