"""``apiward.client`` needs httpx only: none of the server's dependencies or modules."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

SERVER_ONLY = ["fastapi", "starlette", "sqlalchemy", "pydantic", "pydantic_settings", "alembic"]
SERVER_ONLY += ["aiosqlite", "asyncpg", "redis", "argon2", "jwt", "structlog", "typer", "uvicorn"]
# (``rich`` and ``click`` are left out: httpx itself imports them for its CLI when present.)


def run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("module", ["apiward.client", "apiward.client.testing"])
def test_import_loads_no_server_dependency_nor_server_module(module: str) -> None:
    """After the import, ``sys.modules`` holds no server package and no other apiward module."""
    out = run(
        f"""
        import json, sys
        import {module}
        print(json.dumps(sorted(sys.modules)))
        """
    )
    loaded = json.loads(out)
    server = [m for m in loaded if m.split(".")[0] in SERVER_ONLY]
    ours = [m for m in loaded if m.startswith("apiward.") and not m.startswith("apiward.client")]
    assert server == []
    assert ours == []


def test_the_sdk_works_when_server_dependencies_cannot_be_imported() -> None:
    """With the server's packages made unimportable, a full sign-in and call still work."""
    blocked = json.dumps(SERVER_ONLY)
    out = run(
        f"""
        import importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {blocked}:
                    raise ImportError(f"{{name}} is blocked")
                if name.startswith("apiward.") and not name.startswith("apiward.client"):
                    raise ImportError(f"{{name}} is blocked")
                return None

        sys.meta_path.insert(0, Block())
        from apiward.client import Client
        from apiward.client.testing import FakeApiward

        fake = FakeApiward()
        fake.add_user("ada@example.com", "pw")
        fake.add_collection("/v1/things", [{{"id": 1}}])
        with Client("https://x.test", username="ada@example.com", password="pw",
                    transport=fake.transport()) as client:
            print(list(client.paginate("/v1/things")))
        """
    )
    assert out.strip() == "[{'id': 1}]"
