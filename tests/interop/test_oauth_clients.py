"""Standard OAuth clients, unchanged, against a real `apiward serve` process: the most
used Node.js client (openid-client, with jose for the JWKS) and Authlib, through
discovery, client credentials, introspection, revocation and JWKS verification."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest
from authlib.integrations.httpx_client import OAuth2Client

from apiward.adapters.runtime import build
from tests.conftest import IN_CI, fast_settings
from tests.live import spawn_server

HERE = Path(__file__).parent
SCOPE = "things:read"


@dataclass
class Partner:
    base: str
    client_id: str
    client_secret: str


@pytest.fixture
def partner(tmp_path: Path) -> Iterator[Partner]:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'interop.db'}"

    async def prepare() -> tuple[str, str]:
        runtime = build(fast_settings(database_url=database_url))
        await runtime.start(background=False)
        try:
            boot = await runtime.tenancy.bootstrap("Acme", "o@acme.test", "correct horse battery")
            owner = await runtime.operators.principal(boot.org.id)
            made = await runtime.clients.create(owner, name="partner", scopes=[SCOPE])
            return made.client.id, made.secret
        finally:
            await runtime.stop()

    client_id, secret = asyncio.run(prepare())
    # `apiward serve --port N` with no APIWARD_ISSUER nor APIWARD_PUBLIC_URL: the issuer
    # and every metadata endpoint must follow the port.
    with spawn_server(database_url) as server:
        yield Partner(server.url, client_id, secret)


def node_client() -> list[str]:
    node = shutil.which("node")
    installed = (HERE / "node_modules" / "openid-client").exists()
    if node is None or not installed:
        message = (
            "Node.js or the interop packages are missing: install Node.js, then "
            "`npm ci --prefix tests/interop` to run these tests."
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return [node, str(HERE / "oauth_client.mjs")]


def test_node_openid_client_discovers_grants_introspects_revokes_and_verifies(
    partner: Partner,
) -> None:
    run = subprocess.run(
        [*node_client(), partner.base, partner.client_id, partner.client_secret, SCOPE],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    assert seen["issuer"] == partner.base
    assert seen["token_endpoint"] == f"{partner.base}/v1/auth/token"
    assert (seen["token_type"].lower(), seen["scope"]) == ("bearer", SCOPE)
    assert seen["introspected"] == {"active": True, "client_id": partner.client_id, "scope": SCOPE}
    assert seen["verified"] == {"sub": partner.client_id, "scope": SCOPE, "iss": partner.base}
    assert seen["after_revocation"] == {"active": False}


@pytest.mark.parametrize("method", ["client_secret_post", "client_secret_basic"])
def test_authlib_with_either_client_authentication(partner: Partner, method: str) -> None:
    meta = httpx.get(f"{partner.base}/.well-known/oauth-authorization-server").json()
    assert meta["issuer"] == partner.base
    for endpoint in ("revocation", "introspection"):
        assert method in meta[f"{endpoint}_endpoint_auth_methods_supported"]
    with OAuth2Client(
        partner.client_id, partner.client_secret, token_endpoint_auth_method=method
    ) as oauth:
        token = oauth.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
        introspected = oauth.introspect_token(
            meta["introspection_endpoint"], token=token["access_token"]
        ).json()
        assert introspected["active"] is True and introspected["client_id"] == partner.client_id
        key = jwt.PyJWKClient(meta["jwks_uri"]).get_signing_key_from_jwt(token["access_token"])
        claims = jwt.decode(
            token["access_token"], key.key, algorithms=["ES256"], audience=meta["issuer"]
        )
        assert claims["iss"] == partner.base
        revoked = oauth.revoke_token(meta["revocation_endpoint"], token=token["access_token"])
        assert revoked.status_code == 200
        again = oauth.introspect_token(meta["introspection_endpoint"], token=token["access_token"])
        assert again.json() == {"active": False}


def test_a_failed_basic_client_authentication_is_a_401_basic_challenge(partner: Partner) -> None:
    wrong = base64.b64encode(f"{partner.client_id}:wrong".encode()).decode()
    for path in ("/v1/auth/token", "/v1/auth/introspect", "/v1/auth/revoke"):
        r = httpx.post(
            f"{partner.base}{path}",
            data={"grant_type": "client_credentials", "token": "x"},
            headers={"Authorization": f"Basic {wrong}"},
        )
        assert r.status_code == 401, (path, r.text)
        assert r.headers["www-authenticate"].startswith("Basic"), path
        assert r.json()["error"] == "invalid_client"
