"""The README's example is real: its code block runs and protects routes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from apiward.adapters.runtime import Runtime

README = Path(__file__).parent.parent / "README.md"
PASSWORD = "correct horse battery"


def test_readme_example_protects_routes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Executes the README's Python block, then calls its routes as a real user would."""
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
        runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]

        async def keys() -> tuple[str, str]:
            boot = await runtime.tenancy.bootstrap("Acme", "owner@acme.test", PASSWORD)
            owner = await runtime.operators.principal(boot.org.id)
            reader = await runtime.keys.create(owner, name="r", scopes=["customers:read"])
            other = await runtime.keys.create(owner, name="o", scopes=["invoices:read"])
            return reader.plaintext, other.plaintext

        reader, other = client.portal.call(keys)  # type: ignore[union-attr]
        ok = client.get("/v1/customers", headers={"Authorization": f"Bearer {reader}"})
        assert ok.status_code == 200
        assert ok.json()["items"] == []
        denied = client.get("/v1/customers", headers={"Authorization": f"Bearer {other}"})
        assert denied.status_code == 403
        assert denied.json()["message"].endswith("customers:read")
        assert client.get("/v1/invoices").status_code == 401
        assert client.get("/v1/invoices", headers={"Authorization": f"Bearer {other}"}).json() == []
        assert (
            client.get("/v1/invoices", headers={"Authorization": f"Bearer {reader}"}).status_code
            == 403
        )
        assert client.get("/v1/invoices/health").json() == "ok"
        token = client.post(
            "/v1/auth/token", json={"username": "owner@acme.test", "password": PASSWORD}
        )
        bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
        assert client.get("/v1/customers", headers=bearer).status_code == 200


def test_readme_rate_limit_configuration_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's TOML example is a valid configuration meaning what the text says."""
    from apiward.adapters.settings import Settings

    block = re.findall(r"```toml\n(.*?)```", README.read_text(), re.S)[0]
    (tmp_path / "apiward.toml").write_text(block)
    monkeypatch.setenv("APIWARD_CONFIG_FILE", str(tmp_path / "apiward.toml"))
    plans = Settings().rate_plans()
    default = {p.name: (p.limit, p.period, p.key) for p in plans[None].policies}
    assert default == {"org-hourly": (1000, 3600.0, "org"), "per-ip": (100, 60.0, "ip")}
    assert plans[None].applicable("/v1/events").policies == ()
    pro = {p.name: p.limit for p in plans["pro"].policies}
    assert pro == {"org-hourly": 100000, "per-ip": 100}
