"""Spaces, users, roles and memberships over HTTP."""

from __future__ import annotations

from tests.conftest import Org


def test_spaces_create_list_rename_archive(org: Org) -> None:
    c, h = org.client, org.headers()
    created = c.post("/v1/spaces", headers=h, json={"name": "EU"})
    assert created.status_code == 201
    space_id = created.json()["id"]
    listed = c.get("/v1/spaces", headers=h).json()
    assert listed["total"] == 2 and listed["page"] == 1 and listed["page_size"] == 20
    renamed = c.patch(f"/v1/spaces/{space_id}", headers=h, json={"name": "Europe"})
    assert renamed.json()["name"] == "Europe"
    archived = c.patch(f"/v1/spaces/{space_id}", headers=h, json={"archived": True})
    assert archived.json()["archived_at"] is not None
    assert c.get("/v1/spaces", headers=h).json()["total"] == 1
    assert c.get("/v1/spaces?include_archived=true", headers=h).json()["total"] == 2
    default = c.patch(f"/v1/spaces/{org.space_id}", headers=h, json={"archived": True})
    assert default.status_code == 409


def test_archived_space_is_refused_as_a_target(org: Org) -> None:
    c, h = org.client, org.headers()
    space_id = c.post("/v1/spaces", headers=h, json={"name": "Old"}).json()["id"]
    assert (
        c.get("/v1/keys", headers=org.headers(**{"Apiward-Space-Id": space_id})).status_code == 200
    )
    c.patch(f"/v1/spaces/{space_id}", headers=h, json={"archived": True})
    r = c.get("/v1/keys", headers=org.headers(**{"Apiward-Space-Id": space_id}))
    assert (r.status_code, r.json()["reason"]) == (403, "UNKNOWN_SPACE")


def test_a_space_only_admin_changes_only_its_own_spaces(org: Org) -> None:
    """Renaming or archiving a space needs ``spaces:manage`` in that space (or in every
    space): an admin of one space neither archives nor renames another."""
    c, h = org.client, org.headers()
    mine = c.post("/v1/spaces", headers=h, json={"name": "Mine"}).json()["id"]
    theirs = c.post("/v1/spaces", headers=h, json={"name": "Theirs"}).json()["id"]
    admin = org.create_user("sa@acme.test", role="admin", space_id=mine)
    key = org.create_key(["*"], user_id=admin["id"])["key"]
    in_mine = org.headers(key, **{"Apiward-Space-Id": mine})
    for body in ({"archived": True}, {"name": "Taken"}):
        r = c.patch(f"/v1/spaces/{theirs}", headers=in_mine, json=body)
        assert (r.status_code, r.json()["reason"]) == (403, "EXCEEDS_AUTHORITY"), r.text
        assert "spaces:manage" in r.json()["message"]
    after = c.get(f"/v1/spaces/{theirs}", headers=h).json()
    assert (after["name"], after["archived_at"]) == ("Theirs", None)
    r = c.patch(f"/v1/spaces/{mine}", headers=in_mine, json={"name": "Still mine"})
    assert r.status_code == 200, r.text


def test_unarchiving_needs_the_archivers_authority(org: Org) -> None:
    """A space the owner archived comes back only by an owner's (or the operator's)
    hand; one an admin archived, any admin may bring back."""
    c, h = org.client, org.headers()
    admin = org.create_user("adm@acme.test", role="admin")
    other = org.create_user("adm2@acme.test", role="admin")
    admin_key = org.create_key(["*"], user_id=admin["id"])["key"]
    other_key = org.create_key(["*"], user_id=other["id"])["key"]
    by_owner = c.post("/v1/spaces", headers=h, json={"name": "Owner's"}).json()["id"]
    archived = c.patch(f"/v1/spaces/{by_owner}", headers=h, json={"archived": True}).json()
    assert archived["archived_by"] == org.owner_id
    r = c.patch(f"/v1/spaces/{by_owner}", headers=org.headers(admin_key), json={"archived": False})
    assert (r.status_code, r.json()["reason"]) == (403, "EXCEEDS_AUTHORITY"), r.text
    assert c.get(f"/v1/spaces/{by_owner}", headers=h).json()["archived_at"] is not None
    operator = org.headers(org.operator_key())
    r = c.patch(f"/v1/spaces/{by_owner}", headers=operator, json={"archived": False})
    assert r.status_code == 200, r.text
    assert (r.json()["archived_at"], r.json()["archived_by"]) == (None, None)
    by_admin = c.post("/v1/spaces", headers=h, json={"name": "Admin's"}).json()["id"]
    r = c.patch(f"/v1/spaces/{by_admin}", headers=org.headers(admin_key), json={"archived": True})
    assert r.json()["archived_by"] == admin["id"]
    r = c.patch(f"/v1/spaces/{by_admin}", headers=org.headers(other_key), json={"archived": False})
    assert r.status_code == 200, r.text
    c.patch(f"/v1/spaces/{by_admin}", headers=org.headers(other_key), json={"archived": True})
    assert c.patch(f"/v1/spaces/{by_admin}", headers=h, json={"archived": False}).status_code == 200


def test_a_space_whose_archiver_lost_every_role_comes_back_by_an_owner_only(org: Org) -> None:
    """An owner archives a space and is then removed from the organisation's roles: the
    space is treated as archived by someone unknown (an owner's act), not as archived by
    someone who holds nothing, which any admin would cover."""
    c, h = org.client, org.headers()
    second = org.create_user("owner2@acme.test", role="owner")
    second_key = org.create_key(["*", "owner:*"], user_id=second["id"])["key"]
    admin = org.create_user("adm@acme.test", role="admin")
    admin_key = org.create_key(["*"], user_id=admin["id"])["key"]
    space = c.post("/v1/spaces", headers=h, json={"name": "Theirs"}).json()["id"]
    r = c.patch(f"/v1/spaces/{space}", headers=org.headers(second_key), json={"archived": True})
    assert r.json()["archived_by"] == second["id"], r.text
    assert c.delete(f"/v1/users/{second['id']}/memberships", headers=h).status_code == 204
    r = c.patch(f"/v1/spaces/{space}", headers=org.headers(admin_key), json={"archived": False})
    assert (r.status_code, r.json()["reason"]) == (403, "EXCEEDS_AUTHORITY"), r.text
    assert c.patch(f"/v1/spaces/{space}", headers=h, json={"archived": False}).status_code == 200


def test_users_create_list_disable(org: Org) -> None:
    c, h = org.client, org.headers()
    user = org.create_user("dev@acme.test", role="developer", password="a long passphrase")
    assert c.get("/v1/users", headers=h).json()["total"] == 2
    dup = c.post("/v1/users", headers=h, json={"email": "DEV@acme.test"})
    assert dup.status_code == 409
    weak = c.post("/v1/users", headers=h, json={"email": "x@acme.test", "password": "short"})
    assert weak.status_code == 400 and "at least" in weak.json()["message"]
    bad = c.post("/v1/users", headers=h, json={"email": "not-an-email"})
    assert bad.status_code == 400
    key = org.create_key(["keys:read"], user_id=user["id"])["key"]
    assert c.get("/v1/keys", headers=org.headers(key)).status_code == 200
    disabled = c.patch(f"/v1/users/{user['id']}", headers=h, json={"disabled": True})
    assert disabled.json()["disabled_at"] is not None
    r = c.get("/v1/keys", headers=org.headers(key))
    assert (r.status_code, r.json()["reason"]) == (401, "KEY_DISABLED")
    own = c.patch(f"/v1/users/{org.owner_id}", headers=h, json={"disabled": True})
    assert own.status_code == 409


def test_key_without_user_acts_as_its_creator(org: Org) -> None:
    c, h = org.client, org.headers()
    dev = org.create_user("dev@acme.test", role="developer")
    dev_key = org.create_key(["keys:write", "keys:read"], user_id=dev["id"])["key"]
    made = c.post(
        "/v1/keys", headers=org.headers(dev_key), json={"name": "child", "scopes": ["keys:read"]}
    ).json()
    # It acts as the user the making key acts as; its maker is the person behind that
    # key (the owner made it for the developer), so it never passes as the developer's own.
    assert (made["created_by"], made["user_id"]) == (org.owner_id, dev["id"])
    # The creator loses every role: the child key loses its access with them.
    c.delete(f"/v1/users/{dev['id']}/memberships", headers=h)
    r = c.get("/v1/keys", headers=org.headers(made["key"]))
    assert (r.status_code, r.json()["reason"]) == (403, "NO_SPACE_ACCESS")


def test_roles_custom_crud_and_builtins(org: Org) -> None:
    c, h = org.client, org.headers()
    roles = c.get("/v1/roles", headers=h).json()
    assert {r["name"] for r in roles["items"]} >= {"owner", "admin", "developer", "viewer"}
    created = c.post(
        "/v1/roles", headers=h, json={"name": "billing", "scopes": ["invoices:read", "invoices:*"]}
    )
    assert created.status_code == 201 and created.json()["scopes"] == ["invoices:*"]
    assert (
        c.post("/v1/roles", headers=h, json={"name": "viewer", "scopes": ["*"]}).status_code == 409
    )
    assert (
        c.post("/v1/roles", headers=h, json={"name": "x", "scopes": ["bad scope"]}).status_code
        == 400
    )
    user = org.create_user("b@acme.test", role="billing")
    assert c.delete("/v1/roles/billing", headers=h).status_code == 409
    updated = c.patch("/v1/roles/billing", headers=h, json={"scopes": ["invoices:read"]})
    assert updated.json()["scopes"] == ["invoices:read"]
    c.delete(f"/v1/users/{user['id']}/memberships", headers=h)
    assert c.delete("/v1/roles/billing", headers=h).status_code == 204
    assert c.get("/v1/roles/billing", headers=h).status_code == 404
    assert c.patch("/v1/roles/owner", headers=h, json={"scopes": ["*"]}).status_code == 409


def test_role_change_applies_to_existing_keys_at_once(org: Org) -> None:
    c, h = org.client, org.headers()
    user = org.create_user("v@acme.test", role="viewer")
    key = org.create_key(["keys:read", "keys:write"], user_id=user["id"])["key"]
    w = c.post("/v1/keys", headers=org.headers(key), json={"name": "x", "scopes": ["keys:read"]})
    assert w.status_code == 403
    c.put(f"/v1/users/{user['id']}/memberships", headers=h, json={"role": "developer"})
    w = c.post("/v1/keys", headers=org.headers(key), json={"name": "x", "scopes": ["keys:read"]})
    assert w.status_code == 201


def test_memberships_per_space_override_org_wide_role(org: Org) -> None:
    c, h = org.client, org.headers()
    space = c.post("/v1/spaces", headers=h, json={"name": "EU"}).json()["id"]
    user = org.create_user("m@acme.test", role="viewer")
    r = c.put(
        f"/v1/users/{user['id']}/memberships",
        headers=h,
        json={"role": "developer", "space_id": space},
    )
    assert r.status_code == 200
    listed = c.get(f"/v1/users/{user['id']}/memberships", headers=h).json()
    assert {(m["space_id"], m["role"]) for m in listed} == {(None, "viewer"), (space, "developer")}
    key = org.create_key(["keys:*"], user_id=user["id"])["key"]
    body = {"name": "x", "scopes": ["keys:read"]}
    assert c.post("/v1/keys", headers=org.headers(key), json=body).status_code == 403
    in_eu = org.headers(key, **{"Apiward-Space-Id": space})
    assert c.post("/v1/keys", headers=in_eu, json=body).status_code == 201
    unknown = c.put(f"/v1/users/{user['id']}/memberships", headers=h, json={"role": "nope"})
    assert unknown.status_code == 404


def test_privilege_escalation_is_refused(org: Org) -> None:
    c, h = org.client, org.headers()
    admin = org.create_user("a@acme.test", role="admin")
    victim = org.create_user("v@acme.test", role="viewer")
    admin_key = org.create_key(["*"], user_id=admin["id"])["key"]
    r = c.put(
        f"/v1/users/{victim['id']}/memberships",
        headers=org.headers(admin_key),
        json={"role": "owner"},
    )
    assert r.status_code == 403
    dev = org.create_user("d@acme.test", role="developer")
    dev_key = org.create_key(["*"], user_id=dev["id"])["key"]
    r = c.put(
        f"/v1/users/{victim['id']}/memberships",
        headers=org.headers(dev_key),
        json={"role": "admin"},
    )
    assert r.status_code == 403
    r = c.post("/v1/roles", headers=org.headers(dev_key), json={"name": "x", "scopes": ["*"]})
    assert r.status_code == 403
    # The owner can.
    r = c.put(f"/v1/users/{victim['id']}/memberships", headers=h, json={"role": "owner"})
    assert r.status_code == 200


def test_audit_log_records_who_did_what(org: Org) -> None:
    c, h = org.client, org.headers()
    created = org.create_key(["keys:read"])
    c.post(f"/v1/keys/{created['id']}/revoke", headers=h, json={})
    events = c.get("/v1/audit-events", headers=h, params={"target_id": created["id"]}).json()
    types = [e["type"] for e in events["items"]]
    assert types == ["key.revoked", "key.created"]
    assert events["items"][0]["actor_user_id"] == org.owner_id
    assert events["items"][0]["request_id"]
    only = c.get("/v1/audit-events", headers=h, params={"type": "key.created"}).json()
    assert all(e["type"] == "key.created" for e in only["items"])
