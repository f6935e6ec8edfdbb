"""Which organisation a command acts on: the first one made unless --org or APIWARD_ORG
names another, so the README's commands keep working once customers sign up."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from apiward.adapters.cli.main import app
from tests.adapters.cli.conftest import init, run


def _init(name: str, *extra: str) -> dict[str, str]:
    org: dict[str, str] = init(name, *extra)["org"]
    return org


def _key_names(*args: str) -> tuple[list[str], str]:
    result = CliRunner().invoke(app, ["keys", "list", "--json", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return [k["name"] for k in json.loads(result.stdout)["items"]], result.stderr


def test_the_first_organisation_is_the_default_and_says_so(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _init("Acme")
    names, note = _key_names()
    assert names == ["owner key"] and note == ""  # one organisation: nothing to say

    second = _init("Beta", "--new-org")
    run("keys", "create", "--name", "beta-only", "--scope", "keys:read", "--org", "Beta", "--json")

    names, note = _key_names()
    assert names == ["owner key"]
    assert first["id"] in note and "--org" in note

    assert "beta-only" in _key_names("--org", second["id"])[0]
    assert "beta-only" in _key_names("--org", "Beta")[0]
    monkeypatch.setenv("APIWARD_ORG", "Beta")
    names, note = _key_names()
    assert "beta-only" in names and note == ""

    unknown = CliRunner().invoke(app, ["keys", "list", "--org", "Nope"])
    assert unknown.exit_code == 1 and "Nope" in unknown.output


def test_unattributed_usage_needs_no_organisation(cli_env: dict[str, str]) -> None:
    _init("Acme")
    _init("Beta", "--new-org")
    result = CliRunner().invoke(app, ["usage", "--unattributed", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "slots" in json.loads(result.stdout)
    assert result.stderr == ""


def test_a_command_before_init_says_to_run_init(cli_env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["keys", "list"])
    assert result.exit_code == 1
    assert "No organisation exists yet: run 'apiward init'." in result.output
    assert "with id" not in result.output
