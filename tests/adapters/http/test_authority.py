"""Delegation never amplifies, and tenants never set their own plan.

One test per way around the rule found by an attacker's review; each sends the same
plain HTTP requests and expects a clear refusal that changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from apiward.adapters.http.app import create_app
from apiward.core.errors import ExceedsAuthority
from apiward.core.models import Account, RequestContext
from tests.conftest import Org, bootstrap, fast_settings

PASSWORD = "correct horse battery"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
USER_ID_TYPE = "urn:apiward:params:oauth:token-type:user-id"


def refused(r: Any, reason: str = "EXCEEDS_AUTHORITY") -> str:
    assert r.status_code == 403, r.text
    body: dict[str, Any] = r.json()
    assert body["reason"] == reason, body
    message: str = body["message"]
    return message


def memberships(org: Org, user_id: str) -> list[dict[str, Any]]:
    r = org.client.get(f"/v1/users/{user_id}/memberships", headers=org.headers())
    items: list[dict[str, Any]] = r.json()
    return sorted(items, key=lambda m: m["space_id"] or "")


def user_with_key(
    org: Org, email: str, role: str, space_id: str | None = None, scopes: list[str] | None = None
) -> tuple[str, str]:
    user = org.create_user(email, role=role, space_id=space_id, password=PASSWORD)
    key = org.create_key(scopes or ["*"], user_id=user["id"])["key"]
    return user["id"], key


def new_space(org: Org, name: str) -> str:
    r = org.client.post("/v1/spaces", headers=org.headers(), json={"name": name})
    space_id: str = r.json()["id"]
    return space_id


def exchange(org: Org, client: dict[str, Any], user_id: str, **extra: str) -> Any:
    return org.client.post(
        "/v1/auth/token",
        json={
            "grant_type": EXCHANGE,
            "client_id": client["client_id"],
            "client_secret": client["client_secret"],
            "subject_token": user_id,
            "subject_token_type": USER_ID_TYPE,
            **extra,
        },
    )


# 1. Acting as someone else --------------------------------------------------------------


def test_an_admin_cannot_make_a_key_or_client_acting_as_the_owner(org: Org) -> None:
    _, admin_key = user_with_key(org, "admin@acme.test", "admin")
    for path in ("/v1/keys", "/v1/clients"):
        r = org.client.post(
            path,
            headers=org.headers(admin_key),
            json={"name": "takeover", "scopes": ["*"], "user_id": org.owner_id},
        )
        message = refused(r)
        assert f"acting as user {org.owner_id}" in message and "owner:" in message
    listed = org.client.get("/v1/keys", headers=org.headers()).json()["items"]
    assert all(k["name"] != "takeover" for k in listed)
    assert memberships(org, org.owner_id)[0]["role"] == "owner"


def test_a_space_developer_cannot_act_as_an_org_wide_user(org: Org) -> None:
    space = new_space(org, "Team")
    _, dev_key = user_with_key(org, "dev@acme.test", "developer", space)
    viewer = org.create_user("viewer@acme.test", role="viewer")
    r = org.client.post(
        "/v1/keys",
        headers=org.headers(dev_key, **{"Apiward-Space-Id": space}),
        json={"name": "x", "scopes": ["*:read"], "user_id": viewer["id"]},
    )
    assert "in every space" in refused(r)


def test_acting_for_a_user_who_holds_less_is_allowed(org: Org) -> None:
    _, admin_key = user_with_key(org, "admin@acme.test", "admin")
    viewer = org.create_user("viewer@acme.test", role="viewer")
    r = org.client.post(
        "/v1/keys",
        headers=org.headers(admin_key),
        json={"name": "for the viewer", "scopes": ["*"], "user_id": viewer["id"]},
    )
    assert r.status_code == 201, r.text
    key = r.json()["key"]
    assert org.client.get("/v1/keys", headers=org.headers(key)).status_code == 200
    write = org.client.post("/v1/spaces", headers=org.headers(key), json={"name": "no"})
    assert write.status_code == 403


def test_rolling_the_owners_key_needs_the_owners_authority(org: Org) -> None:
    _, admin_key = user_with_key(org, "admin@acme.test", "admin")
    listed = org.client.get("/v1/keys", headers=org.headers()).json()["items"]
    [owners] = [k for k in listed if k["name"] == "owner"]
    r = org.client.post(f"/v1/keys/{owners['id']}/roll", headers=org.headers(admin_key), json={})
    refused(r)
    r = org.client.patch(
        f"/v1/keys/{owners['id']}", headers=org.headers(admin_key), json={"name": "mine now"}
    )
    refused(r)
    # Restricting is open to anyone who may write keys: an admin may disable it.
    r = org.client.post(f"/v1/keys/{owners['id']}/disable", headers=org.headers(admin_key))
    assert r.status_code == 200
    enable = org.client.post(f"/v1/keys/{owners['id']}/enable", headers=org.headers(admin_key))
    refused(enable)


# 2. Token exchange ------------------------------------------------------------------------


def test_exchange_confers_no_more_than_the_client_holds(org: Org) -> None:
    key = org.create_key(["clients:write", "tokens:exchange"])["key"]
    r = org.client.post(
        "/v1/clients",
        headers=org.headers(key),
        json={"name": "exchanger", "scopes": ["tokens:exchange"]},
    )
    assert r.status_code == 201, r.text
    exchanger = r.json()
    # It acts for the owner who made it, with no more than its own scopes.
    r = exchange(org, exchanger, org.owner_id)
    assert r.status_code == 200 and r.json()["scope"] == "tokens:exchange", r.text
    token = r.json()["access_token"]
    r = org.client.post("/v1/keys", headers=org.headers(token), json={"name": "x", "scopes": ["*"]})
    assert r.status_code == 403
    # A client of an admin may not act for the owner at all.
    admin, admin_key = user_with_key(org, "admin@acme.test", "admin")
    r = org.client.post(
        "/v1/clients",
        headers=org.headers(admin_key),
        json={"name": "admin's", "scopes": ["*", "tokens:exchange"]},
    )
    r = exchange(org, r.json(), org.owner_id)
    assert r.json()["error"] == "unauthorized_client", r.text
    assert "may not act for user" in r.json()["error_description"]
    assert admin


def test_exchange_acts_only_for_users_the_client_covers(org: Org) -> None:
    developer = org.create_user("dev@acme.test", role="developer")
    viewer = org.create_user("viewer@acme.test", role="viewer")
    r = org.client.post(
        "/v1/clients",
        headers=org.headers(),
        json={"name": "reader", "scopes": ["tokens:exchange", "*:read"]},
    )
    reader = r.json()
    r = exchange(org, reader, developer["id"])
    assert r.json()["error"] == "unauthorized_client", r.text
    assert "'*:write'" in r.json()["error_description"]
    r = exchange(org, reader, viewer["id"])
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "*:read"


# 3. A space role becoming an org-wide one -------------------------------------------------


def test_a_space_admin_cannot_make_itself_or_an_invitee_an_org_wide_admin(org: Org) -> None:
    space = new_space(org, "Team")
    me, key = user_with_key(org, "space-admin@acme.test", "admin", space)
    headers = org.headers(key, **{"Apiward-Space-Id": space})
    r = org.client.put(f"/v1/users/{me}/memberships", headers=headers, json={"role": "admin"})
    assert "in every space" in refused(r)
    assert [m["space_id"] for m in memberships(org, me)] == [space]
    r = org.client.post(
        "/v1/invitations", headers=headers, json={"email": "new@acme.test", "role": "admin"}
    )
    refused(r)
    # Within its own space it may still give roles.
    other = org.create_user("other@acme.test")
    r = org.client.put(
        f"/v1/users/{other['id']}/memberships",
        headers=headers,
        json={"role": "developer", "space_id": space},
    )
    assert r.status_code == 200, r.text


# 4. Demoting an owner ---------------------------------------------------------------------


def test_an_admin_cannot_demote_remove_or_disable_an_owner_in_any_space(org: Org) -> None:
    _, admin_key = user_with_key(org, "admin@acme.test", "admin")
    headers = org.headers(admin_key)
    path = f"/v1/users/{org.owner_id}/memberships"
    refused(
        org.client.put(path, headers=headers, json={"role": "viewer", "space_id": org.space_id})
    )
    refused(org.client.request("DELETE", path, headers=headers))
    r = org.client.patch(f"/v1/users/{org.owner_id}", headers=headers, json={"disabled": True})
    refused(r)
    assert [(m["space_id"], m["role"]) for m in memberships(org, org.owner_id)] == [(None, "owner")]
    assert org.client.get("/v1/keys", headers=org.headers()).status_code == 200


def test_removing_a_restricting_space_role_needs_the_org_wide_authority(org: Org) -> None:
    space = new_space(org, "Team")
    space_admin, key = user_with_key(org, "sa@acme.test", "admin", space)
    target = org.create_user("t@acme.test", role="admin")
    # The owner narrows the target to a viewer in the team space.
    org.client.put(
        f"/v1/users/{target['id']}/memberships",
        headers=org.headers(),
        json={"role": "viewer", "space_id": space},
    )
    # A space admin cannot touch someone who is an admin everywhere else.
    r = org.client.request(
        "DELETE",
        f"/v1/users/{target['id']}/memberships",
        headers=org.headers(key, **{"Apiward-Space-Id": space}),
        params={"space_id": space},
    )
    refused(r)
    assert space_admin


# 5. A disabled account stops everything acting for it -------------------------------------


def test_a_disabled_portal_account_stops_its_keys_clients_and_exchange(
    client: TestClient, org: Org
) -> None:
    runtime, portal = org.runtime, client.portal
    assert portal is not None
    context = RequestContext()
    now = datetime.now(UTC)
    account = Account("acc_ada", "ada@example.test", "Ada", "x", now, confirmed_at=now)

    async def open_account() -> None:
        async with runtime.store.begin() as tx:
            await tx.insert_account(account)

    portal.call(open_account)
    project = portal.call(runtime.portal.create_project, account, "Ada's", context)
    operator = portal.call(runtime.operators.principal, project.org.id)

    async def credentials() -> tuple[str, str, str, str]:
        key = await runtime.keys.create(operator, name="k", scopes=["*"])
        made = await runtime.clients.create(operator, name="c", scopes=["*", "tokens:exchange"])
        return key.plaintext, made.client.id, made.secret, project.user.id

    key, client_id, secret, user_id = portal.call(credentials)
    grant = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    assert client.get("/v1/keys", headers=org.headers(key)).status_code == 200
    token = client.post("/v1/auth/token", json=grant)
    assert token.status_code == 200
    access = token.json()["access_token"]
    ex = {"client_id": client_id, "client_secret": secret}
    assert exchange(org, ex, user_id).status_code == 200

    portal.call(runtime.portal.set_disabled, "ada@example.test", True, context)
    runtime.cache.clear()  # the poller does this within its interval in every process

    r = client.get("/v1/keys", headers=org.headers(key))
    assert (r.status_code, r.json()["reason"]) == (401, "KEY_DISABLED")
    assert client.get("/v1/keys", headers=org.headers(access)).status_code == 401
    assert client.post("/v1/auth/token", json=grant).status_code in (400, 401)
    assert exchange(org, ex, user_id).status_code in (400, 401)


# 6. Plans, limits and credits are the operator's ------------------------------------------

PLAN = {
    "rate_limits": [{"name": "org-hourly", "rate": "1000/hour", "key": "org"}],
    "rate_limit_tiers": {
        "pro": {"limits": [{"name": "org-hourly", "rate": "100000/hour", "key": "org"}]}
    },
}


@pytest.fixture
def planned(tmp_path: Path) -> Iterator[Org]:
    settings = fast_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", **PLAN)
    with TestClient(create_app(settings)) as c:
        yield bootstrap(c)


def test_a_tenant_cannot_move_its_org_to_another_tier(planned: Org) -> None:
    r = planned.client.patch("/v1/org", headers=planned.headers(), json={"rate_tier": "pro"})
    assert "operator:tiers" in refused(r, "OPERATOR_ONLY")
    assert planned.client.get("/v1/org", headers=planned.headers()).json()["rate_tier"] is None
    op = planned.headers(planned.operator_key())
    assert planned.client.patch("/v1/org", headers=op, json={"rate_tier": "pro"}).status_code == 200


def test_a_tenants_own_limit_only_restricts(planned: Org) -> None:
    loose = planned.create_key(
        ["keys:read"], rate_limits=[{"name": "org-hourly", "rate": "1000000/second", "key": "org"}]
    )
    r = planned.client.get("/v1/keys", headers=planned.headers(loose["key"]))
    assert r.headers["x-ratelimit-limit"] == "1000"
    strict = planned.create_key(
        ["keys:read"], rate_limits=[{"name": "org-hourly", "rate": "3/hour", "key": "org"}]
    )
    r = planned.client.get("/v1/keys", headers=planned.headers(strict["key"]))
    assert r.headers["x-ratelimit-limit"] == "3"


def test_a_tenant_cannot_give_raise_or_remove_credits(planned: Org) -> None:
    r = planned.client.post(
        "/v1/keys",
        headers=planned.headers(),
        json={"name": "rich", "scopes": ["keys:read"], "credits": {"remaining": 10**9}},
    )
    refused(r, "OPERATOR_ONLY")
    metered = planned.create_key(
        ["keys:read", "keys:write"], by=planned.operator_key(), credits={"remaining": 10}
    )
    own = planned.headers(metered["key"])
    path = f"/v1/keys/{metered['id']}"
    refused(planned.client.patch(path, headers=own, json={"credits": None}), "OPERATOR_ONLY")
    r = planned.client.patch(path, headers=own, json={"credits": {"remaining": 500}})
    refused(r, "OPERATOR_ONLY")
    lower = planned.client.patch(
        path, headers=planned.headers(), json={"credits": {"remaining": 5}}
    )
    assert lower.status_code == 200 and lower.json()["credits"]["remaining"] == 5


def test_a_key_cannot_lift_its_own_expiry(planned: Org) -> None:
    soon = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    later = (datetime.now(UTC) + timedelta(days=300)).isoformat()
    key = planned.create_key(["keys:read", "keys:write"], expires_at=soon)
    own, path = planned.headers(key["key"]), f"/v1/keys/{key['id']}"
    assert "outlive" in refused(planned.client.patch(path, headers=own, json={"expires_at": None}))
    refused(planned.client.patch(path, headers=own, json={"expires_at": later}))
    r = planned.client.post(
        "/v1/keys", headers=own, json={"name": "forever", "scopes": ["keys:read"]}
    )
    assert "outlive" in refused(r)


# 7. Escaping one's own restrictions -------------------------------------------------------


def test_a_space_restricted_key_cannot_escape_its_allow_list(org: Org) -> None:
    a, b = new_space(org, "A"), new_space(org, "B")
    key = org.create_key(["keys:read", "keys:write"], space_allow=[a])
    own = org.headers(key["key"], **{"Apiward-Space-Id": a})
    r = org.client.post("/v1/keys", headers=own, json={"name": "x", "scopes": ["keys:read"]})
    assert "in space" in refused(r) or "every space" in refused(r)
    r = org.client.post(
        "/v1/keys", headers=own, json={"name": "x", "scopes": ["keys:read"], "space_allow": [b]}
    )
    refused(r)
    refused(org.client.patch(f"/v1/keys/{key['id']}", headers=own, json={"space_allow": []}))
    inside = org.client.post(
        "/v1/keys", headers=own, json={"name": "x", "scopes": ["keys:read"], "space_allow": [a]}
    )
    assert inside.status_code == 201, inside.text


def test_an_ip_restricted_key_cannot_escape_its_allow_list(org: Org) -> None:
    # The test client's requests come from "testclient", which no allow-list holds, so the
    # key is presented to the service as from 10.1.2.3, inside its allow-list.
    key = org.create_key(["keys:read", "keys:write"], ip_allow=["10.0.0.0/8"])
    runtime, portal = org.runtime, org.client.portal
    assert portal is not None

    async def attempt(ip_allow: list[str]) -> str:
        principal = await runtime.auth.authenticate_key(key["key"], RequestContext(ip="10.1.2.3"))
        try:
            await runtime.keys.create(principal, name="x", scopes=["keys:read"], ip_allow=ip_allow)
        except ExceedsAuthority as exc:
            return exc.message
        return "created"

    assert "IP allow-list" in portal.call(attempt, [])
    assert "IP allow-list" in portal.call(attempt, ["0.0.0.0/0"])
    assert portal.call(attempt, ["10.1.0.0/16"]) == "created"


# 8. Sign-in traces stay with the organisation they concern --------------------------------


def test_failed_sign_ins_are_not_written_to_another_orgs_log(org: Org, other_org: Org) -> None:
    victim = org.create_user("person@example.test", role="viewer", password=PASSWORD)
    other_org.create_user("person@example.test", role="viewer")
    r = org.client.post(
        "/v1/auth/token", json={"username": "person@example.test", "password": "wrong guess!"}
    )
    assert r.status_code in (400, 401)
    r = org.client.post(
        "/v1/auth/token",
        json={"username": "person@example.test", "password": "wrong guess!", "org_id": org.id},
    )
    assert r.status_code in (400, 401)
    org.client.portal.call(org.runtime.tokens.drain)  # type: ignore[union-attr]

    def failed(o: Org) -> list[dict[str, Any]]:
        r = o.client.get("/v1/audit-events", headers=o.headers(), params={"type": "login.failed"})
        items: list[dict[str, Any]] = r.json()["items"]
        return items

    assert failed(other_org) == []
    assert [e["target_id"] for e in failed(org)] == [victim["id"]]


# 9. Environments --------------------------------------------------------------------------


def test_a_test_credential_never_sees_a_live_token(org: Org) -> None:
    login = org.client.post(
        "/v1/auth/token", json={"username": "owner@acme.test", "password": PASSWORD}
    ).json()
    test_key = org.create_key(["tokens:introspect"], env="test")["key"]
    live_key = org.create_key(["tokens:introspect"])["key"]
    for token in (login["access_token"], login["refresh_token"]):
        r = org.client.post(
            "/v1/auth/introspect", headers=org.headers(test_key), data={"token": token}
        )
        assert r.json() == {"active": False}
        r = org.client.post(
            "/v1/auth/introspect", headers=org.headers(live_key), data={"token": token}
        )
        assert r.json()["active"] is True


# 10. Per-credential limits follow the subject, not the token ------------------------------


@pytest.fixture
def per_credential(tmp_path: Path) -> Iterator[Org]:
    settings = fast_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'c.db'}",
        rate_limits=[{"name": "per-credential", "rate": "3/minute", "key": "credential"}],
    )
    with TestClient(create_app(settings)) as c:
        yield bootstrap(c)


def test_a_new_token_opens_no_new_budget(per_credential: Org) -> None:
    org = per_credential
    c = org.client

    def login() -> str:
        r = c.post("/v1/auth/token", json={"username": "owner@acme.test", "password": PASSWORD})
        token: str = r.json()["access_token"]
        return token

    statuses = [c.get("/v1/spaces", headers=org.headers(login())).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]

    made = c.post(
        "/v1/clients",
        headers=org.headers(org.operator_key()),
        json={"name": "partner", "scopes": ["*", "tokens:exchange"]},
    ).json()
    viewer = org.create_user("v@acme.test", role="viewer")
    tokens = [exchange(org, made, viewer["id"]).json()["access_token"] for _ in range(5)]
    statuses = [c.get("/v1/spaces", headers=org.headers(t)).status_code for t in tokens]
    assert statuses == [200, 200, 200, 429, 429]


# Found by a second review -------------------------------------------------------------


def test_rolling_a_metered_key_moves_its_balance_rather_than_copying_it(planned: Org) -> None:
    org, c = planned, planned.client
    operator = org.headers(org.operator_key())
    metered = org.create_key(
        ["keys:read", "keys:write"], by=org.operator_key(), credits={"remaining": 10}
    )
    r = c.post(f"/v1/keys/{metered['id']}/roll", headers=operator, json={"grace_seconds": 3600})
    new = r.json()
    assert new["credits"]["remaining"] == 10
    for _ in range(3):  # the old key, in its grace period, spends the one balance
        assert c.get("/v1/keys", headers=org.headers(metered["key"])).status_code == 200
    shown = {
        k: c.get(f"/v1/keys/{k}", headers=operator).json()["credits"]["remaining"]
        for k in (metered["id"], new["id"])
    }
    assert shown == {metered["id"]: 0, new["id"]: 7}


def test_moving_the_refill_day_is_no_lowering(planned: Org) -> None:
    org = planned
    refill = {"amount": 100, "interval": "monthly", "day": 1}
    metered = org.create_key(
        ["keys:read"], by=org.operator_key(), credits={"remaining": 0, "refill": refill}
    )
    moved = {"remaining": 0, "refill": {**refill, "day": 28}}
    r = org.client.patch(
        f"/v1/keys/{metered['id']}", headers=org.headers(), json={"credits": moved}
    )
    refused(r, "OPERATOR_ONLY")


def test_a_token_of_an_expiring_client_gives_nothing_that_outlives_it(org: Org) -> None:
    soon = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    made = org.client.post(
        "/v1/clients",
        headers=org.headers(),
        json={"name": "short", "scopes": ["keys:write", "keys:read"], "expires_at": soon},
    ).json()
    token = org.client.post(
        "/v1/auth/token",
        json={
            "grant_type": "client_credentials",
            "client_id": made["client_id"],
            "client_secret": made["client_secret"],
        },
    ).json()["access_token"]
    r = org.client.post(
        "/v1/keys", headers=org.headers(token), json={"name": "forever", "scopes": ["keys:read"]}
    )
    assert "outlive" in refused(r)


def test_a_test_credential_changes_no_org_wide_people_or_roles(org: Org) -> None:
    test_owner = org.headers(org.owner_test_key)
    c = org.client
    for r in (
        c.post("/v1/users", headers=test_owner, json={"email": "x@acme.test", "role": "admin"}),
        c.post("/v1/roles", headers=test_owner, json={"name": "ops", "scopes": ["keys:read"]}),
        c.post(
            "/v1/invitations", headers=test_owner, json={"email": "y@acme.test", "role": "viewer"}
        ),
        c.put(f"/v1/users/{org.owner_id}/memberships", headers=test_owner, json={"role": "viewer"}),
    ):
        assert "every environment" in refused(r)


def test_a_test_credential_changes_no_space_the_org_or_a_users_name(org: Org) -> None:
    """Spaces, the organisation and users hold in every environment: a test key neither
    archives nor renames them (the refusal of a test key's change to people)."""
    c, test_owner = org.client, org.headers(org.owner_test_key)
    space = new_space(org, "Shared")
    user = org.create_user("named@acme.test", role="viewer")
    invitation = c.post(
        "/v1/invitations", headers=org.headers(), json={"email": "z@acme.test", "role": "viewer"}
    ).json()
    for r in (
        c.patch(f"/v1/spaces/{space}", headers=test_owner, json={"archived": True}),
        c.patch(f"/v1/spaces/{space}", headers=test_owner, json={"name": "renamed"}),
        c.post("/v1/spaces", headers=test_owner, json={"name": "From test"}),
        c.patch("/v1/org", headers=test_owner, json={"name": "Renamed"}),
        c.patch(f"/v1/users/{user['id']}", headers=test_owner, json={"name": "Renamed"}),
        c.delete(f"/v1/invitations/{invitation['id']}", headers=test_owner),
        c.post("/v1/projects", headers=test_owner, json={"name": "From test"}),
    ):
        assert "every environment" in refused(r), r.request.url
    live = org.headers()
    assert c.get(f"/v1/spaces/{space}", headers=live).json()["archived_at"] is None
    assert c.get(f"/v1/spaces/{space}", headers=live).json()["name"] == "Shared"
    assert c.get("/v1/org", headers=live).json()["name"] == "Acme"
    assert c.get(f"/v1/users/{user['id']}", headers=live).json()["name"] == "named"
    names = [s["name"] for s in c.get("/v1/spaces", headers=live).json()["items"]]
    assert "From test" not in names
    assert [i["id"] for i in c.get("/v1/invitations", headers=live).json()] == [invitation["id"]]


def test_a_refused_org_wide_change_spends_nothing(org: Org) -> None:
    """The environment refusal comes after the request was metered: what it spent is
    given back, so a test key's refused changes never use up its budget."""
    limited = org.create_key(
        ["*"], env="test", rate_limits=[{"name": "mine", "rate": "1/hour", "key": "credential"}]
    )["key"]
    for _ in range(3):
        refused(org.client.patch("/v1/org", headers=org.headers(limited), json={"name": "X"}))
    assert org.client.get("/v1/org", headers=org.headers(limited)).status_code == 200


def test_a_change_to_the_whole_org_needs_its_permission_in_every_space(org: Org) -> None:
    """A role held in one space, or a key kept to one, renames no organisation and adds
    no space to it: what those change holds in every space."""
    c, team = org.client, new_space(org, "Team")
    _, space_admin = user_with_key(org, "sa@acme.test", "admin", team)
    kept = org.create_key(["*"], space_allow=[team])["key"]
    for key in (space_admin, kept):
        h = org.headers(key, **{"Apiward-Space-Id": team})
        r = c.patch("/v1/org", headers=h, json={"name": "Mine"})
        assert "every space" in refused(r) and r.json()["required_scope"] == "org:manage"
        assert "every space" in refused(c.post("/v1/spaces", headers=h, json={"name": "Mine"}))
    assert c.get("/v1/org", headers=org.headers()).json()["name"] == "Acme"
    names = [s["name"] for s in c.get("/v1/spaces", headers=org.headers()).json()["items"]]
    assert "Mine" not in names


def test_renaming_a_user_needs_covering_the_user(org: Org) -> None:
    """Only an owner changes an owner, its name included; a space admin renames the
    people of its space."""
    c, team = org.client, new_space(org, "Team")
    _, admin = user_with_key(org, "admin@acme.test", "admin")
    r = c.patch(f"/v1/users/{org.owner_id}", headers=org.headers(admin), json={"name": "Eve"})
    refused(r)
    _, space_admin = user_with_key(org, "sa@acme.test", "admin", team)
    member = org.create_user("m@acme.test", role="viewer", space_id=team)["id"]
    h = org.headers(space_admin, **{"Apiward-Space-Id": team})
    assert c.patch(f"/v1/users/{member}", headers=h, json={"name": "Mia"}).status_code == 200
    refused(c.patch(f"/v1/users/{org.owner_id}", headers=h, json={"name": "Eve"}))
    owner = c.get(f"/v1/users/{org.owner_id}", headers=org.headers()).json()
    assert owner["name"] == "owner"


def test_a_role_holding_owner_powers_is_changed_by_owners_only(org: Org) -> None:
    c = org.client
    r = c.post(
        "/v1/roles", headers=org.headers(), json={"name": "co-owner", "scopes": ["*", "owner:*"]}
    )
    assert r.status_code == 201, r.text
    _, admin_key = user_with_key(org, "admin@acme.test", "admin")
    r = c.patch("/v1/roles/co-owner", headers=org.headers(admin_key), json={"scopes": ["*:read"]})
    assert "owner:" in refused(r)
    r = c.delete("/v1/roles/co-owner", headers=org.headers(admin_key))
    refused(r)


def test_no_role_holds_operator_powers(planned: Org) -> None:
    r = planned.client.post(
        "/v1/roles",
        headers=planned.headers(planned.operator_key()),
        json={"name": "sneaky", "scopes": ["keys:read", "operator:credits"]},
    )
    assert r.status_code == 400 and "operator" in r.json()["message"]


def test_a_space_restricted_key_changes_no_other_space(org: Org) -> None:
    a, b = new_space(org, "A"), new_space(org, "B")
    key = org.create_key(["spaces:manage", "spaces:read"], space_allow=[a])
    r = org.client.patch(
        f"/v1/spaces/{b}",
        headers=org.headers(key["key"], **{"Apiward-Space-Id": a}),
        json={"name": "renamed"},
    )
    assert (r.status_code, r.json()["reason"]) == (403, "SPACE_NOT_ALLOWED")


def test_a_webhook_endpoint_needs_the_permission_to_read_what_it_receives(org: Org) -> None:
    c = org.client
    body = {"url": "http://127.0.0.1:9/in", "events": ["*"]}
    manager = org.create_key(["webhooks:manage", "webhooks:read"])["key"]
    r = c.post("/v1/webhooks", headers=org.headers(manager), json=body)
    assert "audit:read" in refused(r) and r.json()["required_scope"] == "audit:read"
    reader = org.create_key(["webhooks:manage", "webhooks:read", "audit:read"])["key"]
    made = c.post("/v1/webhooks", headers=org.headers(reader), json=body)
    assert made.status_code == 201, made.text
    r = c.patch(
        f"/v1/webhooks/{made.json()['id']}",
        headers=org.headers(manager),
        json={"url": "http://127.0.0.1:10/elsewhere"},
    )
    refused(r)
