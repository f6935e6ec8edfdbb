"""Tenant isolation: a credential of one org never reads or changes another's data."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Org

# Every management route, with the body it needs. The test below fails when a route
# is added without being listed here.
ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/v1/keys/{key_id}", None),
    ("PATCH", "/v1/keys/{key_id}", {"name": "stolen", "external_id": "x", "meta": {"a": 1}}),
    ("POST", "/v1/keys/{key_id}/disable", None),
    ("POST", "/v1/keys/{key_id}/enable", None),
    ("POST", "/v1/keys/{key_id}/revoke", None),
    ("POST", "/v1/keys/{key_id}/roll", {"grace_seconds": 0}),
    ("GET", "/v1/keys/{key_id}/scope-usage", None),
    ("GET", "/v1/keys/{key_id}/addresses", None),
    ("GET", "/v1/keys/{key_id}/impact", None),
    ("GET", "/v1/clients/{client_id}", None),
    ("PATCH", "/v1/clients/{client_id}", {"name": "stolen", "external_id": "x", "meta": {}}),
    ("POST", "/v1/clients/{client_id}/revoke", None),
    ("GET", "/v1/clients/{client_id}/scope-usage", None),
    ("GET", "/v1/clients/{client_id}/addresses", None),
    ("GET", "/v1/clients/{client_id}/impact", None),
    ("GET", "/v1/spaces/{space_id}", None),
    ("PATCH", "/v1/spaces/{space_id}", {"name": "stolen"}),
    ("GET", "/v1/users/{user_id}", None),
    ("PATCH", "/v1/users/{user_id}", {"disabled": True}),
    ("GET", "/v1/users/{user_id}/memberships", None),
    ("PUT", "/v1/users/{user_id}/memberships", {"role": "viewer"}),
    ("DELETE", "/v1/users/{user_id}/memberships", None),
    ("GET", "/v1/roles/{name}", None),
    ("PATCH", "/v1/roles/{name}", {"scopes": ["*"]}),
    ("DELETE", "/v1/roles/{name}", None),
    ("GET", "/v1/webhooks/{webhook_id}", None),
    ("PATCH", "/v1/webhooks/{webhook_id}", {"url": "https://evil.example/steal"}),
    ("DELETE", "/v1/webhooks/{webhook_id}", None),
    ("POST", "/v1/webhooks/{webhook_id}/roll-secret", None),
    ("POST", "/v1/webhooks/{webhook_id}/test", None),
    ("GET", "/v1/webhooks/{webhook_id}/deliveries", None),
    ("POST", "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver", None),
    ("DELETE", "/v1/invitations/{invitation_id}", None),
]
LISTS = [
    "/v1/keys",
    "/v1/clients",
    "/v1/spaces",
    "/v1/users",
    "/v1/roles",
    "/v1/audit-events",
    "/v1/webhooks",
    "/v1/invitations",
]
CREATES = ["/v1/keys", "/v1/clients", "/v1/spaces", "/v1/users", "/v1/roles"]


def _victim_ids(org: Org) -> dict[str, str]:
    key = org.create_key(["keys:read"])
    user = org.create_user("victim@acme.test", role="viewer")
    space = org.client.post("/v1/spaces", headers=org.headers(), json={"name": "Secret"}).json()
    org.client.post("/v1/roles", headers=org.headers(), json={"name": "secret", "scopes": ["a:b"]})
    client = org.client.post(
        "/v1/clients", headers=org.headers(), json={"name": "secret", "scopes": ["keys:read"]}
    ).json()
    webhook = org.client.post(
        "/v1/webhooks",
        headers=org.headers(),
        json={"url": "https://hooks.acme.test/in", "events": ["key.revoked"]},
    ).json()
    delivery = org.client.post(f"/v1/webhooks/{webhook['id']}/test", headers=org.headers())
    invitation = org.client.post(
        "/v1/invitations", headers=org.headers(), json={"email": "new@acme.test", "role": "viewer"}
    ).json()
    return {
        "delivery_id": delivery.json()["id"],
        "invitation_id": invitation["id"],
        "webhook_id": webhook["id"],
        "key_id": key["id"],
        "user_id": user["id"],
        "space_id": space["id"],
        "name": "secret",
        "client_id": client["client_id"],
    }


def test_every_management_route_is_covered(org: Org) -> None:
    paths = org.client.get("/openapi.json").json()["paths"]
    app_routes = {
        (method.upper(), path) for path, ops in paths.items() if "{" in path for method in ops
    }
    assert app_routes == {(m, p) for m, p, _ in ROUTES}


def test_other_orgs_resources_are_not_found_on_every_route(org: Org, other_org: Org) -> None:
    ids = _victim_ids(org)
    before = org.client.get("/v1/audit-events", headers=org.headers()).json()["total"]
    for method, template, body in ROUTES:
        path = template.format(**ids)
        r = other_org.client.request(method, path, headers=other_org.headers(), json=body)
        assert r.status_code == 404, (method, path, r.status_code, r.text)
    # Nothing of the victim changed.
    after = org.client.get("/v1/audit-events", headers=org.headers()).json()["total"]
    assert after == before
    key = org.client.get(f"/v1/keys/{ids['key_id']}", headers=org.headers()).json()
    assert key["state"] == "active" and key["name"] == "k"


@pytest.mark.parametrize("path", LISTS)
def test_lists_show_only_own_org(org: Org, other_org: Org, path: str) -> None:
    ids = _victim_ids(org)
    listed = other_org.client.get(path, headers=other_org.headers(), params={"page_size": 100})
    assert listed.status_code == 200
    text = listed.text
    own = (
        ids["key_id"],
        ids["user_id"],
        ids["space_id"],
        ids["client_id"],
        ids["webhook_id"],
        ids["invitation_id"],
    )
    for value in (*own, org.id):
        assert value not in text


def test_creating_with_another_orgs_references_is_refused(org: Org, other_org: Org) -> None:
    ids = _victim_ids(org)
    c, h = other_org.client, other_org.headers()
    r = c.post(
        "/v1/keys",
        headers=h,
        json={"name": "x", "scopes": ["keys:read"], "user_id": ids["user_id"]},
    )
    assert r.status_code == 400
    r = c.post(
        "/v1/keys",
        headers=h,
        json={"name": "x", "scopes": ["keys:read"], "space_allow": [ids["space_id"]]},
    )
    assert r.status_code == 400
    r = c.post(
        "/v1/users",
        headers=h,
        json={"email": "n@globex.test", "role": "viewer", "space_id": ids["space_id"]},
    )
    assert r.status_code == 404
    r = c.get("/v1/keys", headers=other_org.headers(**{"Apiward-Space-Id": ids["space_id"]}))
    assert (r.status_code, r.json()["reason"]) == (403, "UNKNOWN_SPACE")


def test_test_credentials_never_see_live_keys(org: Org) -> None:
    live = org.create_key(["keys:read"])
    test_key = org.owner_test_key
    for method, template, body in ROUTES[:6]:
        r = org.client.request(
            method, template.format(key_id=live["id"]), headers=org.headers(test_key), json=body
        )
        assert r.status_code == 404, (method, template)
    listed = org.client.get("/v1/keys", headers=org.headers(test_key)).text
    assert live["id"] not in listed
    audit = org.client.get("/v1/audit-events", headers=org.headers(test_key)).text
    assert live["id"] not in audit
    assert (
        org.client.get("/v1/keys?environment=live", headers=org.headers(test_key)).status_code
        == 403
    )


@pytest.mark.parametrize("path", CREATES)
def test_creations_land_in_the_callers_org(org: Org, other_org: Org, path: str) -> None:
    bodies: dict[str, dict[str, Any]] = {
        "/v1/keys": {"name": "mine", "scopes": ["keys:read"]},
        "/v1/clients": {"name": "mine", "scopes": ["keys:read"]},
        "/v1/spaces": {"name": "mine"},
        "/v1/users": {"email": "mine@globex.test"},
        "/v1/roles": {"name": "mine", "scopes": ["a:b"]},
    }
    r = other_org.client.post(path, headers=other_org.headers(), json=bodies[path])
    assert r.status_code == 201
    assert "mine" not in org.client.get(path, headers=org.headers()).text
