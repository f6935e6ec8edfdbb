"""``apiward keys import``: keys of another system, brought by hash, work over HTTP."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from apiward.adapters.cli.main import app
from apiward.adapters.settings import Settings
from tests.conftest import Org, fast_settings

PREFIXES = ["sk_live_", "sk_test_"]
HEX_KEY = "sk_live_4f3c2b1a0d9e8f7a6b5c4d3e2f1a0b9c"
B64_KEY = "sk_live_Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3Jh"
TEST_KEY = "sk_test_0123456789abcdef0123456789abcdef"


@pytest.fixture
def settings(sqlite_url: str) -> Settings:
    """The server of the ``org`` fixture, configured to accept the imported prefixes."""
    return fast_settings(database_url=sqlite_url, imported_key_prefixes=PREFIXES)


@pytest.fixture(autouse=True)
def env(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI works on the same database as the server."""
    for name, value in {
        "APIWARD_DATABASE_URL": sqlite_url,
        "APIWARD_LOG_LEVEL": "warning",
        "APIWARD_SECRET_KEY": "test-secret-that-is-at-least-32-bytes-long",
        "APIWARD_IMPORTED_KEY_PREFIXES": json.dumps(PREFIXES),
    }.items():
        monkeypatch.setenv(name, value)


def hashed(plaintext: str, encoding: str = "hex", **fields: Any) -> str:
    raw = hashlib.sha256(plaintext.encode()).digest()
    item: dict[str, Any] = {
        "hash": raw.hex() if encoding == "hex" else base64.b64encode(raw).decode(),
        "hash_encoding": encoding,
        "prefix": plaintext[:8],
        "last4": plaintext[-4:],
        "name": "migrated",
        "scopes": ["keys:read"],
        **fields,
    }
    return json.dumps(item)


def write(path: Path, *lines: str) -> str:
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def flat(result: Result) -> str:
    """The output with the console's line wrapping undone."""
    return " ".join(result.output.split())


def test_imported_keys_authenticate_over_http(org: Org, tmp_path: Path) -> None:
    file = write(
        tmp_path / "keys.jsonl",
        hashed(HEX_KEY, external_id="unkey_key_1"),
        hashed(B64_KEY, "base64"),
        hashed(TEST_KEY, environment="test"),
    )
    result = cli("keys", "import", file, "--org", org.id)
    assert result.exit_code == 0, result.output
    assert "Imported 3 key(s) in 1 batch(es); skipped 0 duplicate(s); 0 error(s)." in flat(result)

    for key in (HEX_KEY, B64_KEY):
        r = org.client.get("/v1/keys", headers=org.headers(key))
        assert r.status_code == 200, r.text
        hints = {k["hint"] for k in r.json()["items"]}
        assert {f"sk_live_...{HEX_KEY[-4:]}", f"sk_live_...{B64_KEY[-4:]}"} <= hints
    r = org.client.get("/v1/keys", headers=org.headers(TEST_KEY))
    assert (
        r.status_code == 200
        and [k["hint"] for k in r.json()["items"]].count(f"sk_test_...{TEST_KEY[-4:]}") == 1
    )
    assert org.client.get("/v1/users", headers=org.headers(HEX_KEY)).status_code == 403

    audit = org.client.get("/v1/audit-events?type=key.imported", headers=org.headers()).json()
    (event,) = audit["items"]
    assert event["data"]["count"] == 3
    assert {"unkey_key_1"} == {
        k["external_id"] for k in event["data"]["keys"] if "external_id" in k
    }


def test_a_malformed_line_names_its_line_and_nothing_is_imported(org: Org, tmp_path: Path) -> None:
    file = write(
        tmp_path / "keys.jsonl",
        hashed(HEX_KEY),
        '{"hash": "' + "a" * 63 + '", "prefix": "sk_live_", "scopes": ["keys:read"]}',
        hashed(B64_KEY, "base64", expires_at="yesterday"),
    )
    result = cli("keys", "import", file)
    assert result.exit_code == 1
    assert "line 2: hash must be a SHA-256 digest in 64 hexadecimal characters" in flat(result)
    assert "line 3: expires_at 'yesterday' is not an ISO time" in flat(result)
    assert "2 of 3 line(s) are invalid; nothing was imported" in flat(result)
    assert org.client.get("/v1/keys", headers=org.headers(HEX_KEY)).status_code == 401
    listed = org.client.get("/v1/keys", headers=org.headers()).json()
    assert listed["total"] == 1  # the owner's key only

    as_json = cli("keys", "import", file, "--json")
    assert as_json.exit_code == 1
    report = json.loads(as_json.stdout)
    assert report["ok"] is False and report["imported"] == 0 and report["errors"] == 2
    assert [e["line"] for e in report["error_lines"]] == [2, 3]


def test_duplicates_are_skipped_and_counted(org: Org, tmp_path: Path) -> None:
    file = write(tmp_path / "keys.jsonl", hashed(HEX_KEY), hashed(B64_KEY, "base64"))
    assert cli("keys", "import", file).exit_code == 0
    again = write(
        tmp_path / "again.jsonl",
        hashed(HEX_KEY, "base64"),  # the same key, its hash spelled in base64
        hashed(TEST_KEY, environment="test"),
        hashed(B64_KEY, "base64"),
        hashed(TEST_KEY, environment="test"),
    )
    result = cli("keys", "import", again, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["imported"], report["duplicates"], report["errors"]) == (1, 3, 0)
    assert [d["line"] for d in report["duplicate_lines"]] == [1, 3, 4]
    text = cli("keys", "import", again)
    assert "Imported 0 key(s) in 0 batch(es); skipped 4 duplicate(s)" in flat(text)
    assert org.client.get("/v1/keys", headers=org.headers(TEST_KEY)).status_code == 200


def test_a_foreign_prefix_not_listed_is_still_refused_offline(org: Org, tmp_path: Path) -> None:
    foreign = "rk_live_0123456789abcdef0123456789abcdef"
    result = cli("keys", "import", write(tmp_path / "keys.jsonl", hashed(foreign)))
    assert result.exit_code == 0
    assert "rk_live_ are refused until the server lists them" in flat(result)

    cache = org.runtime.cache
    misses = cache.misses
    r = org.client.get("/v1/keys", headers=org.headers(foreign))
    assert r.status_code == 401 and r.json()["reason"] == "INVALID_KEY"
    assert cache.misses == misses  # refused by the checksum check: no cache or store look-up


def test_by_default_every_key_is_checked_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APIWARD_IMPORTED_KEY_PREFIXES")
    assert fast_settings().imported_key_prefixes == []


def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = cli("keys", "import", str(tmp_path / "nope.jsonl"))
    assert result.exit_code == 2 and "nope.jsonl: no such file" in flat(result)


@pytest.mark.parametrize("prefix", ["aw_", "aw", "aw_live_", "", "sk live"])
def test_an_imported_prefix_may_not_cover_our_own_keys(prefix: str) -> None:
    with pytest.raises(ValueError, match="imported key prefix"):
        fast_settings(imported_key_prefixes=[prefix])


@pytest.mark.parametrize("expiry", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"])
def test_an_expiry_out_of_range_names_its_line(org: Org, tmp_path: Path, expiry: str) -> None:
    file = write(tmp_path / "keys.jsonl", hashed(HEX_KEY, expires_at=expiry))
    result = CliRunner().invoke(app, ["keys", "import", file])
    assert result.exit_code == 1, result.output
    assert (
        "line 1: expires_at must be between 1970-01-01T00:00:00Z and 9000-01-01T00:00:00Z"
        in flat(result)
    )
