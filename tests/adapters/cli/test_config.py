"""Configuration is checked: one line per problem, naming the setting, where its value
came from, the value and what is expected; never a traceback; secrets never shown."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from apiward.adapters.runtime import build
from apiward.adapters.settings import ConfigError, Settings, unknown_variables
from tests.conftest import fast_settings

APIWARD = str(Path(sys.executable).parent / "apiward")


def _apiward(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("APIWARD_")}
    return subprocess.run(
        [APIWARD, *args], env={**clean, **env}, capture_output=True, text=True, timeout=60
    )


def test_a_misspelt_key_and_a_bad_value_in_the_file_are_each_one_line(tmp_path: Path) -> None:
    config = tmp_path / "apiward.toml"
    config.write_text('eror_style = "nested"\nport = "eighty"\n')
    result = _apiward("config", "check", APIWARD_CONFIG_FILE=str(config))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"configuration error: eror_style in {config}: not a setting; did you mean error_style?",
        f"configuration error: port = eighty (from {config}): Input should be a valid "
        "integer, unable to parse string as an integer",
    ]
    assert "Traceback" not in result.stdout + result.stderr


def test_serve_refuses_a_bad_configuration_in_one_line(tmp_path: Path) -> None:
    result = _apiward(
        "serve",
        APIWARD_ERROR_STYLE="flat",
        APIWARD_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "configuration error: error_style = flat (from APIWARD_ERROR_STYLE): Input should be "
        "'default', 'nested', 'detail' or 'problem'"
    ]
    assert not (tmp_path / "x.db").exists()


def test_a_missing_config_file_is_one_line() -> None:
    result = _apiward("keys", "list", APIWARD_CONFIG_FILE="/nonexistent/apiward.toml")
    assert result.returncode == 2
    assert result.stderr == (
        "configuration error: APIWARD_CONFIG_FILE=/nonexistent/apiward.toml: no such file\n"
    )


def test_unknown_variables_are_warned_about_and_the_sdks_are_not() -> None:
    result = _apiward(
        "config",
        "check",
        APIWARD_EROR_STYLE="nested",
        APIWARD_URL="http://127.0.0.1:8000",
        APIWARD_USER="u",
        APIWARD_PASSWORD="p",
        APIWARD_ORG="Acme",
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "warning: APIWARD_EROR_STYLE is not a setting of apiward and is ignored; did you "
        "mean APIWARD_ERROR_STYLE?"
    ]
    assert result.stdout == "Configuration OK.\n"


def test_show_says_where_each_value_comes_from_and_masks_secrets(tmp_path: Path) -> None:
    config = tmp_path / "apiward.toml"
    config.write_text('platform_name = "Acme API"\nsmtp_password = "hunter2-secret"\n')
    result = _apiward(
        "config",
        "show",
        "--json",
        APIWARD_CONFIG_FILE=str(config),
        APIWARD_PORT="9000",
        APIWARD_SECRET_KEY="a-secret-key-that-is-long-enough-to-be-used",
        APIWARD_DATABASE_URL="postgresql+asyncpg://app:db-password@db.internal/apiward",
    )
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert set(rows) == set(Settings.model_fields)
    assert (rows["port"]["value"], rows["port"]["source"]) == ("9000", "environment")
    assert (rows["platform_name"]["value"], rows["platform_name"]["source"]) == (
        "Acme API",
        "file",
    )
    assert (rows["host"]["value"], rows["host"]["source"]) == ("127.0.0.1", "default")
    assert rows["smtp_password"]["value"] == rows["secret_key"]["value"] == "********"
    assert rows["metrics_token"]["value"] == "(not set)"
    assert rows["database_url"]["value"] == "postgresql+asyncpg://app:********@db.internal/apiward"
    for secret in ("hunter2-secret", "a-secret-key-that", "db-password"):
        assert secret not in result.stdout + result.stderr


def test_settings_in_code_raise_one_error_listing_every_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings(port=0, workers="many", secret_key="shown-nowhere-at-all-ever-0123456789")
    assert caught.value.problems == [
        "port = 0 (given): Input should be greater than or equal to 1",
        "workers = many (given): Input should be a valid integer, unable to parse string "
        "as an integer",
    ]
    assert "shown-nowhere" not in str(caught.value)


def test_variables_of_the_tests_and_benchmarks_are_known() -> None:
    assert (
        unknown_variables({"APIWARD_TEST_POSTGRES_URL": "x", "APIWARD_BENCH_REDIS_URL": "y"}) == []
    )
    assert unknown_variables({"APIWARD_HOST": "x", "OTHER": "y"}) == []


def test_secrets_can_come_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """APIWARD_<NAME>_FILE (systemd's LoadCredential=, a mounted secret): the file's
    content without its final newline, shown as coming from a secret file."""
    secret = tmp_path / "secret_key"
    secret.write_text("a-secret-key-read-from-a-file-0123456789\n")
    token = tmp_path / "metrics_token"
    token.write_text("scrape-me")
    monkeypatch.setenv("APIWARD_SECRET_KEY_FILE", str(secret))
    monkeypatch.setenv("APIWARD_METRICS_TOKEN_FILE", str(token))
    settings = Settings()
    assert settings.secret_key is not None and settings.metrics_token is not None
    assert settings.secret_key.get_secret_value() == "a-secret-key-read-from-a-file-0123456789"
    assert settings.metrics_token.get_secret_value() == "scrape-me"
    assert unknown_variables(os.environ) == []
    shown = _apiward("config", "show", APIWARD_SECRET_KEY_FILE=str(secret))
    assert "secret file  ********" in shown.stdout
    assert "read-from-a-file" not in shown.stdout


def test_a_secret_file_that_cannot_be_used_is_one_line(tmp_path: Path) -> None:
    missing = _apiward("config", "check", APIWARD_SMTP_PASSWORD_FILE=str(tmp_path / "none"))
    assert missing.returncode == 2
    assert missing.stderr == (
        f"configuration error: APIWARD_SMTP_PASSWORD_FILE={tmp_path / 'none'}: cannot be "
        "read (No such file or directory)\n"
    )
    (tmp_path / "pw").write_text("x")
    both = _apiward(
        "config",
        "check",
        APIWARD_SMTP_PASSWORD="y",
        APIWARD_SMTP_PASSWORD_FILE=str(tmp_path / "pw"),
    )
    assert both.stderr == (
        "configuration error: APIWARD_SMTP_PASSWORD and APIWARD_SMTP_PASSWORD_FILE are both set\n"
    )


def test_retention_and_rotation_are_at_most_a_hundred_years() -> None:
    """A longer period would overflow a date once added to or taken from now (README,
    Times): refused with the bound, not an OverflowError at the first upkeep."""
    with pytest.raises(ConfigError) as caught:
        Settings(
            audit_retention_days=10**9,
            webhook_retention_days=36_501,
            analytics_day_retention_days=10**12,
            analytics_minute_retention_hours=10**12,
            signing_key_rotation_days=1e9,
        )
    problems = caught.value.problems
    assert len(problems) == 5
    assert all("less than or equal to 36500" in p or "876000" in p for p in problems), problems


def test_the_longest_retention_runs_its_upkeep(tmp_path: Path) -> None:
    settings = fast_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'r.db'}",
        audit_retention_days=36_500,
        webhook_retention_days=36_500,
        analytics_day_retention_days=36_500,
        analytics_hour_retention_days=36_500,
        analytics_minute_retention_hours=876_000,
        signing_key_rotation_days=36_500,
    )

    async def upkeep() -> None:
        runtime = build(settings)
        await runtime.start(background=False)
        try:
            await runtime.housekeeping.run()
            assert await runtime.housekeeping.enforce_retention(force=True) == (0, 0)
        finally:
            await runtime.stop()

    asyncio.run(upkeep())
