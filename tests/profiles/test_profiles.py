"""Each shipped profile reproduces its document's contract: the flows, bodies, headers
and statuses its clients see (docs/compatibility.md maps every behaviour)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from apiward.adapters.http.app import create_app
from apiward.adapters.runtime import build
from tests.conftest import Org
from tests.live import free_port, serve
from tests.profiles.conftest import Profile, profile_settings, with_business_routes

QUICKSTART = Path(__file__).parents[1] / "fixtures" / "monogoto_quickstart.py"
PASSWORD = "correct horse battery"


def key(org: Org, scopes: list[str], **fields: Any) -> dict[str, Any]:
    return org.create_key(scopes, **fields)


def expire(org: Org, key_id: str) -> None:
    """Move a key's expiry into the past, as time would."""
    runtime = org.runtime

    async def run() -> None:
        async with runtime.store.begin() as tx:
            stored = await tx.get_key(org.id, key_id)
            assert stored is not None
            await tx.update_key(replace(stored, expires_at=datetime.now(UTC) - timedelta(1)))
        runtime.cache.clear()

    org.client.portal.call(run)  # type: ignore[union-attr]


# --- username and password, 4-hour tokens, the flat error shape -------------------------


def test_monogoto_the_quickstart_runs_unchanged_and_falls_back_to_login(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    port = free_port()
    settings = profile_settings(
        "monogoto", monkeypatch, tmp_path, public_url=f"http://127.0.0.1:{port}"
    )

    async def owner() -> None:
        runtime = build(settings)
        await runtime.start(background=False)
        try:
            await runtime.tenancy.bootstrap("Acme", "you@example.com", PASSWORD)
        finally:
            await runtime.stop()

    asyncio.run(owner())
    app = with_business_routes(create_app(settings))
    with serve(app, port) as base:
        env = {**os.environ, "MONOGOTO_BASE_URL": base}
        env |= {"MONOGOTO_USER": "you@example.com", "MONOGOTO_PASS": PASSWORD}
        run = subprocess.run(
            [sys.executable, str(QUICKSTART)], env=env, capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout.splitlines() == [
            "Found 1 SIM(s):",
            " 89370100002471565102 Device-001 [active]",
        ]

        # The client's own fallback: a refused refresh is a 401, so it signs in again.
        spec = importlib.util.spec_from_file_location("quickstart", QUICKSTART)
        assert spec is not None and spec.loader is not None
        monkeypatch.setenv("MONOGOTO_BASE_URL", base)
        quickstart = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(quickstart)
        client = quickstart.MonogotoClient("you@example.com", PASSWORD)
        client.get("/v1/things")
        used = client._refresh_token
        client._token_expires_at = 0  # due: the next call refreshes
        client.get("/v1/things")
        assert client._refresh_token != used
        client._refresh_token = used  # an already used one: the refresh is refused
        client._token_expires_at = 0
        assert client.get("/v1/things")["total"] == 1
        refused = httpx.post(f"{base}/v1/auth/refresh", json={"refresh_token": used})
        assert refused.status_code == 401
        assert set(refused.json()) == {"status_code", "message", "request_id"}


def test_monogoto_tokens_and_every_error_in_one_flat_shape(profile: Profile) -> None:
    org = profile("monogoto")
    c = org.client
    login = c.post("/v1/auth/token", json={"username": "owner@example.test", "password": PASSWORD})
    body = login.json()
    assert {"token_type", "access_token", "refresh_token"} <= set(body)
    assert body["token_type"] == "Bearer" and body["expires_in"] == 4 * 3600
    pair = c.post("/v1/auth/refresh", json={"refresh_token": body["refresh_token"]}).json()
    assert pair["refresh_token"] != body["refresh_token"]
    listed = c.get("/v1/things", headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert set(listed.json()) == {"items", "total", "page", "page_size"}
    for answer in (
        c.get("/v1/things"),
        c.get("/v1/things", headers={"Authorization": "Bearer not-a-token"}),
        c.post("/v1/auth/token", json={"username": "owner@example.test", "password": "no"}),
        c.post("/v1/auth/refresh", json={"refresh_token": body["refresh_token"]}),
    ):
        error = answer.json()
        assert set(error) == {"status_code", "message", "request_id"}, error
        assert error["status_code"] == answer.status_code
        assert error["request_id"] == answer.headers["x-request-id"]


# --- mks_ keys, {"detail": "No key found"}, 1000 an hour per org as a window -----------


def test_monaco_keys_errors_and_the_hourly_window(profile: Profile) -> None:
    org = profile("monaco")
    c = org.client
    made = key(org, ["things:read"])
    assert re.fullmatch(r"mks_[A-Za-z0-9_-]{48}", made["key"])
    disabled = key(org, ["things:read"])
    assert c.post(f"/v1/keys/{disabled['id']}/disable", headers=org.headers()).status_code == 200
    for headers in (
        {},
        {"Authorization": "Bearer mks_" + "x" * 48},
        {"Authorization": "Bearer " + made["key"][:-1] + ("y" if made["key"][-1] == "x" else "x")},
        org.headers(disabled["key"]),
    ):
        r = c.get("/v1/things", headers=headers)
        assert (r.status_code, r.json()) == (401, {"detail": "No key found"})
    lacking = c.get("/v1/things", headers=org.headers(key(org, ["other:read"])["key"]))
    assert lacking.status_code == 403 and set(lacking.json()) == {"detail"}

    headers = org.headers(made["key"])
    first = c.get("/v1/things", headers=headers)
    resets = {int(first.headers["x-ratelimit-reset"])}
    left = int(first.headers["x-ratelimit-remaining"])
    assert 990 <= left < 1000  # the owner's calls above spent a few of the org's hour
    for i in range(left):
        r = c.get("/v1/things", headers=headers)
        assert r.status_code == 200, (i, r.text)
        resets.add(int(r.headers["x-ratelimit-reset"]))
    assert r.headers["x-ratelimit-limit"] == "1000" and r.headers["x-ratelimit-remaining"] == "0"
    late = c.get("/v1/things", headers=headers)
    assert late.status_code == 429
    # A window: nothing more until it ends, and Reset says when that is.
    assert max(resets) - min(resets) <= 1
    wait = int(late.headers["retry-after"])
    now = int(datetime.now(UTC).timestamp())
    assert abs(int(late.headers["x-ratelimit-reset"]) - (now + wait)) <= 1
    assert set(late.json()) == {"detail"}


# --- client credentials, 1800 s tokens, the version header, entity users ----------------


def test_monite_client_credentials_version_header_and_entity_users(profile: Profile) -> None:
    org = profile("monite")
    c = org.client
    made = c.post(
        "/v1/clients",
        headers=org.headers(),
        json={"name": "ci", "scopes": ["*", "tokens:exchange"]},
    ).json()
    second = c.post(
        "/v1/clients", headers=org.headers(), json={"name": "app", "scopes": ["things:read"]}
    )
    assert second.status_code == 201  # several credential sets per project
    version = {"X-Monite-Version": "2024-01-31"}
    r = c.post(
        "/v1/auth/token",
        headers=version,
        json={
            "grant_type": "client_credentials",
            "client_id": made["client_id"],
            "client_secret": made["client_secret"],
        },
    )
    assert r.status_code == 200
    assert set(r.json()) >= {"access_token", "token_type", "expires_in"}
    assert (r.json()["token_type"], r.json()["expires_in"]) == ("Bearer", 1800)
    token = {"Authorization": f"Bearer {r.json()['access_token']}", **version}
    assert c.get("/v1/things", headers=token).status_code == 200
    bad = c.get("/v1/things", headers={**token, "X-Monite-Version": "2023-01-01"})
    assert bad.status_code == 400 and "2024-01-31" in bad.json()["message"]
    assert c.get("/", headers=token).json()["apiVersion"]["id"] == "2024-01-31"

    entity_user = org.create_user("clerk@example.test", role="viewer")
    exchanged = c.post(
        "/v1/auth/token",
        json={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "client_id": made["client_id"],
            "client_secret": made["client_secret"],
            "subject_token": entity_user["id"],
            "subject_token_type": "urn:apiward:params:oauth:token-type:user-id",
        },
    ).json()
    user_token = {"Authorization": f"Bearer {exchanged['access_token']}"}
    assert c.get("/v1/things", headers=user_token).status_code == 200  # a viewer reads
    assert c.post("/v1/customers", headers=user_token).status_code == 403  # and writes nothing


# --- mk_live_ keys, nested errors with five messages, 100 a minute per IP ----------------


def test_monk_keys_and_its_five_messages(profile: Profile) -> None:
    org = profile("monk")
    c = org.client
    made = key(org, ["customers:read"])
    assert re.fullmatch(r"mk_live_[0-9a-f]{48}", made["key"])
    revoked = key(org, ["customers:read"])
    c.post(f"/v1/keys/{revoked['id']}/revoke", headers=org.headers())
    expired = key(org, ["customers:read"])
    expire(org, expired["id"])
    cases = [
        (
            {},
            401,
            "Missing or invalid Authorization header. Use: Authorization: Bearer <api_key>",
            "UNAUTHORIZED",
        ),
        ({"Authorization": "Bearer mk_live_" + "0" * 48}, 401, "Invalid API key", "UNAUTHORIZED"),
        (org.headers(revoked["key"]), 401, "API key has been revoked", "UNAUTHORIZED"),
        (org.headers(expired["key"]), 401, "API key has expired", "UNAUTHORIZED"),
        (
            org.headers(key(org, ["invoices:read"])["key"]),
            403,
            "API key does not have the required permission: customers:read",
            "FORBIDDEN",
        ),
    ]
    for headers, status, message, code in cases:
        r = c.get("/v1/customers", headers=headers)
        assert (r.status_code, r.json()) == (status, {"error": {"message": message, "code": code}})
    sandbox = c.get("/v1/customers", headers={"Authorization": "Bearer mk_test_" + "0" * 48})
    assert sandbox.status_code == 401  # a sandbox key is refused by production


def test_monk_per_ip_minute_limit_with_the_events_endpoint_exempt(profile: Profile) -> None:
    org = profile("monk")
    c = org.client
    events = key(org, ["usage:write"])
    reader = key(org, ["customers:read"])
    for _ in range(150):  # unlimited: and spends nothing of the address's minute
        assert c.post("/v1/events", headers=org.headers(events["key"])).status_code == 200
    # This address has spent 2 of its 100 on the two key creations above.
    answers = [c.get("/v1/customers", headers=org.headers(reader["key"])) for _ in range(99)]
    assert [a.status_code for a in answers] == [200] * 98 + [429]
    refused = answers[-1]
    assert refused.json() == {
        "error": {
            "message": "Rate limit exceeded. Please retry after some time.",
            "code": "RATE_LIMITED",
        }
    }
    assert int(refused.headers["retry-after"]) >= 1
    assert c.post("/v1/events", headers=org.headers(events["key"])).status_code == 200


# --- mon_ tokens, the space header, the root echo -----------------------------------------


def test_monime_root_echo_space_header_and_intersection(profile: Profile) -> None:
    org = profile("monime")
    c = org.client
    anonymous = c.get("/", headers={"Accept": "application/json"}).json()
    assert anonymous == {
        "platform": "Monime - Ⓜ️",
        "tagline": "APIs Beyond Payments ⚡️⚙️💰️",
        "status": {"environment": None, "isAuthenticated": False},
        "apiVersion": None,
        "requestOrigin": {"country": None, "ipAddress": "testclient"},
    }
    assert org.owner_key.startswith("mon_") and not org.owner_key.startswith("mon_test_")
    assert org.owner_test_key.startswith("mon_test_")
    space = {"Monime-Space-Id": org.space_id}
    for credential, environment in ((org.owner_test_key, "test"), (org.owner_key, "live")):
        echo = c.get("/", headers={"Authorization": f"Bearer {credential}", **space}).json()
        assert echo["status"] == {"environment": environment, "isAuthenticated": True}
        assert echo["apiVersion"] == {
            "id": "caph.2025-06-20",
            "release": {"name": "caph", "date": "2025-06-20"},
            "deprecated": False,
            "apiSchemas": {
                "openApi": "https://github.com/monimesl/monime-developer-apis/blob/main/"
                "api-versions/-/specifications/openapi.yaml"
            },
        }
    # The Quick Token Test: a token is space-agnostic, and the echo acts in no space.
    for credential, environment in ((org.owner_test_key, "test"), (org.owner_key, "live")):
        echo = c.get("/", headers={"Authorization": f"Bearer {credential}"}).json()
        assert echo["status"] == {"environment": environment, "isAuthenticated": True}
    # Every request that acts on data names its space.
    r = c.get("/v1/customers", headers=org.headers())
    assert (r.status_code, r.json()["reason"]) == (400, "MISSING_SPACE")
    # Effective access: the token's scopes ∩ the user's role in the space it targets.
    owner = {**org.headers(), **space}
    other = c.post("/v1/spaces", headers=owner, json={"name": "Shop"}).json()
    viewer = c.post(
        "/v1/users",
        headers=owner,
        json={"email": "viewer@example.test", "role": "viewer", "space_id": other["id"]},
    ).json()
    token = c.post(
        "/v1/keys", headers=owner, json={"name": "shop", "scopes": ["*"], "user_id": viewer["id"]}
    ).json()["key"]
    in_shop = {"Authorization": f"Bearer {token}", "Monime-Space-Id": other["id"]}
    assert c.get("/v1/customers", headers=in_shop).json()["space"] == other["id"]
    assert c.post("/v1/customers", headers=in_shop).status_code == 403
    elsewhere = c.get("/v1/customers", headers={**in_shop, "Monime-Space-Id": org.space_id})
    assert elsewhere.status_code == 403
