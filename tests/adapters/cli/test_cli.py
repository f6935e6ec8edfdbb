"""The CLI, driven the way an operator runs it: init, keys, and the server seeing the change."""

from __future__ import annotations

import json
import os
import re

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from apiward.adapters.cli.main import app
from apiward.adapters.http.app import create_app
from tests.adapters.cli.conftest import init, run
from tests.conftest import fast_settings


@pytest.fixture
def env(cli_env: dict[str, str]) -> dict[str, str]:
    return cli_env


def test_init_then_keys_lifecycle_seen_by_the_server(env: dict[str, str]) -> None:
    boot = init()
    assert boot["environments"] == ["live", "test"]
    assert boot["key"]["secret"].startswith("aw_live_")

    again = CliRunner().invoke(
        app,
        [
            "init",
            "--org-name",
            "Acme2",
            "--email",
            "o@acme.test",
            "--password",
            "correct horse battery",
        ],
    )
    assert again.exit_code == 1 and "already has an organisation" in again.output

    created = json.loads(
        run("keys", "create", "--name", "ci", "--scope", "keys:read", "--env", "test", "--json")
    )
    secret = created["key"]
    assert secret.startswith("aw_test_") and created["scopes"] == ["keys:read"]

    listed = json.loads(run("keys", "list", "--env", "test", "--json"))
    assert [k["id"] for k in listed["items"]] == [created["id"]]
    assert secret not in json.dumps(listed)
    assert "ci" in run("keys", "list", "--env", "test")

    settings = fast_settings(
        database_url=env["APIWARD_DATABASE_URL"], invalidation_poll_seconds=0.05
    )
    with TestClient(create_app(settings)) as client:
        auth = {"Authorization": f"Bearer {secret}"}
        assert client.get("/v1/keys", headers=auth).status_code == 200
        forbidden = client.get("/v1/users", headers=auth)
        assert forbidden.json()["message"].endswith("users:read")
        # Revoked from another process (the CLI): the server refuses it within the poll.
        run("keys", "revoke", created["id"])
        import time

        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            r = client.get("/v1/keys", headers=auth)
            if r.status_code == 401:
                break
            time.sleep(0.05)
        assert r.json()["message"] == "API key has been revoked"

    shown = json.loads(run("keys", "get", created["id"], "--json"))
    assert shown["state"] == "revoked"


def test_keys_update_disable_enable_roll(env: dict[str, str]) -> None:
    init()
    key = json.loads(run("keys", "create", "--name", "a", "--scope", "keys:read", "--json"))
    updated = json.loads(
        run(
            "keys",
            "update",
            key["id"],
            "--name",
            "b",
            "--scope",
            "spaces:read",
            "--allow-ip",
            "10.0.0.0/8",
            "--json",
        )
    )
    assert updated["name"] == "b" and updated["scopes"] == ["spaces:read"]
    assert updated["ip_allow"] == ["10.0.0.0/8"]
    assert json.loads(run("keys", "disable", key["id"], "--json"))["state"] == "disabled"
    assert json.loads(run("keys", "enable", key["id"], "--json"))["state"] == "active"
    rolled = json.loads(run("keys", "roll", key["id"], "--grace", "60", "--json"))
    assert rolled["key"] != key["key"] and rolled["name"] == "b"
    bad = CliRunner().invoke(app, ["keys", "create", "--name", "x", "--scope", "bad scope"])
    assert bad.exit_code == 1 and "resource:action" in bad.output
    assert os.environ["APIWARD_DATABASE_URL"] == env["APIWARD_DATABASE_URL"]


def test_clients_and_signing_key_rotation(env: dict[str, str]) -> None:
    init()
    created = json.loads(run("clients", "create", "--name", "ci", "--scope", "keys:read", "--json"))
    assert created["client_secret"].startswith("awcs_live_")
    listed = json.loads(run("clients", "list", "--json"))
    assert [c["client_id"] for c in listed] == [created["client_id"]]
    assert created["client_secret"] not in json.dumps(listed)
    revoked = json.loads(run("clients", "revoke", created["client_id"], "--json"))
    assert revoked[0]["state"] == "revoked"
    assert "New signing key: sig_" in run("keys-rotate")


def test_org_tiers_key_limits_and_credits(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "APIWARD_RATE_LIMITS", '[{"name": "org-hourly", "rate": "1000/hour", "key": "org"}]'
    )
    monkeypatch.setenv(
        "APIWARD_RATE_LIMIT_TIERS",
        '{"pro": {"limits": [{"name": "org-hourly", "rate": "50000/hour", "key": "org"}]}}',
    )
    init()
    shown = json.loads(run("org", "show", "--json"))
    assert shown["rate_tier"] is None and shown["rate_limits"][0]["limit"] == 1000
    moved = json.loads(run("org", "set-tier", "pro", "--json"))
    assert moved["rate_tier"] == "pro" and moved["rate_limits"][0]["limit"] == 50000
    assert json.loads(run("org", "set-tier", "default", "--json"))["rate_tier"] is None
    key = json.loads(
        run(
            "keys",
            "create",
            "--name",
            "metered",
            "--scope",
            "a:b",
            "--rate-limit",
            "per-key=10/minute",
            "--credits",
            "500",
            "--refill",
            "500/monthly",
            "--json",
        )
    )
    # Set by the operator (the CLI): it replaces the plan's limit of that name.
    limit = {
        "name": "per-key",
        "rate": "10/minute",
        "key": "credential",
        "mode": "enforce",
        "replaces_plan": True,
    }
    assert key["rate_limits"] == [limit]
    assert key["credits"] == {
        "remaining": 500,
        "refill": {"amount": 500, "interval": "monthly", "day": 1},
    }
    updated = json.loads(run("keys", "update", key["id"], "--credits", "7", "--json"))
    assert updated["credits"]["remaining"] == 7
    bad = CliRunner().invoke(
        app, ["keys", "create", "--name", "x", "--scope", "a:b", "--rate-limit", "oops"]
    )
    assert bad.exit_code == 2 and "NAME=RATE" in bad.output
    trial = ["--rate-limit", "per-key=10/minute", "--rate-limit", "trial=2/minute@ip:report"]
    tried = json.loads(run("keys", "update", key["id"], *trial, "--json"))
    assert [(r["name"], r["key"], r["mode"]) for r in tried["rate_limits"]] == [
        ("per-key", "credential", "enforce"),
        ("trial", "ip", "report"),
    ]
    odd = ["keys", "update", key["id"], "--rate-limit", "trial=2/minute:sometimes"]
    bad = CliRunner().invoke(app, odd)
    assert bad.exit_code == 2 and ":report" in bad.output


def test_at_80_columns_ids_are_whole_and_both_environments_are_listed(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    run(
        "init",
        "--org-name",
        "Acme",
        "--email",
        "o@acme.test",
        "--password",
        "correct horse battery",
    )
    scopes = ["--scope", "keys:read", "--scope", "customers:read", "--scope", "invoices:write"]
    made = [
        json.loads(
            run(
                "keys",
                "create",
                "--name",
                f"a rather long key name {env_}",
                *scopes,
                "--env",
                env_,
                "--json",
            )
        )
        for env_ in ("live", "test")
    ]
    shown = run("keys", "create", "--name", "one more with a long name", *scopes, "--env", "test")
    listed = run("keys", "list")
    assert max(len(line) for line in listed.splitlines()) <= 80
    for key in made:
        assert key["id"] in listed, listed  # whole, not key_U5U…
        assert key["hint"] in listed
    new_id = re.search(r"key_[A-Za-z0-9]+", shown)
    assert new_id is not None and len(new_id.group(0)) == len(made[0]["id"])
    only_test = run("keys", "list", "--env", "test")
    assert made[1]["id"] in only_test and made[0]["id"] not in only_test


def test_usage_shows_a_keys_verifications_as_a_table_and_a_sparkline(
    env: dict[str, str],
) -> None:
    from fastapi.testclient import TestClient

    from apiward.adapters.http.app import create_app
    from apiward.adapters.settings import Settings

    password = "correct horse battery"
    boot = json.loads(
        run(
            "init", "--org-name", "Acme", "--email", "o@acme.test", "--password", password, "--json"
        )
    )
    key = boot["key"]
    with TestClient(create_app(Settings())) as client:
        for _ in range(4):
            client.get("/v1/keys", headers={"Authorization": f"Bearer {key['secret']}"})
        client.get("/v1/keys", headers={"Authorization": "Bearer aw_live_" + "x" * 38})
    # The server flushed its counts as it stopped.
    data = json.loads(run("usage", "--key", key["id"], "--since", "2h", "--json"))
    assert data["granularity"] == "minute"
    assert sum(data["outcomes"]["VALID"]) == 4
    unknown = json.loads(run("usage", "--unattributed", "--since", "2h", "--json"))
    assert sum(unknown["outcomes"]["NOT_FOUND"]) == 1  # the key nobody issued
    table = run("usage", "--key", key["id"], "--since", "2h")
    assert "VALID" in table and "4" in table
    assert any(ch in table for ch in "▁▂▃▄▅▆▇█")


def test_version_and_help_load_no_server() -> None:
    """`apiward --help` and `--version` import only the command line: no server, store,
    settings or web framework (they took seconds to load)."""
    import subprocess
    import sys

    from apiward import __version__

    probe = (
        "import sys, apiward.adapters.cli.main; "
        "print(','.join(m for m in ('apiward.adapters.runtime', 'apiward.adapters.settings', "
        "'sqlalchemy', 'fastapi', 'pydantic', 'structlog', 'alembic', 'argon2', 'httpx') "
        "if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert loaded.returncode == 0 and loaded.stdout.strip() == "", loaded.stdout + loaded.stderr
    assert run("--version") == f"apiward {__version__}\n"


def test_keys_and_clients_carry_an_external_id_and_meta(env: dict[str, str]) -> None:
    """``--external-id`` and ``--meta`` on create and update, ``keys list --external-id``
    to find a customer's keys, and a usage error for what is not a JSON object."""
    init()
    key = json.loads(
        run(
            "keys", "create", "--name", "a", "--scope", "keys:read",
            "--external-id", "cus_1", "--meta", '{"plan": "pro", "seats": 3}', "--json",
        )
    )  # fmt: skip
    assert (key["external_id"], key["meta"]) == ("cus_1", {"plan": "pro", "seats": 3})
    other = json.loads(run("keys", "create", "--name", "b", "--scope", "keys:read", "--json"))
    test = json.loads(
        run(
            "keys", "create", "--name", "t", "--scope", "keys:read", "--env", "test",
            "--external-id", "cus_1", "--json",
        )
    )  # fmt: skip
    found = json.loads(run("keys", "list", "--external-id", "cus_1", "--json"))
    assert {k["id"] for k in found["items"]} == {key["id"], test["id"]}  # every environment
    live = json.loads(run("keys", "list", "--env", "live", "--external-id", "cus_1", "--json"))
    assert [k["id"] for k in live["items"]] == [key["id"]]
    table = run("keys", "list", "--env", "live")
    assert "external id" in table and "cus_1" in table
    assert "external id" not in run("keys", "list", "--env", "live", "--external-id", "none")

    updated = json.loads(
        run("keys", "update", other["id"], "--external-id", "cus_2", "--meta", "{}", "--json")
    )
    assert (updated["external_id"], updated["meta"]) == ("cus_2", {})
    cleared = json.loads(
        run("keys", "update", key["id"], "--clear-external-id", "--meta", '{"a": 1}', "--json")
    )
    assert (cleared["external_id"], cleared["meta"]) == (None, {"a": 1})

    for bad in ("[1]", "plan=pro", '{"a": {"b": 1}}'):
        result = CliRunner().invoke(app, ["keys", "update", key["id"], "--meta", bad])
        assert result.exit_code in (1, 2), result.output
        assert "meta" in result.output
    refused = CliRunner().invoke(app, ["keys", "update", key["id"], "--external-id", "a b"])
    assert refused.exit_code == 1 and "external_id must be" in refused.output

    client = json.loads(
        run(
            "clients", "create", "--name", "svc", "--scope", "keys:read",
            "--external-id", "acct_1", "--meta", '{"plan": "team"}', "--json",
        )
    )  # fmt: skip
    assert (client["external_id"], client["meta"]) == ("acct_1", {"plan": "team"})
    run("clients", "create", "--name", "other", "--scope", "keys:read")
    listed = json.loads(run("clients", "list", "--external-id", "acct_1", "--json"))
    assert [c["client_id"] for c in listed] == [client["client_id"]]


def test_keys_usage_shows_the_scopes_used_and_narrows_to_them(env: dict[str, str]) -> None:
    from apiward.adapters.settings import Settings

    init()
    scopes = ["--scope", "keys:read", "--scope", "clients:read"]
    made = json.loads(run("keys", "create", "--name", "u", *scopes, "--json"))
    with TestClient(create_app(Settings())) as client:
        for _ in range(2):
            r = client.get("/v1/keys", headers={"Authorization": f"Bearer {made['key']}"})
            assert r.status_code == 200
    # The server flushed its counts as it stopped.
    data = json.loads(run("keys", "usage", made["id"], "--json"))
    assert [(u["scope"], u["requests"]) for u in data["used"]] == [("keys:read", 2)]
    assert data["unused"] == ["clients:read"] and data["narrowed"] == ["keys:read"]
    table = run("keys", "usage", made["id"], "--since", "7d")
    assert "keys:read" in table and "unused: clients:read" in table
    assert f"apiward keys usage {made['id']} --since 7d --narrow" in table
    assert "narrowed to: keys:read" in run("keys", "usage", made["id"], "--narrow")
    assert json.loads(run("keys", "get", made["id"], "--json"))["scopes"] == ["keys:read"]
    bad = CliRunner().invoke(app, ["keys", "usage", made["id"], "--since", "soon"])
    assert bad.exit_code != 0 and "since" in bad.output


def test_clients_usage_shows_the_scopes_used_and_narrows_to_them(env: dict[str, str]) -> None:
    from apiward.adapters.settings import Settings

    init()
    scopes = ["--scope", "keys:read", "--scope", "clients:read"]
    made = json.loads(run("clients", "create", "--name", "svc", *scopes, "--json"))
    client_id = made["client_id"]
    with TestClient(create_app(Settings())) as server:
        grant = server.post(
            "/v1/auth/token",
            data={"grant_type": "client_credentials", "scope": "keys:read clients:read"},
            auth=(client_id, made["client_secret"]),
        )
        assert grant.status_code == 200, grant.text
        auth = {"Authorization": f"Bearer {grant.json()['access_token']}"}
        for _ in range(3):
            assert server.get("/v1/keys", headers=auth).status_code == 200
    # The server flushed its counts as it stopped.
    data = json.loads(run("clients", "usage", client_id, "--json"))
    assert [(u["scope"], u["requests"]) for u in data["used"]] == [("keys:read", 3)]
    assert data["unused"] == ["clients:read"] and data["narrowed"] == ["keys:read"]
    table = run("clients", "usage", client_id, "--since", "7d")
    assert "keys:read" in table and "unused: clients:read" in table
    assert f"apiward clients usage {client_id} --since 7d --narrow" in table
    assert "narrowed to: keys:read" in run("clients", "usage", client_id, "--narrow")
    listed = json.loads(run("clients", "list", "--json"))
    assert [c["scopes"] for c in listed if c["client_id"] == client_id] == [["keys:read"]]
    unknown = CliRunner().invoke(app, ["clients", "usage", "cli_nope"])
    assert unknown.exit_code == 1 and "no oauth client with id 'cli_nope'" in unknown.output.lower()


def test_org_hygiene_shows_the_policy_and_sets_one_that_only_tightens(
    env: dict[str, str],
) -> None:
    init()
    shown = json.loads(run("org", "hygiene", "--json"))
    assert shown["own"] is None
    assert shown["in_force"] == shown["operator"]
    assert shown["operator"]["expiry_reminder_days"] == [30, 7, 1]

    set_ = json.loads(
        run(
            "org", "hygiene", "--unused-days", "45", "--expiry-reminder", "14",
            "--credit-threshold", "90", "--shared-networks", "12", "--shared-disable",
            "--json",
        )
    )  # fmt: skip
    assert set_["own"] == {
        "unused_days": 45,
        "expiry_reminder_days": [14],
        "credit_thresholds": [90],
        "shared_networks": 12,
        "shared_countries": None,
        "shared_disable": True,
    }
    assert (set_["in_force"]["shared_networks"], set_["in_force"]["shared_disable"]) == (12, True)
    assert set_["in_force"]["unused_days"] == 45
    assert set_["in_force"]["expiry_reminder_days"] == [30, 14, 7, 1]
    assert set_["in_force"]["credit_thresholds"] == [50, 80, 90, 100]
    assert json.loads(run("org", "hygiene", "--json")) == set_
    table = run("org", "hygiene")
    assert "45 days" in table and "30, 14, 7, 1" in table and "50, 80, 90, 100" in table
    assert "key.anomaly at 12" in table
    assert max(map(len, table.splitlines())) <= 80 and "…" not in table

    for bad, option in (
        (["--unused-days", "0"], "--unused-days"),
        (["--expiry-reminder", "400"], "--expiry-reminder"),
        (["--credit-threshold", "101"], "--credit-threshold"),
        (["--shared-networks", "1"], "--shared-networks"),
    ):
        refused = CliRunner().invoke(app, ["org", "hygiene", *bad])
        assert refused.exit_code == 2 and option in refused.output, refused.output
    both = CliRunner().invoke(app, ["org", "hygiene", "--clear", "--unused-days", "3"])
    assert both.exit_code == 2 and "--clear" in both.output

    cleared = json.loads(run("org", "hygiene", "--clear", "--json"))
    assert cleared["own"] is None and cleared["in_force"] == cleared["operator"]


def test_org_hygiene_refuses_to_loosen_the_operators_policy(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APIWARD_KEY_UNUSED_DISABLE_DAYS", "30")
    init()
    refused = CliRunner().invoke(app, ["org", "hygiene", "--unused-days", "60"])
    assert refused.exit_code == 1, refused.output
    assert "30" in refused.output and "60" in refused.output
    assert json.loads(run("org", "hygiene", "--json"))["own"] is None


def test_keys_impact_says_what_revoking_or_narrowing_would_have_refused(
    env: dict[str, str],
) -> None:
    from apiward.adapters.settings import Settings

    init()
    scopes = ["--scope", "keys:read", "--scope", "clients:read"]
    made = json.loads(run("keys", "create", "--name", "u", *scopes, "--json"))
    with TestClient(create_app(Settings())) as client:
        for _ in range(3):
            r = client.get("/v1/keys", headers={"Authorization": f"Bearer {made['key']}"})
            assert r.status_code == 200
    # The server flushed its counts as it stopped.
    revoke = run("keys", "impact", made["id"])
    assert "this key made 3 requests; revoking it would have refused all of them." in revoke
    narrowed = json.loads(run("keys", "impact", made["id"], "--scope", "clients:read", "--json"))
    assert (narrowed["refused_at_least"], narrowed["refused_at_most"]) == (3, 3)
    assert narrowed["by_scope"] == [{"name": "keys:read", "requests": 3, "verdict": "refused"}]
    bad = CliRunner().invoke(app, ["keys", "impact", made["id"], "--allow-ip", "10.0.0.0/33"])
    assert bad.exit_code != 0 and "ip_allow" in bad.output
