"""The protected API's scope catalogue (``APIWARD_API_SCOPES``) in the services: declared,
a key, a client or a role holds only its scopes, patterns over them, and apiward's own;
not declared, any valid scope goes. Refusals name the nearest declared scope."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from apiward.adapters.http.app import create_app
from apiward.adapters.settings import Settings
from tests.conftest import Org, bootstrap, fast_settings

CATALOGUE = {"invoices:read": "Read invoices", "invoices:write": "Change invoices"}


@pytest.fixture
def org(migrated_sqlite_url: str) -> Iterator[Org]:
    settings: Settings = fast_settings(database_url=migrated_sqlite_url, api_scopes=CATALOGUE)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield bootstrap(client)


def post(org: Org, path: str, body: dict[str, Any]) -> Any:
    return org.client.post(path, headers=org.headers(), json=body)


@pytest.mark.parametrize(
    "scopes",
    [
        ["invoices:read"],
        ["invoices:*"],
        ["*:read"],
        ["*"],
        ["keys:read", "invoices:write"],
        ["owner:manage"],
    ],
)
def test_declared_scopes_patterns_over_them_and_apiwards_own_are_taken(
    org: Org, scopes: list[str]
) -> None:
    assert post(org, "/v1/keys", {"name": "k", "scopes": scopes}).status_code == 201
    assert post(org, "/v1/clients", {"name": "c", "scopes": scopes}).status_code == 201


def test_an_undeclared_scope_is_refused_with_the_nearest_declared_one(org: Org) -> None:
    for path, body in (
        ("/v1/keys", {"name": "k", "scopes": ["invoice:read"]}),
        ("/v1/clients", {"name": "c", "scopes": ["invoice:read"]}),
        ("/v1/roles", {"name": "billing", "scopes": ["invoice:read"]}),
    ):
        r = post(org, path, body)
        assert r.status_code == 400, (path, r.text)
        assert r.json()["message"] == (
            "Unknown scope 'invoice:read': this API has no such scope. "
            "Did you mean 'invoices:read'?"
        )
    key = post(org, "/v1/keys", {"name": "k", "scopes": ["invoices:read"]}).json()
    r = org.client.patch(
        f"/v1/keys/{key['id']}", headers=org.headers(), json={"scopes": ["customers:read"]}
    )
    assert r.status_code == 400
    assert (
        org.client.patch(
            f"/v1/keys/{key['id']}", headers=org.headers(), json={"name": "renamed"}
        ).status_code
        == 200
    )  # a change that names no scope is not checked


def test_the_openapi_document_lists_the_catalogue(org: Org) -> None:
    listed = org.client.get("/openapi.json").json()["x-apiward-api-scopes"]
    assert listed == [
        {"scope": "invoices:read", "description": "Read invoices"},
        {"scope": "invoices:write", "description": "Change invoices"},
    ]


def test_without_a_catalogue_any_valid_scope_goes(client: TestClient) -> None:
    plain = bootstrap(client)
    r = plain.client.post(
        "/v1/keys", headers=plain.headers(), json={"name": "k", "scopes": ["anything:at-all"]}
    )
    assert r.status_code == 201
    assert "x-apiward-api-scopes" not in plain.client.get("/openapi.json").json()
