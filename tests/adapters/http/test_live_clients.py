"""Real clients against a real server on a loopback port: the Monogoto quickstart,
Authlib's OAuth 2.0 client, and PyJWT's PyJWKClient verifying tokens offline."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from authlib.integrations.httpx_client import OAuth2Client
from fastapi import FastAPI

from apiward.adapters.runtime import build
from apiward.server import Principal, create_app, require
from tests.conftest import fast_settings
from tests.live import free_port, serve

PASSWORD = "correct horse battery"
QUICKSTART = Path(__file__).parents[2] / "fixtures" / "monogoto_quickstart.py"


def things_app(db: Path, port: int) -> FastAPI:
    settings = fast_settings(
        database_url=f"sqlite+aiosqlite:///{db}",
        access_token_ttl_seconds=4 * 3600,
        public_url=f"http://127.0.0.1:{port}",  # where the metadata's endpoints point
    )

    async def bootstrap() -> None:
        runtime = build(settings)
        await runtime.start(background=False)
        try:
            await runtime.tenancy.bootstrap("Monogoto", "you@example.com", PASSWORD)
        finally:
            await runtime.stop()

    asyncio.run(bootstrap())
    app = create_app(settings)

    @app.get("/v1/things")
    async def things(principal: Principal = require("things:read")) -> dict[str, Any]:
        items = [{"iccid": "89370100002471565102", "name": "Device-001", "status": "active"}]
        return {"items": items, "total": 1, "page": 1, "page_size": 20}

    return app


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[str, FastAPI]]:
    port = free_port()
    app = things_app(tmp_path / "live.db", port)
    with serve(app, port) as base:
        yield base, app


def test_monogoto_quickstart_runs_unchanged(live: tuple[str, FastAPI]) -> None:
    base, _ = live
    env = {
        **os.environ,
        "MONOGOTO_BASE_URL": base,
        "MONOGOTO_USER": "you@example.com",
        "MONOGOTO_PASS": PASSWORD,
    }
    out = subprocess.run(
        [sys.executable, str(QUICKSTART)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.splitlines() == [
        "Found 1 SIM(s):",
        " 89370100002471565102 Device-001 [active]",
    ]


def test_authlib_password_refresh_revoke_introspect(live: tuple[str, FastAPI]) -> None:
    base, _ = live
    with OAuth2Client(token_endpoint=f"{base}/v1/auth/token") as oauth:
        token = oauth.fetch_token(
            f"{base}/v1/auth/token",
            username="you@example.com",
            password=PASSWORD,
            grant_type="password",
        )
        assert token["token_type"] == "Bearer"
        assert oauth.get(f"{base}/v1/things").json()["total"] == 1
        refreshed = oauth.refresh_token(
            f"{base}/v1/auth/token", refresh_token=token["refresh_token"]
        )
        assert refreshed["refresh_token"] != token["refresh_token"]
        assert oauth.get(f"{base}/v1/things").status_code == 200
        assert (
            oauth.revoke_token(
                f"{base}/v1/auth/revoke", refreshed["access_token"], token_type_hint="access_token"
            ).status_code
            == 200
        )
        assert oauth.get(f"{base}/v1/things").status_code == 401


def test_authlib_client_credentials_and_pyjwkclient(live: tuple[str, FastAPI]) -> None:
    base, _ = live
    with OAuth2Client(token_endpoint=f"{base}/v1/auth/token") as owner:
        owner.fetch_token(username="you@example.com", password=PASSWORD, grant_type="password")
        created = owner.post(
            f"{base}/v1/clients", json={"name": "partner", "scopes": ["things:read"]}
        ).json()
    with OAuth2Client(
        created["client_id"],
        created["client_secret"],
        token_endpoint_auth_method="client_secret_basic",
    ) as client:
        token = client.fetch_token(f"{base}/v1/auth/token", grant_type="client_credentials")
        assert token["expires_in"] == 4 * 3600
        assert "refresh_token" not in token
        assert client.get(f"{base}/v1/things").status_code == 200
        introspected = client.post(
            f"{base}/v1/auth/introspect",
            data={"token": token["access_token"]},
            auth=(created["client_id"], created["client_secret"]),
        )
        assert introspected.json()["active"] is True

    meta = httpx.get(f"{base}/.well-known/oauth-authorization-server").json()
    jwks = jwt.PyJWKClient(meta["jwks_uri"])
    signing_key = jwks.get_signing_key_from_jwt(token["access_token"])
    claims = jwt.decode(
        token["access_token"],
        signing_key.key,
        algorithms=["ES256"],
        audience=meta["issuer"],
        issuer=meta["issuer"],
    )
    assert claims["client_id"] == created["client_id"]
    assert claims["scope"] == "things:read"
