"""Token endpoints over HTTP: grants, rotation, revocation, introspection, metadata."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient

from apiward.adapters.http.app import create_app
from tests.conftest import FakeClock, Org, bootstrap, fast_settings, migrated_sqlite

PASSWORD = "correct horse battery"


def login(org: Org, **extra: str) -> dict[str, Any]:
    r = org.client.post(
        "/v1/auth/token", json={"username": "owner@acme.test", "password": PASSWORD, **extra}
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_monogoto_password_grant_without_grant_type(org: Org) -> None:
    r = org.client.post(
        "/v1/auth/token", json={"username": "owner@acme.test", "password": PASSWORD}
    )
    body = r.json()
    assert r.status_code == 200
    assert set(body) == {"token_type", "access_token", "refresh_token", "expires_in", "scope"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 1800
    assert body["scope"] == "* owner:*"  # an owner holds the owner powers by name
    assert r.headers["cache-control"] == "no-store"
    assert org.client.get("/v1/keys", headers=bearer(body["access_token"])).status_code == 200


def test_form_encoded_password_grant_and_scope_narrowing(org: Org) -> None:
    r = org.client.post(
        "/v1/auth/token",
        data={
            "grant_type": "password",
            "username": "owner@acme.test",
            "password": PASSWORD,
            "scope": "keys:read",
        },
    )
    assert r.status_code == 200
    token = r.json()["access_token"]
    assert r.json()["scope"] == "keys:read"
    assert org.client.get("/v1/keys", headers=bearer(token)).status_code == 200
    denied = org.client.get("/v1/users", headers=bearer(token))
    assert denied.status_code == 403 and denied.json()["message"].endswith("users:read")


def test_scope_beyond_the_users_roles_is_invalid_scope(org: Org) -> None:
    org.create_user("v@acme.test", role="viewer", password="viewer passphrase")
    r = org.client.post(
        "/v1/auth/token",
        json={"username": "v@acme.test", "password": "viewer passphrase", "scope": "keys:write"},
    )
    assert (r.status_code, r.json()["error"]) == (400, "invalid_scope")
    ok = org.client.post(
        "/v1/auth/token", json={"username": "v@acme.test", "password": "viewer passphrase"}
    ).json()
    assert ok["scope"] == "*:read"


def test_wrong_password_and_unknown_user_answer_alike(org: Org) -> None:
    a = org.client.post("/v1/auth/token", json={"username": "owner@acme.test", "password": "nope"})
    b = org.client.post("/v1/auth/token", json={"username": "ghost@acme.test", "password": "nope"})
    assert a.status_code == b.status_code == 400

    def strip(r: httpx.Response) -> dict[str, Any]:
        return {k: v for k, v in r.json().items() if k != "request_id"}

    assert (
        strip(a)
        == strip(b)
        == {"error": "invalid_grant", "error_description": "Invalid username or password."}
    )
    org.client.portal.call(org.runtime.tokens.drain)  # type: ignore[union-attr]
    events = org.client.get(
        "/v1/audit-events", headers=org.headers(), params={"type": "login.failed"}
    ).json()
    assert events["total"] == 1


def test_repeated_failures_are_throttled(org: Org) -> None:
    for _ in range(5):
        org.client.post("/v1/auth/token", json={"username": "owner@acme.test", "password": "x"})
    r = org.client.post(
        "/v1/auth/token", json={"username": "owner@acme.test", "password": PASSWORD}
    )
    assert r.status_code == 429
    assert r.json()["error"] == "temporarily_unavailable"
    assert int(r.headers["retry-after"]) > 0


def test_refresh_rotates_and_invalidates_the_old_token(timed_org: Org, clock: FakeClock) -> None:
    org = timed_org
    first = login(org)
    second = org.client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    pair = second.json()
    assert pair["refresh_token"] != first["refresh_token"]
    assert pair["access_token"] != first["access_token"]
    # Within the grace window a repeat gets the very same pair.
    again = org.client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert again.json() == pair
    # After it, while the successor is unused, a retry rotates the family again (the
    # first answer may have been lost): the successor handed out before is a tripwire.
    clock.advance(30)
    retried = org.client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert retried.json()["refresh_token"] != pair["refresh_token"]
    pair = retried.json()
    # Once the successor was used, the replay is reuse: the whole session is revoked.
    pair = org.client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}).json()
    clock.advance(30)
    replay = org.client.post(
        "/v1/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
    )
    assert (replay.status_code, replay.json()["error"]) == (400, "invalid_grant")
    assert "already used" in replay.json()["error_description"]
    newest = org.client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert newest.status_code == 401 and "revoked" in newest.json()["error_description"]
    r = org.client.get("/v1/keys", headers=bearer(pair["access_token"]))
    assert (r.status_code, r.json()["reason"]) == (401, "TOKEN_REVOKED")
    events = org.client.get(
        "/v1/audit-events", headers=org.headers(), params={"type": "refresh_token.reuse_detected"}
    ).json()
    assert events["total"] == 1


def test_expired_access_and_refresh_tokens(timed_org: Org, clock: FakeClock) -> None:
    org = timed_org
    pair = login(org)
    clock.advance(1801)
    r = org.client.get("/v1/keys", headers=bearer(pair["access_token"]))
    assert (r.status_code, r.json()["reason"]) == (401, "TOKEN_EXPIRED")
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    clock.advance(86400)
    r = org.client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert "expired" in r.json()["error_description"]


def _client(org: Org, scopes: list[str], key: str | None = None) -> dict[str, Any]:
    r = org.client.post(
        "/v1/clients", headers=org.headers(key), json={"name": "partner", "scopes": scopes}
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def _client_token(org: Org, client: dict[str, Any]) -> str:
    r = org.client.post(
        "/v1/auth/token",
        json={
            "grant_type": "client_credentials",
            "client_id": client["client_id"],
            "client_secret": client["client_secret"],
        },
    )
    assert r.status_code == 200, r.text
    token: str = r.json()["access_token"]
    return token


def test_client_credentials_in_body_and_basic(org: Org) -> None:
    client = _client(org, ["keys:read"])
    assert client["client_secret"].startswith("awcs_live_")
    listed = org.client.get("/v1/clients", headers=org.headers()).text
    assert client["client_secret"] not in listed
    body = org.client.post(
        "/v1/auth/token",
        json={
            "grant_type": "client_credentials",
            "client_id": client["client_id"],
            "client_secret": client["client_secret"],
        },
    )
    assert body.status_code == 200
    assert set(body.json()) == {"access_token", "token_type", "expires_in", "scope"}
    basic = base64.b64encode(f"{client['client_id']}:{client['client_secret']}".encode()).decode()
    r = org.client.post(
        "/v1/auth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert r.status_code == 200
    token = r.json()["access_token"]
    assert org.client.get("/v1/keys", headers=bearer(token)).status_code == 200
    assert org.client.get("/v1/users", headers=bearer(token)).status_code == 403


def test_bad_client_credentials(org: Org) -> None:
    client = _client(org, ["keys:read"])
    wrong = org.client.post(
        "/v1/auth/token",
        json={
            "grant_type": "client_credentials",
            "client_id": client["client_id"],
            "client_secret": "awcs_live_nope",
        },
    )
    unknown = org.client.post(
        "/v1/auth/token",
        json={
            "grant_type": "client_credentials",
            "client_id": "client_nope",
            "client_secret": client["client_secret"],
        },
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["error_description"] == unknown.json()["error_description"]
    basic = base64.b64encode(b"client_nope:secret").decode()
    r = org.client.post(
        "/v1/auth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Basic realm="apiward"'


@pytest.mark.parametrize("route", ["/v1/auth/token", "/v1/auth/introspect", "/v1/auth/revoke"])
def test_a_disabled_users_client_authenticates_nowhere(org: Org, route: str) -> None:
    """Every door that takes a client's secret refuses the client of a disabled user, as
    the token endpoint does: the check is in the one client authentication."""
    user = org.create_user("partner@acme.test", role="developer")
    r = org.client.post(
        "/v1/clients",
        headers=org.headers(),
        json={"name": "partner", "scopes": ["keys:read"], "user_id": user["id"]},
    )
    assert r.status_code == 201, r.text
    client = r.json()
    r = org.client.patch(f"/v1/users/{user['id']}", headers=org.headers(), json={"disabled": True})
    assert r.status_code == 200, r.text
    basic = base64.b64encode(f"{client['client_id']}:{client['client_secret']}".encode()).decode()
    form = {"grant_type": "client_credentials", "token": "not-a-token"}
    r = org.client.post(route, data=form, headers={"Authorization": f"Basic {basic}"})
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "invalid_client"
    assert "disabled" in r.json()["error_description"]


def test_revoking_a_client_kills_its_tokens(org: Org) -> None:
    client = _client(org, ["keys:read"])
    token = _client_token(org, client)
    org.client.post(f"/v1/clients/{client['client_id']}/revoke", headers=org.headers())
    r = org.client.get("/v1/keys", headers=bearer(token))
    assert r.json()["reason"] == "TOKEN_REVOKED"
    again = org.client.post(
        "/v1/auth/token",
        json={
            "grant_type": "client_credentials",
            "client_id": client["client_id"],
            "client_secret": client["client_secret"],
        },
    )
    assert again.status_code == 401


@pytest.mark.parametrize("door", ["service", "cli"])
def test_every_way_of_revoking_a_client_kills_its_tokens(org: Org, door: str) -> None:
    """Revoking a client ends its access tokens whoever revokes it: the tokens are ended
    by the revocation itself, not by each caller remembering a second step."""
    client = _client(org, ["keys:read"])
    token = _client_token(org, client)
    runtime = org.runtime

    async def revoke() -> None:
        principal = await runtime.operators.principal(org.id)
        await runtime.clients.revoke(principal, client["client_id"])

    if door == "service":
        org.client.portal.call(revoke)  # type: ignore[union-attr]
    else:
        from typer.testing import CliRunner

        from apiward.adapters.cli.main import app

        env = {"APIWARD_DATABASE_URL": runtime.settings.database_url}
        env.update({"APIWARD_SECRET_KEY": "test-secret-that-is-at-least-32-bytes-long"})
        result = CliRunner().invoke(app, ["clients", "revoke", client["client_id"]], env=env)
        assert result.exit_code == 0, result.output
        org.client.portal.call(runtime.invalidations.poll)  # type: ignore[union-attr]
    r = org.client.get("/v1/keys", headers=bearer(token))
    assert r.status_code == 401
    assert r.json()["reason"] == "TOKEN_REVOKED"


def test_entity_user_token_exchange(org: Org) -> None:
    space = org.client.post("/v1/spaces", headers=org.headers(), json={"name": "Entity"}).json()
    user = org.create_user("clerk@acme.test", role="viewer", space_id=space["id"])
    partner = _client(org, ["*"])
    r = org.client.post(
        "/v1/auth/token",
        json={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "client_id": partner["client_id"],
            "client_secret": partner["client_secret"],
            "subject_token": user["id"],
            "subject_token_type": "urn:apiward:params:oauth:token-type:user-id",
            "space_id": space["id"],
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["scope"] == "*:read"
    assert body["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == user["id"] and claims["space"] == space["id"]
    assert claims["act"] == {"sub": partner["client_id"]}
    token = body["access_token"]
    assert org.client.get("/v1/keys", headers=bearer(token)).status_code == 200
    write = org.client.post("/v1/spaces", headers=bearer(token), json={"name": "x"})
    assert write.status_code == 403
    elsewhere = org.client.get(
        "/v1/keys", headers={**bearer(token), "Apiward-Space-Id": org.space_id}
    )
    assert elsewhere.json()["reason"] == "SPACE_NOT_ALLOWED"


def test_exchange_needs_the_delegation_scope(org: Org) -> None:
    plain = _client(org, ["keys:read"])
    r = org.client.post(
        "/v1/auth/token",
        json={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "client_id": plain["client_id"],
            "client_secret": plain["client_secret"],
            "subject_token": org.owner_id,
            "subject_token_type": "urn:apiward:params:oauth:token-type:user-id",
        },
    )
    assert (r.status_code, r.json()["error"]) == (400, "unauthorized_client")


def test_revoke_access_token_and_refresh_session(org: Org) -> None:
    pair = login(org)
    r = org.client.post("/v1/auth/revoke", data={"token": pair["access_token"]})
    assert r.status_code == 200
    assert (
        org.client.get("/v1/keys", headers=bearer(pair["access_token"])).json()["reason"]
        == "TOKEN_REVOKED"
    )
    other = login(org)
    org.client.post(
        "/v1/auth/revoke",
        json={"token": other["refresh_token"], "token_type_hint": "refresh_token"},
    )
    assert (
        org.client.post(
            "/v1/auth/refresh", json={"refresh_token": other["refresh_token"]}
        ).status_code
        == 401
    )
    assert org.client.get("/v1/keys", headers=bearer(other["access_token"])).status_code == 401
    assert org.client.post("/v1/auth/revoke", data={"token": "garbage"}).status_code == 200


def test_introspection(org: Org, other_org: Org) -> None:
    pair = login(org)
    key = org.create_key(["tokens:introspect"])["key"]
    r = org.client.post(
        "/v1/auth/introspect", headers=org.headers(key), data={"token": pair["access_token"]}
    )
    body = r.json()
    assert body["active"] is True and body["sub"] == org.owner_id and body["scope"] == "* owner:*"
    refresh = org.client.post(
        "/v1/auth/introspect", headers=org.headers(key), data={"token": pair["refresh_token"]}
    ).json()
    assert refresh["active"] is True and refresh["token_type"] == "refresh_token"
    foreign = other_org.client.post(
        "/v1/auth/introspect", headers=other_org.headers(), data={"token": pair["access_token"]}
    ).json()
    assert foreign == {"active": False}
    no_scope = org.create_key(["keys:read"])["key"]
    denied = org.client.post(
        "/v1/auth/introspect", headers=org.headers(no_scope), data={"token": pair["access_token"]}
    )
    assert denied.status_code == 403
    client = _client(org, ["keys:read"])
    basic = base64.b64encode(f"{client['client_id']}:{client['client_secret']}".encode()).decode()
    via_basic = org.client.post(
        "/v1/auth/introspect",
        data={"token": pair["access_token"]},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert via_basic.json()["active"] is True


@pytest.mark.parametrize(
    ("kwargs", "status", "error"),
    [
        ({"json": {"grant_type": "magic"}}, 400, "unsupported_grant_type"),
        ({"json": {}}, 400, "invalid_request"),
        ({"json": {"grant_type": "password", "username": "a"}}, 400, "invalid_request"),
        ({"json": {"grant_type": "refresh_token"}}, 400, "invalid_request"),
        ({"json": {"grant_type": "refresh_token", "refresh_token": "x"}}, 400, "invalid_grant"),
        ({"json": {"grant_type": "client_credentials"}}, 401, "invalid_client"),
        ({"json": ["not", "an", "object"]}, 400, "invalid_request"),
        ({"json": {"username": {"a": 1}, "password": "x"}}, 400, "invalid_request"),
        (
            {"content": b"{broken", "headers": {"content-type": "application/json"}},
            400,
            "invalid_request",
        ),
        (
            {"content": b"<xml/>", "headers": {"content-type": "application/xml"}},
            400,
            "invalid_request",
        ),
        (
            {
                "json": {
                    "grant_type": "password",
                    "username": "owner@acme.test",
                    "password": PASSWORD,
                    "scope": "not a scope!",
                }
            },
            400,
            "invalid_scope",
        ),
    ],
)
def test_token_endpoint_errors_follow_rfc_6749(
    org: Org, kwargs: dict[str, Any], status: int, error: str
) -> None:
    r = org.client.post("/v1/auth/token", **kwargs)
    assert r.status_code == status, r.text
    assert r.json()["error"] == error
    assert r.json()["error_description"]
    assert r.json()["request_id"] == r.headers["x-request-id"]


def test_metadata_and_jwks(org: Org) -> None:
    meta = org.client.get("/.well-known/oauth-authorization-server").json()
    assert meta["token_endpoint"].endswith("/v1/auth/token")
    assert "client_credentials" in meta["grant_types_supported"]
    jwks = org.client.get("/.well-known/jwks.json").json()
    assert jwks["keys"][0]["alg"] == "ES256" and jwks["keys"][0]["kty"] == "EC"
    assert "d" not in jwks["keys"][0]


def test_access_token_claims_follow_rfc_9068(org: Org) -> None:
    pair = login(org)
    header = jwt.get_unverified_header(pair["access_token"])
    assert header["typ"] == "at+jwt" and header["alg"] == "ES256"
    claims = jwt.decode(pair["access_token"], options={"verify_signature": False})
    for name in ("iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope", "org", "env"):
        assert name in claims
    assert claims["org"] == org.id and claims["env"] == "live"


def test_signing_key_rotation_keeps_old_tokens_valid(org: Org) -> None:
    before = login(org)["access_token"]
    org.client.portal.call(org.runtime.keyring.rotate)  # type: ignore[union-attr]
    jwks = org.client.get("/.well-known/jwks.json").json()["keys"]
    assert len(jwks) == 2
    after = login(org)["access_token"]
    assert jwt.get_unverified_header(after)["kid"] == jwks[0]["kid"]
    assert jwt.get_unverified_header(before)["kid"] == jwks[1]["kid"]
    for token in (before, after):
        assert org.client.get("/v1/keys", headers=bearer(token)).status_code == 200


def test_forged_token_is_refused(org: Org) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    pair = login(org)
    claims = jwt.decode(pair["access_token"], options={"verify_signature": False})
    header = jwt.get_unverified_header(pair["access_token"])
    forged = jwt.encode(
        claims,
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
        headers={"kid": header["kid"], "typ": "at+jwt"},
    )
    r = org.client.get("/v1/keys", headers=bearer(forged))
    assert (r.status_code, r.json()["reason"]) == (401, "INVALID_TOKEN")
    none_alg = jwt.encode(claims, "", algorithm="none", headers={"kid": header["kid"]})
    assert org.client.get("/v1/keys", headers=bearer(none_alg)).status_code == 401


@pytest.mark.parametrize(("alg", "kty"), [("EdDSA", "OKP"), ("RS256", "RSA")])
def test_other_signing_algorithms(tmp_path: Path, alg: str, kty: str) -> None:
    settings = fast_settings(database_url=migrated_sqlite(tmp_path / "a.db"), token_algorithm=alg)
    with TestClient(create_app(settings)) as client:
        org = bootstrap(client)
        pair = login(org)
        assert jwt.get_unverified_header(pair["access_token"])["alg"] == alg
        assert client.get("/.well-known/jwks.json").json()["keys"][0]["kty"] == kty
        assert client.get("/v1/keys", headers=bearer(pair["access_token"])).status_code == 200
