"""What the CLI sets on a key is the operator's: the tenant may only tighten it, and the
CLI may loosen it again (docs/authority.md)."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from apiward.adapters.http.app import create_app
from tests.adapters.cli.conftest import init, run
from tests.conftest import fast_settings


def test_a_tenant_cannot_loosen_what_the_cli_set(cli_env: dict[str, str]) -> None:
    boot = init()
    owner = {"Authorization": f"Bearer {boot['key']['secret']}"}
    created = json.loads(
        run(
            "keys",
            "create",
            "--name",
            "metered",
            "--scope",
            "keys:read",
            "--credits",
            "5",
            "--expires-in",
            "30d",
            "--allow-ip",
            "10.0.0.0/8",
            "--json",
        )
    )
    assert created["operator_bounds"]["ip_allow"] == ["10.0.0.0/8"]
    assert created["operator_bounds"]["expires_at"] == created["expires_at"]
    path = f"/v1/keys/{created['id']}"
    settings = fast_settings(database_url=cli_env["APIWARD_DATABASE_URL"])
    with TestClient(create_app(settings)) as client:
        loosening: list[dict[str, object]] = [
            {"expires_at": None},
            {"expires_at": "2999-01-01T00:00:00Z"},
            {"ip_allow": []},
        ]
        for loosen in loosening:
            r = client.patch(path, headers=owner, json=loosen)
            assert r.status_code == 403 and r.json()["reason"] == "OPERATOR_ONLY", r.text
        assert client.get(path, headers=owner).json()["expires_at"] == created["expires_at"]

    loosened = json.loads(
        run("keys", "update", created["id"], "--no-expiry", "--clear-allow-ip", "--json")
    )
    assert loosened["expires_at"] is None and loosened["ip_allow"] == []
    assert loosened["operator_bounds"] == {
        "expires_at": None,
        "ip_allow": None,
        "space_allow": None,
    }
    again = json.loads(run("keys", "update", created["id"], "--expires-in", "7d", "--json"))
    assert again["operator_bounds"]["expires_at"] == again["expires_at"] is not None
    with TestClient(create_app(settings)) as client:
        assert client.patch(path, headers=owner, json={"ip_allow": []}).status_code == 200
        r = client.patch(path, headers=owner, json={"expires_at": None})
        assert r.status_code == 403 and "expires_at" in r.json()["message"]
