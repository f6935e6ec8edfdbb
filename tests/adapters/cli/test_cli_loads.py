"""What a command loads: ``--help`` and ``--version`` only the command line, a key
command only the store and the services it calls, never the web server's modules nor
the parts of the runtime it does not use (bench/README.md, "The command line", has the
timings these keep; no test times anything)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.adapters.cli.conftest import init

PROBE = """
import gc, json, sys
frozen = gc.get_freeze_count()  # 3.12 starts with some
from apiward.adapters.cli.main import main

out, sys.argv = sys.argv[1], ["apiward", *sys.argv[2:]]
try:
    main()
finally:
    with open(out, "w") as f:
        json.dump({"modules": sorted(sys.modules), "collecting": gc.isenabled(),
                   "frozen": gc.get_freeze_count() - frozen}, f)
"""
"""Runs ``apiward ARGS...`` as the console script does, then writes the names of every
module it loaded, and the garbage collector's state, to the file named first."""

SERVER = (
    "fastapi", "starlette", "uvicorn", "httpx", "jinja2", "cryptography", "jwt",
    "opentelemetry", "prometheus_client", "alembic", "maxminddb", "argon2",
    "apiward.adapters.http.app", "apiward.adapters.http.routes", "apiward.adapters.delivery",
    "apiward.adapters.mail", "apiward.adapters.metrics", "apiward.adapters.tracing",
    "apiward.adapters.geo", "apiward.adapters.secret", "apiward.services.auth",
    "apiward.services.tokens", "apiward.services.signing", "apiward.services.webhooks",
    "apiward.services.portal", "apiward.services.leaks", "apiward.services.importing",
    "apiward.services.housekeeping", "apiward.services.scheduler", "apiward.services.clients",
)  # fmt: skip
"""What serves requests (Argon2: signing in): a key command loads none of it."""

RUNTIME = (
    "sqlalchemy", "pydantic", "structlog", "asyncio", "apiward.adapters.settings",
    "apiward.adapters.runtime", "apiward.core.models", "apiward.services",
)  # fmt: skip
"""What any command that runs needs: ``--help`` and ``--version`` load none of it."""


def _loaded(tmp_path: Path, *args: str) -> set[str]:
    return set(_probe(tmp_path, *args)["modules"])


def _probe(tmp_path: Path, *args: str) -> dict[str, Any]:
    out = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *args],
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    found: dict[str, Any] = json.loads(out.read_text())
    return found


def _among(loaded: set[str], names: tuple[str, ...]) -> list[str]:
    """The names of ``names`` loaded, each a module or a package with its modules."""
    return [n for n in names if any(m == n or m.startswith(n + ".") for m in loaded)]


@pytest.mark.parametrize(
    ("args", "typer_loads"),
    [
        (["--version"], ()),
        (["--help"], ()),
        (["keys", "--help"], ("pydantic",)),  # typer's parsing of a group's options
    ],
)
def test_help_and_version_load_only_the_command_line(
    tmp_path: Path, args: list[str], typer_loads: tuple[str, ...]
) -> None:
    """Neither the settings, the store, the services nor asyncio: printing the help or
    the version costs the command line's own modules."""
    loaded = _loaded(tmp_path, *args)
    assert "typer" in loaded and "apiward.adapters.cli.keys" in loaded
    assert _among(loaded, RUNTIME + SERVER) == list(typer_loads)


@pytest.mark.parametrize(
    "args",
    [
        ["keys", "list"],
        ["keys", "list", "--json"],
        ["keys", "create", "--name", "k1", "--scope", "keys:read"],
    ],
)
def test_a_key_command_loads_the_store_and_the_key_services_only(
    cli_env: dict[str, str], tmp_path: Path, args: list[str]
) -> None:
    """The store and the key and tenancy services, built on first use; not the web
    framework, the token service and its signing keys, webhooks, mail, metrics, tracing
    or the sealing secret, which only a server or another command uses."""
    init()
    loaded = _loaded(tmp_path, *args)
    assert {"sqlalchemy", "apiward.services.keys", "apiward.services.operators"} <= loaded
    assert _among(loaded, SERVER) == []


@pytest.mark.parametrize(("args", "frozen"), [(["keys", "list"], True), (["migrate"], False)])
def test_a_command_collects_garbage_again_once_its_runtime_is_open(
    cli_env: dict[str, str], tmp_path: Path, args: list[str], frozen: bool
) -> None:
    """The collector is off while a command imports and opens its runtime, then on
    again; a command leaves what it loaded out of later collections, a server (as
    ``migrate`` starts the runtime) does not."""
    init()
    state = _probe(tmp_path, *args)
    assert state["collecting"] is True
    assert state["frozen"] > 10_000 if frozen else state["frozen"] == 0
