"""Settings > Members & roles: users and their roles per space, spaces, custom roles."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tests.adapters.dashboard.conftest import PASSWORD, Browser
from tests.conftest import Org


def user_id(org: Org, email: str) -> str:
    users = org.client.get("/v1/users", headers=org.headers()).json()["items"]
    return str(next(u["id"] for u in users if u["email"] == email))


def memberships(org: Org, uid: str) -> list[dict[str, Any]]:
    r = org.client.get(f"/v1/users/{uid}/memberships", headers=org.headers())
    body: list[dict[str, Any]] = r.json()
    return body


def test_the_page_lists_users_roles_spaces(org: Org, owner: Browser) -> None:
    org.create_user("dev@acme.test", "developer", space_id=org.space_id)
    page = owner.get("/dashboard/members")
    assert page.status_code == 200
    for text in ("owner@acme.test", "dev@acme.test", "all spaces", "in Default", "Default"):
        assert text in page.text
    for role in ("owner", "admin", "developer", "viewer"):
        assert f"<strong>{role}</strong>" in page.text


def test_create_a_user_who_can_then_sign_in(
    org: Org, owner: Browser, browser: Callable[[], Browser]
) -> None:
    r = owner.post(
        "/dashboard/members/users",
        {"email": "new@acme.test", "name": "New Person", "password": PASSWORD, "role": "viewer"},
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/dashboard/members?done=user_created#users"
    assert "The user is created." in owner.get(r.headers["location"]).text
    newcomer = browser()
    assert newcomer.sign_in("new@acme.test").status_code == 303
    assert "viewer" in newcomer.get("/dashboard/keys").text


def test_a_duplicate_user_is_shown_as_an_error_with_the_form_kept(org: Org, owner: Browser) -> None:
    r = owner.post(
        "/dashboard/members/users", {"form": "user", "email": "owner@acme.test", "name": "Dup"}
    )
    assert r.status_code == 409
    assert "already exists" in r.text
    assert 'value="Dup"' in r.text
    assert '<details class="card disclosure" open>' in r.text


def test_grant_and_remove_roles_per_space(org: Org, owner: Browser) -> None:
    org.create_user("dev@acme.test")
    uid = user_id(org, "dev@acme.test")
    r = owner.post(
        f"/dashboard/members/users/{uid}/roles", {"role": "developer", "space_id": org.space_id}
    )
    assert r.status_code == 303
    assert [(m["role"], m["space_id"]) for m in memberships(org, uid)] == [
        ("developer", org.space_id)
    ]
    owner.post(f"/dashboard/members/users/{uid}/roles", {"role": "viewer", "space_id": ""})
    assert len(memberships(org, uid)) == 2
    owner.post(f"/dashboard/members/users/{uid}/roles/remove", {"space_id": org.space_id})
    assert [(m["role"], m["space_id"]) for m in memberships(org, uid)] == [("viewer", None)]


def test_only_an_owner_grants_owner(org: Org, signed_in: Callable[..., Browser]) -> None:
    admin = signed_in("admin")
    org.create_user("dev@acme.test")
    r = admin.post(
        f"/dashboard/members/users/{user_id(org, 'dev@acme.test')}/roles",
        {"role": "owner", "space_id": ""},
    )
    assert r.status_code == 403
    assert "owner:*" in r.text and "refused" in r.text


def test_disable_and_enable_a_user(org: Org, owner: Browser) -> None:
    org.create_user("dev@acme.test", "developer")
    uid = user_id(org, "dev@acme.test")
    owner.post(f"/dashboard/members/users/{uid}/disable", {})
    assert org.client.get(f"/v1/users/{uid}", headers=org.headers()).json()["disabled_at"]
    owner.post(f"/dashboard/members/users/{uid}/enable", {})
    assert not org.client.get(f"/v1/users/{uid}", headers=org.headers()).json()["disabled_at"]


def test_create_a_space(org: Org, owner: Browser) -> None:
    r = owner.post("/dashboard/members/spaces", {"name": "Team Europe"})
    assert r.headers["location"] == "/dashboard/members?done=space_created#spaces"
    assert "Team Europe" in owner.get("/dashboard/members").text


def test_custom_roles_are_scope_sets(org: Org, owner: Browser) -> None:
    r = owner.post(
        "/dashboard/members/roles",
        {
            "form": "role",
            "name": "billing",
            "description": "Reads invoices",
            "scope": ["keys:read"],
            "more_scopes": "invoices:read",
        },
    )
    assert r.status_code == 303
    role = org.client.get("/v1/roles/billing", headers=org.headers()).json()
    assert role["scopes"] == ["invoices:read", "keys:read"]
    assert "Reads invoices" in owner.get("/dashboard/members").text
    bad = owner.post("/dashboard/members/roles", {"form": "role", "name": "Bad Name"})
    assert bad.status_code == 400
    assert "Invalid role name" in bad.text
    owner.post("/dashboard/members/roles/billing/delete", {})
    assert org.client.get("/v1/roles/billing", headers=org.headers()).status_code == 404


def test_a_role_in_use_cannot_be_deleted(org: Org, owner: Browser) -> None:
    owner.post("/dashboard/members/roles", {"name": "billing", "scope": ["keys:read"]})
    org.create_user("dev@acme.test", "billing")
    r = owner.post("/dashboard/members/roles/billing/delete", {})
    assert r.status_code == 409
    assert "still granted" in r.text


def test_a_developer_reads_members_but_cannot_manage_them(
    org: Org, signed_in: Callable[..., Browser]
) -> None:
    dev = signed_in("developer")
    page = dev.get("/dashboard/members").text
    assert "owner@acme.test" in page
    assert "Add a user" not in page and "Grant role" not in page
    assert "Create a custom role" not in page and "Create space" not in page
    token = dev.csrf()
    for path, scope in (
        ("/dashboard/members/users", "users:manage"),
        ("/dashboard/members/spaces", "spaces:manage"),
        ("/dashboard/members/roles", "roles:manage"),
    ):
        r = dev.post(path, {"email": "x@acme.test", "name": "x"}, csrf=token)
        assert r.status_code == 403
        assert scope in r.text


def test_another_org_cannot_change_a_user_by_id(
    org: Org, other_org: Org, browser: Callable[[], Browser]
) -> None:
    org.create_user("dev@acme.test", "developer")
    uid = user_id(org, "dev@acme.test")
    intruder = browser()
    intruder.sign_in("owner@globex.test")
    assert "dev@acme.test" not in intruder.get("/dashboard/members").text
    for path in (f"/users/{uid}/disable", f"/users/{uid}/roles"):
        r = intruder.post("/dashboard/members" + path, {"role": "viewer"})
        assert r.status_code == 404, path
    assert not org.client.get(f"/v1/users/{uid}", headers=org.headers()).json()["disabled_at"]


def test_the_role_form_shows_each_error_next_to_its_field(
    org: Org, owner: Browser, signed_in: Callable[..., Browser]
) -> None:
    r = owner.post("/dashboard/members/roles", {"form": "role", "name": "Bad Name", "scope": []})
    assert r.status_code == 400
    assert 'id="role-name-error"' in r.text and 'id="scopes-error"' in r.text
    assert "Correct the 2 fields marked below." in r.text
    assert 'value="Bad Name"' in r.text  # what was typed is kept, the form open
    admin = signed_in("admin")
    r = admin.post(
        "/dashboard/members/roles",
        {"form": "role", "name": "owners-too", "more_scopes": "owner:manage"},
    )
    assert r.status_code == 400
    error = re.search(r'id="scopes-error"[^>]*>([^<]*)<', r.text)
    assert error and "owner:manage" in error.group(1)
    assert org.client.get("/v1/roles/owners-too", headers=org.headers()).status_code == 404


def test_the_user_invitation_and_space_forms_show_errors_by_field(owner: Browser) -> None:
    r = owner.post(
        "/dashboard/members/users",
        {"form": "user", "email": "not an address", "name": "x\ny", "password": "short"},
    )
    assert r.status_code == 400
    for field in ("new-email", "new-name", "new-password"):
        assert f'id="{field}-error"' in r.text, field
        assert f'aria-describedby="{field}-error"' in r.text, field
    assert "Correct the 3 fields marked below." in r.text
    r = owner.post("/dashboard/members/invitations", {"email": "nobody", "role": "viewer"})
    assert r.status_code == 400 and 'id="invite-email-error"' in r.text
    r = owner.post("/dashboard/members/spaces", {"name": ""})
    assert r.status_code == 400 and 'id="space-name-error"' in r.text
