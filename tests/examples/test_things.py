"""The example business API works end to end with keys, tokens and scopes."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Org, bootstrap


@pytest.fixture
def things(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Org]:
    for name, value in {
        "APIWARD_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 't.db'}",
        "APIWARD_ARGON2_TIME_COST": "1",
        "APIWARD_ARGON2_MEMORY_KIB": "1024",
        "APIWARD_ARGON2_PARALLELISM": "1",
        "APIWARD_LOG_LEVEL": "warning",
    }.items():
        monkeypatch.setenv(name, value)
    module = importlib.reload(importlib.import_module("examples.things"))
    with TestClient(module.app) as client:
        yield bootstrap(client)


def test_things_listing_with_a_key_and_a_token(things: Org) -> None:
    reader = things.create_key(["things:read"])["key"]
    page = things.client.get("/v1/things?page=3", headers=things.headers(reader)).json()
    assert (page["total"], page["page"], len(page["items"])) == (45, 3, 5)
    token = things.client.post(
        "/v1/auth/token", json={"username": "owner@acme.test", "password": "correct horse battery"}
    ).json()
    r = things.client.get(
        "/v1/things", headers={"Authorization": f"Bearer {token['access_token']}"}
    )
    assert r.status_code == 200


def test_writes_need_the_write_scope(things: Org) -> None:
    reader = things.create_key(["things:read"])["key"]
    iccid = "89370100002471560001"
    denied = things.client.post(f"/v1/things/{iccid}/suspend", headers=things.headers(reader))
    assert denied.status_code == 403
    assert denied.json()["message"].endswith("things:write")
    writer = things.create_key(["things:*"])["key"]
    done = things.client.post(f"/v1/things/{iccid}/suspend", headers=things.headers(writer))
    assert done.json()["status"] == "suspended"
