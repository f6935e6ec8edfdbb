"""A change of key format (a profile's prefix, alphabet or length) applies to new keys:
keys, client secrets and refresh tokens issued in an earlier format keep working, and
the CLI's key list says which format each key is of (docs/operations.md)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from apiward.adapters.http.app import create_app
from apiward.adapters.settings import Settings
from apiward.adapters.storage.sql import create_engine
from tests.adapters.cli.conftest import run
from tests.conftest import bootstrap, fast_settings

MONK = {"key_prefix": "mk", "key_alphabet": "hex", "key_random_length": 40}
"""A profile's format: another prefix, alphabet and length than the default's."""
SAME_PREFIX = {"key_alphabet": "urlsafe", "key_random_length": 40}
"""The default prefix, spelt otherwise: only the checksum tells the formats apart."""
PASSWORD = "correct horse battery"


def _echo(client: TestClient, key: str) -> bool:
    answer = client.get("/", headers={"Authorization": f"Bearer {key}"}).json()
    return bool(answer["status"]["isAuthenticated"])


def _verify(client: TestClient, verifier: str, key: str) -> bool:
    headers = {"Authorization": f"Bearer {verifier}"}
    r = client.post("/v1/keys/verify", headers=headers, json={"key": key})
    assert r.status_code == 200, r.text
    return bool(r.json()["valid"])


def _issue(settings: Settings) -> dict[str, Any]:
    """An organisation, a key, an OAuth client and a signed-in user's tokens, made in the
    format of ``settings``."""
    with TestClient(create_app(settings)) as c:
        org = bootstrap(c)
        key = org.create_key(["things:read"])["key"]
        client = c.post(
            "/v1/clients", headers=org.headers(), json={"name": "c", "scopes": ["things:read"]}
        ).json()
        tokens = c.post(
            "/v1/auth/token", json={"username": "owner@acme.test", "password": PASSWORD}
        ).json()
        return {
            "org": org.id,
            "owner": org.owner_key,
            "key": key,
            "client": client,
            "refresh": tokens["refresh_token"],
        }


@pytest.mark.parametrize("change", [MONK, SAME_PREFIX], ids=["new-prefix", "same-prefix"])
def test_keys_of_an_earlier_format_keep_working_after_the_format_changes(
    database_url: str, change: dict[str, Any]
) -> None:
    before = _issue(fast_settings(database_url=database_url))
    with TestClient(create_app(fast_settings(database_url=database_url, **change))) as c:
        assert _echo(c, before["key"]) is True
        assert _verify(c, before["owner"], before["key"])
        grant = {
            "grant_type": "client_credentials",
            "client_id": before["client"]["client_id"],
            "client_secret": before["client"]["client_secret"],
        }
        assert c.post("/v1/auth/token", data=grant).status_code == 200
        refreshed = c.post(
            "/v1/auth/token",
            data={"grant_type": "refresh_token", "refresh_token": before["refresh"]},
        )
        assert refreshed.status_code == 200, refreshed.text
        # New credentials are of the new format only.
        headers = {"Authorization": f"Bearer {before['owner']}"}
        new = c.post(
            "/v1/keys", headers=headers, json={"name": "n", "scopes": ["things:read"]}
        ).json()["key"]
        runtime = c.app.state.runtime  # type: ignore[attr-defined]
        assert runtime.formats.current.parse(new)
        assert refreshed.json()["refresh_token"].startswith(runtime.formats.current.prefix)
        # A key of the earlier format cut short or mistyped is still refused offline.
        assert _echo(c, before["key"][:-1]) is False
        assert _echo(c, before["key"][:-1] + ("0" if before["key"][-1] != "0" else "1")) is False


def test_a_key_list_names_the_format_of_keys_of_an_earlier_one(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = cli_env["APIWARD_DATABASE_URL"]
    _issue(fast_settings(database_url=url))
    run("keys", "list")  # one format only: no format column
    assert "format" not in run("keys", "list")
    with TestClient(create_app(fast_settings(database_url=url, **MONK))):
        pass  # a server start under the new format records it
    for name, value in MONK.items():
        monkeypatch.setenv(f"APIWARD_{name.upper()}", str(value))
    listing = run("keys", "list", "--json")
    formats = {k["hint"][:8]: k["format"] for k in json.loads(listing)["items"]}
    assert formats == {"aw_live_": "earlier", "aw_test_": "earlier"}
    table = run("keys", "list")
    assert "format" in table and "earlier" in table


def test_a_start_names_keys_of_a_format_it_never_recorded_and_refuses_them(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _issue(fast_settings(database_url=database_url))

    async def forget() -> None:  # as a deployment changed before formats were recorded
        engine = create_engine(database_url)
        async with engine.begin() as conn:
            await conn.execute(sa.text("DELETE FROM key_formats"))
        await engine.dispose()

    asyncio.run(forget())
    settings = fast_settings(database_url=database_url, log_level="info", **MONK)
    capsys.readouterr()
    with TestClient(create_app(settings)) as c:
        assert _echo(c, before["key"]) is False
    lines = capsys.readouterr().out.splitlines()
    warned = [line for line in lines if "keys_of_unrecorded_format" in line]
    assert warned, lines
    assert "aw_live_" in warned[0] and "imported_key_prefixes" in warned[0]
