"""The SDK against the real apiward app, in-process, with API keys, in every error style.

The SDK client is given the Starlette ``TestClient``'s own transport: it runs the app
in the test client's event-loop portal, where the lifespan (database, caches) was
started, so both clients talk to the same running app without a socket.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from apiward.adapters.settings import Settings
from apiward.client import (
    AsyncClient,
    AuthenticationError,
    Client,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from tests.conftest import Org, fast_settings

STYLES = ["default", "nested", "detail", "problem"]


@pytest.fixture(params=STYLES)
def settings(request: pytest.FixtureRequest, sqlite_url: str) -> Settings:
    """Every test here runs once per ``APIWARD_ERROR_STYLE``."""
    return fast_settings(database_url=sqlite_url, error_style=request.param)


@pytest.fixture
def sdk(org: Org) -> Iterator[Client]:
    """An SDK client of the running app, as the org's owner (``keys:*``, ``users:*``...)."""
    with client_for(org, org.owner_key) as client:
        yield client


def client_for(org: Org, key: str, **kwargs: Any) -> Client:
    return Client(str(org.client.base_url), api_key=key, transport=org.client._transport, **kwargs)


def test_paginate_lists_keys_across_several_pages(org: Org, sdk: Client) -> None:
    """Seven live keys, two per page: four requests, every key once, in the server's order."""
    created = [org.create_key(["keys:read"])["id"] for _ in range(6)]
    asked: list[httpx.Request] = []
    sdk.event_hooks["request"].append(asked.append)
    keys = list(sdk.paginate("/v1/keys", page_size=2))
    ids = [key["id"] for key in keys]
    assert len(ids) == len(set(ids)) == 7
    assert set(created) < set(ids)
    assert [r.url.params["page"] for r in asked] == ["1", "2", "3", "4"]
    everything = sdk.get("/v1/keys", params={"page_size": 100}).json()["items"]
    assert ids == [key["id"] for key in everything]


def test_paginate_keeps_filters(org: Org, sdk: Client) -> None:
    """Query filters of the list route are sent with every page."""
    for _ in range(3):
        org.create_key(["keys:read"])
    revoked = org.create_key(["keys:read"])["id"]
    sdk.post(f"/v1/keys/{revoked}/revoke")
    live = [
        k["id"] for k in sdk.paginate("/v1/keys", params={"include_revoked": "false"}, page_size=1)
    ]
    assert revoked not in live
    assert len(live) == 4


def test_missing_scope_is_permission_denied_naming_the_scope(org: Org) -> None:
    """A key without ``users:read`` gets a ``PermissionDeniedError`` saying so."""
    key = org.create_key(["keys:read"])["key"]
    with client_for(org, key) as client, pytest.raises(PermissionDeniedError) as caught:
        client.get("/v1/users")
    error = caught.value
    assert error.status_code == 403
    assert error.code == "FORBIDDEN"
    assert error.reason == "INSUFFICIENT_SCOPE"
    assert error.required_scope == "users:read"
    assert error.message == "API key does not have the required permission: users:read"
    assert error.response is not None
    assert error.request_id == error.response.headers["x-request-id"]


def test_revoked_key_is_an_authentication_error_key_revoked(org: Org, sdk: Client) -> None:
    """After revocation the key's next call raises ``AuthenticationError`` ``KEY_REVOKED``."""
    created = org.create_key(["keys:read"])
    with client_for(org, created["key"]) as client:
        assert client.get("/v1/keys").status_code == 200
        sdk.post(f"/v1/keys/{created['id']}/revoke")
        with pytest.raises(AuthenticationError) as caught:
            client.get("/v1/keys")
    error = caught.value
    assert (error.status_code, error.code, error.reason) == (401, "UNAUTHORIZED", "KEY_REVOKED")
    assert error.message == "API key has been revoked"
    assert error.request_id is not None


def test_not_found_and_invalid_input_are_typed(sdk: Client) -> None:
    """404 and 400 from the real routes become ``NotFoundError`` and ``ValidationError``."""
    with pytest.raises(NotFoundError) as missing:
        sdk.get("/v1/keys/key_does_not_exist")
    assert missing.value.request_id is not None
    with pytest.raises(ValidationError) as invalid:
        sdk.post("/v1/keys", json={"name": "k", "scopes": "not a list"})
    assert invalid.value.status_code == 400
    assert "scopes" in invalid.value.message


def test_async_client_paginates_the_real_app(org: Org) -> None:
    """``AsyncClient`` over ``httpx.ASGITransport``, run in the app's own event loop."""
    for _ in range(4):
        org.create_key(["keys:read"])

    async def walk() -> list[str]:
        transport = httpx.ASGITransport(app=org.client.app)
        async with AsyncClient(
            "http://testserver", api_key=org.owner_key, transport=transport
        ) as client:
            return [key["id"] async for key in client.paginate("/v1/keys", page_size=2)]

    assert org.client.portal is not None
    ids = org.client.portal.call(walk)
    assert len(set(ids)) == 5
