"""Leaked-credential reports in GitHub's secret scanning partner format, and the CLI's."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from httpx import Response
from typer.testing import CliRunner

from apiward.adapters.cli.main import app as cli
from apiward.adapters.http.app import create_app
from apiward.core.keys import KeyFormat
from tests.conftest import Org, bootstrap, fast_settings

KEY_ID = "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a"
SECRET = "test-secret-that-is-at-least-32-bytes-long"


def _pem(key: ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="module")
def github_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'leaks.db'}"


@pytest.fixture
def org(db: str, github_key: ec.EllipticCurvePrivateKey) -> Iterator[Org]:
    settings = fast_settings(database_url=db, leak_report_public_keys={KEY_ID: _pem(github_key)})
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield bootstrap(client)


def signature(key: ec.EllipticCurvePrivateKey, body: bytes) -> str:
    return base64.b64encode(key.sign(body, ec.ECDSA(hashes.SHA256()))).decode()


def report(
    org: Org,
    matches: Any,
    key: ec.EllipticCurvePrivateKey,
    *,
    key_id: str = KEY_ID,
    body: bytes | None = None,
) -> Response:
    raw = body if body is not None else json.dumps(matches).encode()
    response: Response = org.client.post(
        "/v1/leaks/github",
        content=raw,
        headers={
            "Content-Type": "application/json",
            "Github-Public-Key-Identifier": key_id,
            "Github-Public-Key-Signature": signature(key, raw),
        },
    )
    return response


def match(token: str) -> dict[str, str]:
    return {
        "token": token,
        "type": "apiward_api_key",
        "url": "https://github.com/octocat/hello/blob/abc/config.py",
        "source": "content",
    }


def test_a_reported_key_is_revoked_and_then_refused(
    org: Org, github_key: ec.EllipticCurvePrivateKey
) -> None:
    leaked = org.create_key(["keys:read"])
    assert org.client.get("/v1/keys", headers=org.headers(leaked["key"])).status_code == 200
    r = report(org, [match(leaked["key"])], github_key)
    assert r.status_code == 200, r.text
    assert r.json() == [
        {"token_raw": leaked["key"], "token_type": "apiward_api_key", "label": "true_positive"}
    ]
    assert r.headers["cache-control"] == "no-store"
    refused = org.client.get("/v1/keys", headers=org.headers(leaked["key"]))
    assert refused.status_code == 401
    assert refused.json()["message"] == "API key has been revoked"
    events = org.client.get(
        "/v1/audit-events", headers=org.headers(), params={"target_id": leaked["id"]}
    ).json()["items"]
    assert [e["type"] for e in events] == ["key.leaked", "key.revoked", "key.created"]
    leak = events[0]
    assert leak["data"]["url"] == "https://github.com/octocat/hello/blob/abc/config.py"
    assert leak["data"]["source"] == "content" and leak["data"]["revoked"] is True
    assert leak["actor_credential_id"] == "github-secret-scanning"
    assert leak["request_id"] and leak["data"]["last4"] == leaked["key"][-4:]
    assert leaked["key"] not in json.dumps(leak)


def test_false_positives_are_labelled_and_change_nothing(
    org: Org, github_key: ec.EllipticCurvePrivateKey
) -> None:
    kept = org.create_key(["keys:read"])
    ours = KeyFormat()
    never_issued = ours.generate("live")  # the right shape and checksum, but no such key
    bad_checksum = kept["key"][:-1] + ("A" if kept["key"][-1] != "A" else "B")
    other_instance = KeyFormat(prefix="mon").generate("live")
    tokens = [never_issued, bad_checksum, other_instance, "not-a-key-at-all"]
    r = report(org, [match(t) for t in tokens], github_key)
    assert r.status_code == 200
    assert [x["label"] for x in r.json()] == ["false_positive"] * 4
    assert [x["token_raw"] for x in r.json()] == tokens
    assert org.client.get("/v1/keys", headers=org.headers(kept["key"])).status_code == 200
    leaks = org.client.get(
        "/v1/audit-events", headers=org.headers(), params={"type": "key.leaked"}
    ).json()
    assert leaks["total"] == 0


def test_a_mixed_report_answers_every_match_in_order(
    org: Org, github_key: ec.EllipticCurvePrivateKey
) -> None:
    one, two = org.create_key(["keys:read"]), org.create_key(["keys:read"])
    tokens = [one["key"], "nope", two["key"], one["key"]]
    r = report(org, [match(t) for t in tokens], github_key)
    labels = [x["label"] for x in r.json()]
    assert labels == ["true_positive", "false_positive", "true_positive", "true_positive"]
    for key in (one, two):
        assert org.client.get("/v1/keys", headers=org.headers(key["key"])).status_code == 401


def test_an_already_revoked_key_is_still_a_true_positive(
    org: Org, github_key: ec.EllipticCurvePrivateKey
) -> None:
    key = org.create_key(["keys:read"])
    org.client.post(f"/v1/keys/{key['id']}/revoke", headers=org.headers())
    r = report(org, [match(key["key"])], github_key)
    assert r.json()[0]["label"] == "true_positive"
    events = org.client.get(
        "/v1/audit-events", headers=org.headers(), params={"type": "key.leaked"}
    ).json()["items"]
    assert events[0]["data"]["revoked"] is False


def test_a_leaked_client_secret_revokes_the_client_and_its_tokens(
    org: Org, github_key: ec.EllipticCurvePrivateKey
) -> None:
    created = org.client.post(
        "/v1/clients", headers=org.headers(), json={"name": "ci", "scopes": ["keys:read"]}
    ).json()
    grant = {
        "grant_type": "client_credentials",
        "client_id": created["client_id"],
        "client_secret": created["client_secret"],
    }
    token = org.client.post("/v1/auth/token", json=grant).json()["access_token"]
    assert created["client_secret"].startswith("awcs_")
    r = report(org, [match(created["client_secret"])], github_key)
    assert r.json()[0]["label"] == "true_positive"
    refused = org.client.post("/v1/auth/token", json=grant)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    assert org.client.get("/v1/keys", headers=org.headers(token)).status_code == 401
    client = org.client.get(f"/v1/clients/{created['client_id']}", headers=org.headers())
    assert client.json()["state"] == "revoked"


def test_a_leaked_refresh_token_revokes_its_session(
    org: Org, github_key: ec.EllipticCurvePrivateKey
) -> None:
    login = {"username": "owner@acme.test", "password": "correct horse battery"}
    pair = org.client.post("/v1/auth/token", json=login).json()
    assert pair["refresh_token"].startswith("awrt_")
    r = report(org, [match(pair["refresh_token"])], github_key)
    assert r.json()[0]["label"] == "true_positive"
    refreshed = org.client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 401 and "revoked" in refreshed.json()["error_description"]
    assert org.client.get("/v1/keys", headers=org.headers(pair["access_token"])).status_code == 401


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "Github-Public-Key-Identifier"),
        ({"Github-Public-Key-Identifier": KEY_ID}, "Github-Public-Key-Signature"),
        (
            {"Github-Public-Key-Identifier": KEY_ID, "Github-Public-Key-Signature": "!!!"},
            "does not match",
        ),
    ],
)
def test_missing_or_garbled_signatures_are_refused(
    org: Org, headers: dict[str, str], message: str
) -> None:
    key = org.create_key(["keys:read"])
    r = org.client.post("/v1/leaks/github", json=[match(key["key"])], headers=headers)
    assert r.status_code == 401 and r.json()["reason"] == "INVALID_SIGNATURE"
    assert message in r.json()["message"]
    assert org.client.get("/v1/keys", headers=org.headers(key["key"])).status_code == 200


def test_a_signature_by_another_key_or_of_another_body_is_refused(
    org: Org, github_key: ec.EllipticCurvePrivateKey
) -> None:
    key = org.create_key(["keys:read"])
    body = json.dumps([match(key["key"])]).encode()
    impostor = ec.generate_private_key(ec.SECP256R1())
    assert report(org, None, impostor, body=body).status_code == 401
    signed_other = signature(github_key, body + b" ")
    r = org.client.post(
        "/v1/leaks/github",
        content=body,
        headers={
            "Github-Public-Key-Identifier": KEY_ID,
            "Github-Public-Key-Signature": signed_other,
        },
    )
    assert r.status_code == 401 and "does not match" in r.json()["message"]
    assert org.client.get("/v1/keys", headers=org.headers(key["key"])).status_code == 200


def test_an_unknown_key_identifier_is_refused(
    org: Org, github_key: ec.EllipticCurvePrivateKey
) -> None:
    key = org.create_key(["keys:read"])
    r = report(org, [match(key["key"])], github_key, key_id="f" * 64)
    assert r.status_code == 401 and "Unknown public key identifier" in r.json()["message"]
    assert org.client.get("/v1/keys", headers=org.headers(key["key"])).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b'{"token": "aw_live_x"}',
        b"[1, 2]",
        b'[{"type": "x"}]',
        b'[{"token": ""}]',
        b'[{"token": "aw_live_x", "url": 5}]',
        json.dumps([{"token": "x"}] * 1001).encode(),
    ],
)
def test_a_malformed_signed_body_is_a_400(
    org: Org, github_key: ec.EllipticCurvePrivateKey, body: bytes
) -> None:
    r = report(org, None, github_key, body=body)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "BAD_REQUEST"


def test_without_configured_keys_every_report_is_refused(
    db: str, github_key: ec.EllipticCurvePrivateKey
) -> None:
    with TestClient(create_app(fast_settings(database_url=db))) as client:
        org = bootstrap(client)
        r = report(org, [match(org.owner_key)], github_key)
        assert r.status_code == 401 and "APIWARD_LEAK_REPORT_PUBLIC_KEYS" in r.json()["message"]


def test_a_bad_configured_public_key_fails_at_start() -> None:
    rsa_like = "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n"
    with pytest.raises(ValueError, match="not a PEM public key"):
        fast_settings(leak_report_public_keys={"k": rsa_like})
    p384 = _pem(ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(ValueError, match="not an ECDSA P-256 key"):
        fast_settings(leak_report_public_keys={"k": p384})


def test_the_cli_reports_a_leak_the_same_way(
    db: str, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "APIWARD_DATABASE_URL": db,
        "APIWARD_SECRET_KEY": SECRET,
        "APIWARD_LOG_LEVEL": "warning",
    }.items():
        monkeypatch.setenv(name, value)
    key = org.create_key(["keys:read"])
    runner = CliRunner()
    result = runner.invoke(
        cli, ["keys", "report-leak", key["key"], "--url", "https://paste.example/1", "--json"]
    )
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.output)
    assert verdict["label"] == "true_positive" and verdict["revoked"] is True
    assert verdict["credential_id"] == key["id"] and verdict["kind"] == "api_key"
    # The CLI's revocation reaches the server through the invalidation log.
    assert org.client.portal.call(org.runtime.invalidations.poll) >= 1  # type: ignore[union-attr]
    refused = org.client.get("/v1/keys", headers=org.headers(key["key"]))
    assert refused.json()["message"] == "API key has been revoked"
    leak = org.client.get(
        "/v1/audit-events", headers=org.headers(), params={"type": "key.leaked"}
    ).json()["items"][0]
    assert leak["actor_credential_id"] == "cli" and leak["data"]["url"] == "https://paste.example/1"

    again = runner.invoke(cli, ["keys", "report-leak", key["key"]])
    assert again.exit_code == 0 and "was already revoked" in again.output
    unknown = runner.invoke(cli, ["keys", "report-leak", "aw_live_nothing"])
    assert unknown.exit_code == 1 and "false positive" in unknown.output


def test_a_replayed_or_re_signed_report_is_recorded_once(
    org: Org, github_key: ec.EllipticCurvePrivateKey
) -> None:
    leaked = org.create_key(["keys:read"])
    body = json.dumps([match(leaked["key"])]).encode()
    first = report(org, None, github_key, body=body)
    # The same body again, and again with a fresh (equally valid) ECDSA signature.
    replays = [report(org, None, github_key, body=body) for _ in range(3)]
    assert first.status_code == 200
    assert all(r.json() == first.json() for r in replays)
    events = org.client.get(
        "/v1/audit-events", headers=org.headers(), params={"type": "key.leaked"}
    ).json()["items"]
    assert len(events) == 1 and events[0]["data"]["revoked"] is True
