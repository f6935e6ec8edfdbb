"""Settings > OAuth clients: the secret shown once, tokens, revocation."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx

from tests.adapters.dashboard.conftest import Browser, secret_of
from tests.conftest import Org


def token(org: Org, client_id: str, secret: str) -> httpx.Response:
    r: httpx.Response = org.client.post(
        "/v1/auth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
    )
    return r


def create_client(owner: Browser, env: str = "live") -> tuple[str, str, str]:
    """(page, client id, secret) of a new client."""
    r = owner.post(
        "/dashboard/clients",
        {"name": "Partner", "env": env, "scope": ["keys:read"], "expires": "90"},
    )
    assert r.status_code == 201, r.text
    match = re.search(r'id="client-id"[^>]*value="([^"]+)"', r.text)
    assert match
    return r.text, match.group(1), secret_of(r.text)


def test_create_shows_the_secret_once_and_it_gets_tokens(org: Org, owner: Browser) -> None:
    page, client_id, secret = create_client(owner)
    assert "Copy the client secret now. You won't see it again." in page
    assert secret.startswith("awcs_live_")
    answer = token(org, client_id, secret)
    assert answer.status_code == 200, answer.text
    access = answer.json()["access_token"]
    assert org.client.get("/v1/keys", headers=org.headers(access)).status_code == 200
    table = owner.get("/dashboard/clients").text
    assert client_id in table and "Partner" in table
    assert secret not in table and f"…{secret[-4:]}" in table


def test_clients_are_listed_per_environment(org: Org, owner: Browser) -> None:
    _, client_id, _ = create_client(owner, "test")
    assert client_id in owner.get("/dashboard/clients?env=test").text
    assert client_id not in owner.get("/dashboard/clients?env=live").text


def test_the_new_client_form(owner: Browser) -> None:
    page = owner.get("/dashboard/clients/new")
    assert page.status_code == 200
    assert "Create an OAuth client" in page.text
    bad = owner.post("/dashboard/clients", {"name": "No scopes", "env": "live"})
    assert bad.status_code == 400
    assert "An OAuth client needs at least one scope" in bad.text


def test_revoke_asks_first_then_refuses_the_secret_and_its_tokens(org: Org, owner: Browser) -> None:
    _, client_id, secret = create_client(owner)
    access = token(org, client_id, secret).json()["access_token"]
    confirm = owner.get(f"/dashboard/clients/{client_id}/revoke")
    assert "Revocation is permanent." in confirm.text
    assert token(org, client_id, secret).status_code == 200
    r = owner.post(f"/dashboard/clients/{client_id}/revoke", {"env": "live"})
    assert r.status_code == 303
    assert "The OAuth client is revoked" in owner.get(r.headers["location"]).text
    assert token(org, client_id, secret).status_code == 401
    assert org.client.get("/v1/keys", headers=org.headers(access)).status_code == 401
    again = owner.post(f"/dashboard/clients/{client_id}/revoke", {"env": "live"})
    assert again.status_code == 303  # revoking twice is harmless


def test_a_viewer_cannot_create_or_revoke_clients(
    org: Org, owner: Browser, signed_in: Callable[..., Browser]
) -> None:
    _, client_id, _ = create_client(owner)
    viewer = signed_in("viewer")
    page = viewer.get("/dashboard/clients").text
    assert client_id in page
    assert "Create live client" not in page and "/revoke" not in page
    assert viewer.get("/dashboard/clients/new").status_code == 403
    token_ = viewer.csrf()
    assert (
        viewer.post(
            "/dashboard/clients", {"name": "x", "scope": ["keys:read"]}, csrf=token_
        ).status_code
        == 403
    )
    r = viewer.post(f"/dashboard/clients/{client_id}/revoke", {}, csrf=token_)
    assert r.status_code == 403


def test_another_org_cannot_revoke_a_client_by_id(
    org: Org, other_org: Org, owner: Browser, browser: Callable[[], Browser]
) -> None:
    _, client_id, secret = create_client(owner)
    intruder = browser()
    intruder.sign_in("owner@globex.test")
    assert client_id not in intruder.get("/dashboard/clients").text
    assert intruder.get(f"/dashboard/clients/{client_id}/revoke").status_code == 404
    assert intruder.post(f"/dashboard/clients/{client_id}/revoke", {}).status_code == 404
    assert token(org, client_id, secret).status_code == 200
