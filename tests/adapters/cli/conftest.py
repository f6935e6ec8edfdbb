"""What every CLI test shares: the environment an operator's shell would have, and a
runner that fails the test with the command's output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from apiward.adapters.cli.main import app

SECRET = "test-secret-that-is-at-least-32-bytes-long"


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A SQLite database of the test's own, cheap Argon2, quiet logs."""
    values = {
        "APIWARD_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
        "APIWARD_ARGON2_TIME_COST": "1",
        "APIWARD_ARGON2_MEMORY_KIB": "1024",
        "APIWARD_ARGON2_PARALLELISM": "1",
        "APIWARD_LOG_LEVEL": "warning",
        "APIWARD_SECRET_KEY": SECRET,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def init(name: str = "Acme", *extra: str, email: str | None = None) -> dict[str, Any]:
    """``apiward init`` of an organisation ``name`` owned by ``o@<name>.test``: what it
    printed (``--json``)."""
    address = email or f"o@{name.lower()}.test"
    out = run(
        "init", "--org-name", name, "--email", address,
        "--password", "correct horse battery", "--json", *extra,
    )  # fmt: skip
    made: dict[str, Any] = json.loads(out)
    return made
