"""The README's example is real: its code block runs and protects a route."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import bootstrap

README = Path(__file__).parent.parent / "README.md"


def test_readme_example_protects_a_route(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Executes the README's Python block and calls its route with and without a scope."""
    for name, value in {
        "APIWARD_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'r.db'}",
        "APIWARD_ARGON2_TIME_COST": "1",
        "APIWARD_ARGON2_MEMORY_KIB": "1024",
        "APIWARD_ARGON2_PARALLELISM": "1",
        "APIWARD_LOG_LEVEL": "warning",
    }.items():
        monkeypatch.setenv(name, value)
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "the README has a Python example"
    namespace: dict[str, object] = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102
    with TestClient(namespace["app"]) as client:  # type: ignore[arg-type]
        org = bootstrap(client)
        allowed = org.create_key(["customers:read"])["key"]
        ok = client.get("/v1/customers", headers=org.headers(allowed))
        assert ok.status_code == 200
        assert ok.json()["org"] == org.id
        denied = org.create_key(["keys:read"])["key"]
        r = client.get("/v1/customers", headers=org.headers(denied))
        assert r.status_code == 403
        assert r.json()["message"].endswith("customers:read")
