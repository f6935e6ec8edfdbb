"""API keys over HTTP: the lifecycle and every refusal the Monk document lists."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Org


def error(r: Any) -> dict[str, Any]:
    body: dict[str, Any] = r.json()
    return body


def test_created_key_is_shown_once_and_listed_by_hint_only(org: Org) -> None:
    created = org.create_key(["keys:read"])
    secret = created["key"]
    assert secret.startswith("aw_live_")
    listed = org.client.get("/v1/keys", headers=org.headers())
    assert listed.status_code == 200
    assert secret not in listed.text
    item = next(k for k in listed.json()["items"] if k["id"] == created["id"])
    assert item["hint"] == f"aw_live_...{secret[-4:]}"
    got = org.client.get(f"/v1/keys/{created['id']}", headers=org.headers())
    assert secret not in got.text
    assert "key" not in got.json()


def test_key_authenticates_and_scope_is_enforced(org: Org) -> None:
    key = org.create_key(["keys:read"])["key"]
    ok = org.client.get("/v1/keys", headers=org.headers(key))
    assert ok.status_code == 200
    denied = org.client.get("/v1/users", headers=org.headers(key))
    assert denied.status_code == 403
    body = error(denied)
    assert body["code"] == "FORBIDDEN"
    assert body["reason"] == "INSUFFICIENT_SCOPE"
    assert body["message"] == "API key does not have the required permission: users:read"
    assert 'error="insufficient_scope"' in denied.headers["www-authenticate"]


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "MISSING_CREDENTIAL"),
        ("Basic abc", "MISSING_CREDENTIAL"),
        ("Bearer", "MISSING_CREDENTIAL"),
        ("Bearer not-a-key", "INVALID_KEY"),
        ("Bearer aw_live_0000000000000000000000000000000000000", "INVALID_KEY"),
    ],
)
def test_bad_authorization_headers(org: Org, header: str | None, reason: str) -> None:
    headers = {"Authorization": header} if header else {}
    r = org.client.get("/v1/keys", headers=headers)
    assert r.status_code == 401
    assert error(r)["reason"] == reason
    assert r.headers["www-authenticate"].startswith('Bearer realm="apiward"')
    if reason == "MISSING_CREDENTIAL":
        assert "Use: Authorization: Bearer <api_key>" in error(r)["message"]


def test_unknown_key_with_valid_checksum_and_tampered_key_answer_alike(org: Org) -> None:
    fmt = org.runtime.settings.key_format
    unknown = fmt.generate("live")
    real = org.create_key(["keys:read"])["key"]
    tampered = real[:-7] + ("A" if real[-7] != "A" else "B") + real[-6:]
    answers = []
    for key in (unknown, tampered):
        r = org.client.get("/v1/keys", headers=org.headers(key))
        body = error(r)
        del body["request_id"]
        answers.append((r.status_code, body, r.headers["www-authenticate"]))
    assert answers[0] == answers[1]
    assert answers[0][1]["message"] == "Invalid API key"


def test_disable_enable_revoke_take_effect_at_once(org: Org) -> None:
    created = org.create_key(["keys:read"])
    key, key_id = created["key"], created["id"]
    assert org.client.get("/v1/keys", headers=org.headers(key)).status_code == 200

    assert (
        org.client.post(f"/v1/keys/{key_id}/disable", headers=org.headers()).json()["state"]
        == "disabled"
    )
    r = org.client.get("/v1/keys", headers=org.headers(key))
    assert (r.status_code, error(r)["reason"]) == (401, "KEY_DISABLED")

    org.client.post(f"/v1/keys/{key_id}/enable", headers=org.headers())
    assert org.client.get("/v1/keys", headers=org.headers(key)).status_code == 200

    org.client.post(f"/v1/keys/{key_id}/revoke", headers=org.headers())
    r = org.client.get("/v1/keys", headers=org.headers(key))
    assert (r.status_code, error(r)["message"]) == (401, "API key has been revoked")
    again = org.client.post(f"/v1/keys/{key_id}/enable", headers=org.headers())
    assert again.status_code == 409


def test_expired_key(org: Org) -> None:
    import datetime as dt

    created = org.create_key(
        ["keys:read"], expires_at=(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)).isoformat()
    )
    runtime = org.runtime
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    runtime.auth._clock = type("C", (), {"now": staticmethod(lambda: later)})()
    r = org.client.get("/v1/keys", headers=org.headers(created["key"]))
    assert (r.status_code, error(r)["message"]) == (401, "API key has expired")


def test_update_scopes_applies_immediately(org: Org) -> None:
    created = org.create_key(["keys:read"])
    assert org.client.get("/v1/spaces", headers=org.headers(created["key"])).status_code == 403
    r = org.client.patch(
        f"/v1/keys/{created['id']}",
        headers=org.headers(),
        json={"scopes": ["keys:read", "spaces:read"], "name": "renamed"},
    )
    assert r.status_code == 200
    assert r.json()["name"] == "renamed"
    assert org.client.get("/v1/spaces", headers=org.headers(created["key"])).status_code == 200


def test_roll_with_grace_keeps_old_key_until_it_ends(org: Org) -> None:
    created = org.create_key(["keys:read"])
    r = org.client.post(
        f"/v1/keys/{created['id']}/roll", headers=org.headers(), json={"grace_seconds": 3600}
    )
    assert r.status_code == 201
    new = r.json()
    assert new["key"] != created["key"] and new["scopes"] == ["keys:read"]
    assert org.client.get("/v1/keys", headers=org.headers(created["key"])).status_code == 200
    assert org.client.get("/v1/keys", headers=org.headers(new["key"])).status_code == 200
    old = org.client.get(f"/v1/keys/{created['id']}", headers=org.headers()).json()
    assert old["rolled_to"] == new["id"] and old["expires_at"] is not None


def test_roll_without_grace_revokes_old_key(org: Org) -> None:
    created = org.create_key(["keys:read"])
    r = org.client.post(f"/v1/keys/{created['id']}/roll", headers=org.headers())
    assert r.status_code == 201
    old = org.client.get("/v1/keys", headers=org.headers(created["key"]))
    assert error(old)["reason"] == "KEY_REVOKED"


def test_ip_allow_list(org: Org) -> None:
    allowed = org.create_key(["keys:read"], ip_allow=["testclient/32"] if False else ["10.0.0.0/8"])
    r = org.client.get("/v1/keys", headers=org.headers(allowed["key"]))
    assert (r.status_code, error(r)["reason"]) == (403, "IP_NOT_ALLOWED")
    bad = org.client.post(
        "/v1/keys",
        headers=org.headers(),
        json={"name": "x", "scopes": ["keys:read"], "ip_allow": ["300.1.1.1/8"]},
    )
    assert bad.status_code == 400
    assert "300.1.1.1/8" in error(bad)["message"]


def test_space_header_and_space_allow_list(org: Org) -> None:
    space = org.client.post("/v1/spaces", headers=org.headers(), json={"name": "EU"}).json()
    key = org.create_key(["keys:read"], space_allow=[space["id"]])["key"]
    in_space = org.client.get(
        "/v1/keys", headers=org.headers(key, **{"Apiward-Space-Id": space["id"]})
    )
    assert in_space.status_code == 200
    default = org.client.get("/v1/keys", headers=org.headers(key))
    assert (default.status_code, error(default)["reason"]) == (403, "SPACE_NOT_ALLOWED")
    unknown = org.client.get(
        "/v1/keys", headers=org.headers(key, **{"Apiward-Space-Id": "spc_nope"})
    )
    assert error(unknown)["reason"] == "UNKNOWN_SPACE"


def test_key_of_a_user_acts_with_scopes_intersected_with_the_users_role(org: Org) -> None:
    space = org.client.post("/v1/spaces", headers=org.headers(), json={"name": "EU"}).json()
    viewer = org.create_user("viewer@acme.test", role="viewer", space_id=space["id"])
    key = org.create_key(["keys:read", "keys:write"], user_id=viewer["id"])["key"]
    headers = org.headers(key, **{"Apiward-Space-Id": space["id"]})
    assert org.client.get("/v1/keys", headers=headers).status_code == 200
    w = org.client.post("/v1/keys", headers=headers, json={"name": "x", "scopes": ["keys:read"]})
    assert (w.status_code, error(w)["message"]) == (
        403,
        "API key does not have the required permission: keys:write",
    )
    # No role in the default space at all.
    r = org.client.get("/v1/keys", headers=org.headers(key))
    assert (r.status_code, error(r)["reason"]) == (403, "NO_SPACE_ACCESS")


def test_a_key_cannot_mint_a_key_with_more_scopes_than_it_has(org: Org) -> None:
    key = org.create_key(["keys:write", "keys:read"])["key"]
    r = org.client.post("/v1/keys", headers=org.headers(key), json={"name": "x", "scopes": ["*"]})
    assert r.status_code == 403
    assert error(r)["required_scope"] == "*"


def test_test_key_cannot_touch_live_keys(org: Org) -> None:
    live = org.create_key(["keys:read"])
    test_key = org.create_key(["keys:read", "keys:write"], env="test")["key"]
    assert test_key.startswith("aw_test_")
    r = org.client.get(f"/v1/keys/{live['id']}", headers=org.headers(test_key))
    assert r.status_code == 404
    listed = org.client.get("/v1/keys", headers=org.headers(test_key)).json()
    assert all(k["environment"] == "test" for k in listed["items"])
    cross = org.client.post(
        "/v1/keys",
        headers=org.headers(test_key),
        json={"name": "x", "scopes": ["keys:read"], "environment": "live"},
    )
    assert (cross.status_code, error(cross)["reason"]) == (403, "ENVIRONMENT_MISMATCH")
    r = org.client.get(
        "/v1/keys", headers=org.headers(test_key, **{"Authorization": "Bearer " + test_key})
    )
    assert r.status_code == 200


def test_last_used_is_recorded_in_batches(org: Org) -> None:
    created = org.create_key(["keys:read"])
    org.client.get("/v1/keys", headers=org.headers(created["key"]))
    before = org.client.get(f"/v1/keys/{created['id']}", headers=org.headers()).json()
    assert before["last_used_at"] is None
    org.client.portal.call(org.runtime.flush_usage)  # type: ignore[union-attr]
    after = org.client.get(f"/v1/keys/{created['id']}", headers=org.headers()).json()
    assert after["last_used_at"] is not None
    assert after["last_used_ip"] == "testclient"


def test_unknown_key_id_is_404_with_message(org: Org) -> None:
    r = org.client.get("/v1/keys/key_missing", headers=org.headers())
    assert r.status_code == 404
    assert "key_missing" in error(r)["message"]


def test_request_id_round_trip(client: TestClient) -> None:
    r = client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    generated = client.get("/v1/keys")
    assert error(generated)["request_id"] == generated.headers["x-request-id"]


def test_changing_a_key_expiry_is_recorded_in_the_audit_log(org: Org) -> None:
    """A PATCH with an expiry answers 200, and its audit event holds the time as text."""
    import datetime as dt

    created = org.create_key(["keys:read"])
    when = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).replace(microsecond=0)
    r = org.client.patch(
        f"/v1/keys/{created['id']}", headers=org.headers(), json={"expires_at": when.isoformat()}
    )
    assert r.status_code == 200, r.text
    assert dt.datetime.fromisoformat(r.json()["expires_at"]) == when
    events = org.client.get(
        "/v1/audit-events", headers=org.headers(), params={"type": "key.updated"}
    ).json()["items"]
    assert [dt.datetime.fromisoformat(e["data"]["expires_at"]) for e in events] == [when]
