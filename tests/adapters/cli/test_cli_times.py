"""Times and durations on the command line: out of range (1970-01-01 to 9000-01-01 UTC,
durations up to 100 years) is an error that says so, exit code 2, never a traceback."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from apiward.adapters.cli.main import app
from tests.adapters.cli.conftest import run
from tests.conftest import examples

RANGE = "must be between 1970-01-01T00:00:00Z and 9000-01-01T00:00:00Z"
LONGEST = "must be between 0 and 3153600000 seconds (36500 days)"
MOST = timedelta(hours=23, minutes=59)


@pytest.fixture(autouse=True)
def key_id(cli_env: dict[str, str]) -> str:
    run("init", "--org-name", "Acme", "--email", "o@acme.test", "--password", "long password 1")
    created = json.loads(run("keys", "create", "--name", "ci", "--scope", "keys:read", "--json"))
    key: str = created["id"]
    return key


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def said(result: Result) -> str:
    return " ".join(result.output.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            [
                "keys",
                "create",
                "--name",
                "x",
                "--scope",
                "keys:read",
                "--expires-in",
                "9" * 11 + "d",
            ],
            f"--expires-in {LONGEST}",
        ),
        (["keys", "update", "{key_id}", "--expires-in", "9" * 11 + "d"], f"--expires-in {LONGEST}"),
        (
            ["keys", "create", "--name", "x", "--scope", "keys:read", "--expires-in", "soon"],
            "use e.g. 30d, 12h, 15m",
        ),
        (["keys", "roll", "{key_id}", "--grace", str(10**15)], f"--grace {LONGEST}"),
        (["audit", "--since", "9" * 11 + "d"], f"--since {LONGEST}"),
        (["audit", "--since", "0001-01-01T00:00:00+23:59"], f"--since {RANGE}"),
        (["audit", "--until", "9999-12-31T23:59:59-23:59"], f"--until {RANGE}"),
        (["audit", "--until", "9999-12-31"], f"--until {RANGE}"),
        (["usage", "--since", "0001-01-01T00:00:00+23:59"], f"since {RANGE}"),
    ],
)
def test_a_time_or_duration_out_of_range_is_refused(
    key_id: str, args: list[str], message: str
) -> None:
    result = invoke(*(a.format(key_id=key_id) for a in args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in (1, 2), result.output
    assert message in said(result)


def test_the_longest_expiry_is_taken(key_id: str) -> None:
    created = json.loads(
        run(
            "keys",
            "create",
            "--name",
            "x",
            "--scope",
            "keys:read",
            "--expires-in",
            "36500d",
            "--json",
        )
    )
    expires = datetime.fromisoformat(created["expires_at"])
    assert expires - datetime.now(UTC) > timedelta(days=36_499)


TIMES = st.datetimes(
    timezones=st.one_of(st.none(), st.timezones(), st.timedeltas(-MOST, MOST).map(timezone))
).map(datetime.isoformat)


@settings(
    max_examples=examples(20),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(option=st.sampled_from(["--since", "--until"]), when=TIMES)
@example(option="--until", when="9999-12-31T23:59:59.999999-23:59")
@example(option="--since", when="0001-01-01T00:00:00+23:59")
def test_any_time_lists_the_log_or_is_refused(key_id: str, option: str, when: str) -> None:
    result = invoke("audit", option, when, "--json")
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    if result.exit_code:
        assert result.exit_code == 2 and RANGE in said(result), result.output
    else:
        assert "items" in json.loads(result.output)
