"""Settings > API keys: the table, creation (secret shown once), disable, enable, revoke, roll."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.adapters.dashboard.conftest import Browser, secret_of
from tests.conftest import Org


def api_key(org: Org, key_id: str) -> dict[str, Any]:
    r = org.client.get(f"/v1/keys/{key_id}", headers=org.headers())
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def create(owner: Browser, **fields: Any) -> str:
    r = owner.post("/dashboard/keys", {"name": "Billing", "env": "live", **fields})
    assert r.status_code == 201, r.text
    return secret_of(r.text)


def test_the_table_lists_keys_with_hint_scopes_and_creator(org: Org, owner: Browser) -> None:
    key = org.create_key(["keys:read", "customers:read"], name="Backend")
    page = owner.get("/dashboard/keys").text
    assert "Backend" in page
    assert f"{key['prefix']}…{key['last4']}" in page
    assert "customers:read" in page
    assert "by owner@acme.test" in page
    assert key["key"] not in page
    assert "Create live key" in page


def test_the_table_and_the_revoke_page_show_whom_a_key_is_for(org: Org, owner: Browser) -> None:
    """A key's external_id is shown under its name (escaped); a key without one shows none."""
    key = org.create_key(["keys:read"], name="Owned", external_id="cus_<b>1</b>")
    org.create_key(["keys:read"], name="Bare")
    page = owner.get("/dashboard/keys").text
    assert "for <code>cus_&lt;b&gt;1&lt;/b&gt;</code>" in page
    assert page.count('<small class="muted">for <code>') == 1
    confirm = owner.get(f"/dashboard/keys/{key['id']}/revoke").text
    assert "cus_&lt;b&gt;1&lt;/b&gt;" in confirm


def test_the_table_shows_one_environment_at_a_time(org: Org, owner: Browser) -> None:
    live = org.create_key(["keys:read"], name="Live one")
    test = org.create_key(["keys:read"], env="test", name="Test one")
    live_page = owner.get("/dashboard/keys").text
    test_page = owner.get("/dashboard/keys?env=test").text
    assert live["id"] not in test_page and "Test one" in test_page
    assert test["id"] not in live_page and "Live one" in live_page
    assert 'aria-current="true">Test</a>' in test_page


def test_last_use_and_address_are_shown(org: Org, owner: Browser) -> None:
    key = org.create_key(["keys:read"], name="Used")
    assert org.client.get("/v1/keys", headers=org.headers(key["key"])).status_code == 200
    org.client.portal.call(org.runtime.flush_usage)  # type: ignore[union-attr]
    page = owner.get("/dashboard/keys").text
    assert "from testclient" in page


def test_create_shows_the_secret_once_and_it_works(org: Org, owner: Browser) -> None:
    r = owner.post(
        "/dashboard/keys",
        {"name": "Billing", "env": "test", "scope": ["keys:read"], "expires": "30"},
    )
    assert r.status_code == 201
    assert "You won't see it again." in r.text
    assert r.headers["cache-control"] == "no-store"
    secret = secret_of(r.text)
    assert secret.startswith("aw_test_")
    listed = org.client.get("/v1/keys", headers=org.headers(secret))
    assert listed.status_code == 200
    created = next(k for k in listed.json()["items"] if k["name"] == "Billing")
    assert created["scopes"] == ["keys:read"]
    assert created["expires_at"] is not None
    table = owner.get("/dashboard/keys?env=test").text
    assert secret not in table
    assert secret[-4:] in table


def test_create_with_free_text_scopes_allow_lists_and_a_date(org: Org, owner: Browser) -> None:
    secret = create(
        owner,
        scope=["keys:read"],
        more_scopes="customers:read, invoices:*",
        ip_allow="203.0.113.0/24\n198.51.100.7",
        space=[org.space_id],
        expires="date",
        expires_on="2099-01-31",
    )
    body = org.client.get("/v1/keys", headers=org.headers()).json()
    key = next(k for k in body["items"] if k["hint"].endswith(secret[-4:]))
    assert key["scopes"] == ["customers:read", "invoices:*", "keys:read"]
    assert key["ip_allow"] == ["203.0.113.0/24", "198.51.100.7/32"]
    assert key["space_allow"] == [org.space_id]
    assert key["expires_at"].startswith("2099-01-31T00:00:00")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "", "scope": ["keys:read"]}, "The key name must be 1 to 200 characters long."),
        ({"name": "x"}, "An API key needs at least one scope"),
        ({"name": "x", "scope": ["keys:read"], "ip_allow": "nope"}, "is not an IP address"),
        ({"name": "x", "scope": ["keys:read"], "expires": "date"}, "Choose the expiry date"),
        ({"name": "x", "more_scopes": "Not A Scope"}, "scope"),
    ],
)
def test_invalid_input_is_shown_on_the_form(
    org: Org, owner: Browser, fields: dict[str, Any], message: str
) -> None:
    r = owner.post("/dashboard/keys", {"env": "live", **fields})
    assert r.status_code == 400
    assert 'class="flash flash-error"' in r.text
    assert message in r.text
    assert "Create an API key" in r.text  # the form again, filled in
    if fields["name"]:
        assert f'value="{fields["name"]}"' in r.text


def test_the_form_offers_role_scopes_custom_roles_and_management_scopes(
    org: Org, owner: Browser
) -> None:
    r = org.client.post(
        "/v1/roles",
        headers=org.headers(),
        json={"name": "billing", "scopes": ["invoices:read", "invoices:write"]},
    )
    assert r.status_code == 201
    page = owner.get("/dashboard/keys/new").text
    for scope in ("*", "invoices:read", "invoices:write", "keys:read", "users:manage"):
        assert f'name="scope" value="{scope}"' in page
    assert "From the billing role" in page


def test_a_developer_is_offered_only_what_their_role_grants(
    org: Org, signed_in: Callable[..., Browser]
) -> None:
    page = signed_in("developer").get("/dashboard/keys/new").text
    assert 'value="keys:write"' in page
    assert 'value="users:manage"' not in page
    assert 'value="*"' not in page


def test_a_key_beyond_the_users_role_is_refused(
    org: Org, signed_in: Callable[..., Browser]
) -> None:
    dev = signed_in("developer")
    r = dev.post("/dashboard/keys", {"name": "x", "env": "live", "scope": ["users:manage"]})
    assert r.status_code == 400
    assert "would hold &#39;users:manage&#39;" in r.text or "would hold 'users:manage'" in r.text


def test_disable_enable_and_revoke_take_effect_on_the_api(org: Org, owner: Browser) -> None:
    key = org.create_key(["keys:read"])

    def use() -> httpx.Response:
        r: httpx.Response = org.client.get("/v1/keys", headers=org.headers(key["key"]))
        return r

    r = owner.post(f"/dashboard/keys/{key['id']}/disable", {"env": "live"})
    assert r.status_code == 303
    assert r.headers["location"] == "/dashboard/keys?env=live&done=disabled"
    assert "The API key is disabled" in owner.get(r.headers["location"]).text
    assert use().json()["reason"] == "KEY_DISABLED"
    owner.post(f"/dashboard/keys/{key['id']}/enable", {"env": "live"})
    assert use().status_code == 200
    confirm = owner.get(f"/dashboard/keys/{key['id']}/revoke?env=live")
    assert confirm.status_code == 200
    assert "Revocation is permanent." in confirm.text
    assert api_key(org, key["id"])["state"] == "active"  # asking is not revoking
    r = owner.post(f"/dashboard/keys/{key['id']}/revoke", {"env": "live"})
    assert r.headers["location"] == "/dashboard/keys?env=live&done=revoked"
    refused = use()
    assert refused.status_code == 401
    assert refused.json()["message"] == "API key has been revoked"


def test_keys_of_the_test_environment_can_be_managed(org: Org, owner: Browser) -> None:
    key = org.create_key(["keys:read"], env="test")
    r = owner.post(f"/dashboard/keys/{key['id']}/disable", {"env": "test"})
    assert r.headers["location"] == "/dashboard/keys?env=test&done=disabled"
    body = org.client.get(f"/v1/keys/{key['id']}", headers=org.headers(org.owner_test_key))
    assert body.json()["state"] == "disabled"


def test_enabling_a_revoked_key_is_shown_as_an_error(org: Org, owner: Browser) -> None:
    key = org.create_key(["keys:read"])
    owner.post(f"/dashboard/keys/{key['id']}/revoke", {})
    r = owner.post(f"/dashboard/keys/{key['id']}/enable", {})
    assert r.status_code == 409
    assert "revocation is permanent" in r.text
    assert "API keys" in r.text  # the table, with the message on top


def test_roll_issues_a_new_key_and_keeps_the_old_one_for_the_grace(
    org: Org, owner: Browser
) -> None:
    key = org.create_key(["keys:read"], name="Rolling")
    form = owner.get(f"/dashboard/keys/{key['id']}/roll")
    assert form.status_code == 200
    r = owner.post(f"/dashboard/keys/{key['id']}/roll", {"grace": "3600"})
    assert r.status_code == 201
    assert "API key rolled" in r.text
    assert "The old key keeps working until" in r.text
    new = secret_of(r.text)
    assert org.client.get("/v1/keys", headers=org.headers(new)).status_code == 200
    assert org.client.get("/v1/keys", headers=org.headers(key["key"])).status_code == 200
    assert api_key(org, key["id"])["rolled_to"] is not None


def test_roll_without_grace_stops_the_old_key(org: Org, owner: Browser) -> None:
    key = org.create_key(["keys:read"])
    r = owner.post(f"/dashboard/keys/{key['id']}/roll", {"grace": "0"})
    assert "The old key stopped working." in r.text
    assert org.client.get("/v1/keys", headers=org.headers(key["key"])).status_code == 401


@pytest.mark.parametrize("grace", ["", "-1", str(31 * 86400)])
def test_a_bad_grace_period_is_shown_as_an_error(org: Org, owner: Browser, grace: str) -> None:
    key = org.create_key(["keys:read"])
    r = owner.post(f"/dashboard/keys/{key['id']}/roll", {"grace": grace})
    assert r.status_code == 400
    assert 'class="flash flash-error"' in r.text


def test_an_unknown_key_is_a_not_found_page(org: Org, owner: Browser) -> None:
    r = owner.get("/dashboard/keys/key_doesnotexist/revoke")
    assert r.status_code == 404
    assert "No API key with id" in r.text
    r = owner.post("/dashboard/keys/key_doesnotexist/revoke", {})
    assert r.status_code == 404


def test_a_viewer_sees_keys_but_cannot_change_them(
    org: Org, signed_in: Callable[..., Browser]
) -> None:
    key = org.create_key(["keys:read"], name="Visible")
    viewer = signed_in("viewer")
    page = viewer.get("/dashboard/keys")
    assert page.status_code == 200
    assert "Visible" in page.text
    for hidden in ("Create live key", "/revoke", "/disable", "/roll"):
        assert hidden not in page.text
    assert viewer.get("/dashboard/keys/new").status_code == 403
    assert viewer.get(f"/dashboard/keys/{key['id']}/revoke").status_code == 403
    token = viewer.csrf()
    attempts: dict[str, dict[str, Any]] = {
        "/dashboard/keys": {"name": "x", "scope": ["keys:read"]},
        f"/dashboard/keys/{key['id']}/disable": {},
        f"/dashboard/keys/{key['id']}/revoke": {},
        f"/dashboard/keys/{key['id']}/roll": {"grace": "0"},
    }
    for path, data in attempts.items():
        r = viewer.post(path, data, csrf=token)
        assert r.status_code == 403, path
        assert "Your role does not have the required permission: keys:write" in r.text
    assert api_key(org, key["id"])["state"] == "active"
    assert len(org.client.get("/v1/keys", headers=org.headers()).json()["items"]) == 2


def test_a_user_of_another_org_cannot_see_or_touch_a_key_by_id(
    org: Org, other_org: Org, browser: Callable[[], Browser]
) -> None:
    key = org.create_key(["keys:read"], name="Acme secret key")
    intruder = browser()
    assert intruder.sign_in("owner@globex.test").status_code == 303
    assert "Acme secret key" not in intruder.get("/dashboard/keys").text
    assert intruder.get(f"/dashboard/keys/{key['id']}/revoke").status_code == 404
    assert intruder.get(f"/dashboard/keys/{key['id']}/roll").status_code == 404
    for action in ("disable", "revoke", "roll"):
        r = intruder.post(f"/dashboard/keys/{key['id']}/{action}", {"grace": "0"})
        assert r.status_code == 404, action
    assert api_key(org, key["id"])["state"] == "active"
    assert org.client.get("/v1/keys", headers=org.headers(key["key"])).status_code == 200


def test_dashboard_actions_are_audited_with_the_session(org: Org, owner: Browser) -> None:
    create(owner, scope=["keys:read"])
    events = org.client.get("/v1/audit-events?type=key.created", headers=org.headers()).json()[
        "items"
    ]
    event = next(e for e in events if e["data"]["name"] == "Billing")
    assert event["actor_credential_id"].startswith("ses_")
    assert event["environment"] == "live"


def test_a_roll_in_the_dashboard_carries_the_operators_bounds(org: Org, owner: Browser) -> None:
    """A key the operator bounded keeps its bounds through a roll; one made here has none."""
    key = org.create_key(
        ["keys:read"],
        by=org.operator_key(),
        ip_allow=["10.0.0.0/8"],
        expires_at=(datetime.now(UTC) + timedelta(days=30)).isoformat(),
    )
    r = owner.post(f"/dashboard/keys/{key['id']}/roll", {"grace": "0"})
    assert r.status_code == 201, r.text
    new = api_key(org, api_key(org, key["id"])["rolled_to"])
    assert new["operator_bounds"] == key["operator_bounds"]
    assert new["operator_bounds"]["ip_allow"] == ["10.0.0.0/8"]
    create(owner, scope="keys:read", ip_allow="10.0.0.0/8")
    made_here = org.client.get("/v1/keys", headers=org.headers()).json()["items"][0]
    assert made_here["name"] == "Billing" and made_here["ip_allow"] == ["10.0.0.0/8"]
    assert made_here["operator_bounds"] == {
        "expires_at": None,
        "ip_allow": None,
        "space_allow": None,
    }
