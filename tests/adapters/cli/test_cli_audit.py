"""``apiward audit``: the audit log from the command line, filtered, as a table or JSON."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from apiward.adapters.cli.main import app
from tests.adapters.cli.conftest import run


@pytest.fixture(autouse=True)
def env(cli_env: dict[str, str]) -> None:
    """Every test here runs on the CLI environment."""


@pytest.fixture
def key_id() -> str:
    run("init", "--org-name", "Acme", "--email", "o@acme.test", "--password", "long password 1")
    created = json.loads(run("keys", "create", "--name", "ci", "--scope", "keys:read", "--json"))
    run("keys", "revoke", created["id"])
    run("keys", "create", "--name", "t", "--scope", "keys:read", "--env", "test")
    run("keys-rotate")
    key: str = created["id"]
    return key


def test_audit_lists_every_event_newest_first_as_json(key_id: str) -> None:
    data = json.loads(run("audit", "--json"))
    types = [e["type"] for e in data["items"]]
    assert types[0] == "signing_key.rotated"
    assert types.count("key.created") == 3  # the owner key, ci and t
    assert "key.revoked" in types and data["total"] == len(types)
    rotated = data["items"][0]
    assert rotated["actor_credential_id"] == "cli" and rotated["user_agent"] == "apiward-cli"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--type", "key.revoked"], ["key.revoked"]),
        (["--credential", "{key_id}"], ["key.revoked", "key.created"]),
        (["--target", "{key_id}"], ["key.revoked", "key.created"]),
        (["--env", "test", "--type", "key.created"], ["key.created"]),
        (["--since", "1h", "--type", "key.revoked"], ["key.revoked"]),
        (["--until", "2000-01-01T00:00:00Z"], []),
        (["--type", "key.created", "--page-size", "1", "--page", "3"], ["key.created"]),
    ],
)
def test_audit_filters(key_id: str, args: list[str], expected: list[str]) -> None:
    data = json.loads(run("audit", "--json", *[a.format(key_id=key_id) for a in args]))
    assert [e["type"] for e in data["items"]] == expected


def test_audit_prints_a_table(key_id: str) -> None:
    output = run("audit", "--type", "key.revoked")
    assert "key.revoked" in output and "1 event(s)" in output and key_id in output


def test_a_bad_time_is_refused_with_the_way_to_write_it(key_id: str) -> None:
    result = CliRunner().invoke(app, ["audit", "--since", "yesterday"])
    assert result.exit_code == 2 and "24h" in result.output
