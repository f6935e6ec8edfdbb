"""Every listing fits the terminal: at 80 columns and at 200, no line is wider, ids are
whole, people are named by their address, and what is left out is said with a hint."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from apiward.adapters.cli.main import app
from apiward.adapters.cli.tables import GAP, Column, fitted
from tests.adapters.cli.conftest import run

LISTINGS = [
    ["keys", "list"],
    ["clients", "list"],
    ["audit"],
    ["audit", "--accounts"],
    ["accounts", "list"],
    ["projects", "list"],
    ["invitations", "list"],
    ["org", "show"],
    ["usage", "--since", "2h", "--granularity", "minute"],
]


@pytest.fixture
def ids(cli_env: dict[str, str]) -> list[str]:
    """A deployment with long names and many scopes, and every id it printed."""
    run(
        "init",
        "--org-name",
        "Acme",
        "--email",
        "a.very.long.address@example-company.test",
        "--password",
        "long password 1",
        "--name",
        "Ada Lovelace",
    )
    made = []
    for env in ("live", "test"):
        key = json.loads(
            run(
                "keys",
                "create",
                "--name",
                "a rather long name for a key " * 2,
                "--env",
                env,
                "--scope",
                "keys:read",
                "--scope",
                "keys:write",
                "--scope",
                "users:read",
                "--expires-in",
                "30d",
                "--json",
            )
        )
        made.append(key["id"])
    client = json.loads(
        run(
            "clients",
            "create",
            "--name",
            "billing integration of the warehouse",
            "--scope",
            "keys:read",
            "--scope",
            "clients:read",
            "--json",
        )
    )
    made.append(client["client_id"])
    invited = json.loads(
        run(
            "invitations",
            "create",
            "--email",
            "new.colleague@example-company.test",
            "--role",
            "viewer",
            "--json",
        )
    )
    made.append(invited[0]["id"] if isinstance(invited, list) else invited["id"])
    return made


@pytest.mark.parametrize("width", [80, 200])
def test_listings_fit_and_keep_ids_whole(
    ids: list[str], width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    for command in LISTINGS:
        result = CliRunner().invoke(app, command, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert lines, command
        assert max(len(line) for line in lines) <= width, f"{command}\n{result.stdout}"
        if command[:2] == ["keys", "list"]:
            assert all(key_id in result.stdout for key_id in ids[:2]), result.stdout
        if command == ["clients", "list"]:
            assert ids[2] in result.stdout, result.stdout
        if command == ["invitations", "list"]:
            assert ids[3] in result.stdout, result.stdout
        if command == ["audit"]:
            assert all(key_id in result.stdout for key_id in ids[:2]), result.stdout


def test_narrow_layouts_say_what_they_leave_out(
    ids: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    narrow = CliRunner().invoke(app, ["keys", "list"], catch_exceptions=False).stdout
    assert "Not shown at this width:" in narrow and "--json has every field" in narrow
    monkeypatch.setenv("COLUMNS", "200")
    wide = CliRunner().invoke(app, ["keys", "list"], catch_exceptions=False).stdout
    assert "Not shown" not in wide
    assert "keys:read keys:write users:read" in wide


def test_the_audit_table_names_people_by_address(
    ids: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    table = CliRunner().invoke(app, ["audit"], catch_exceptions=False).stdout
    assert "a.very.long.address@example-company.test" in table
    assert "usr_" not in table


columns = st.lists(
    st.builds(
        Column,
        title=st.text("abcdefgh", min_size=1, max_size=10),
        whole=st.booleans(),
        keep=st.integers(0, 9),
        least=st.integers(0, 20),
    ),
    min_size=1,
    max_size=8,
)


@given(columns=columns, data=st.data(), width=st.integers(20, 250))
def test_a_fitted_table_is_never_wider_than_the_terminal_unless_its_ids_are(
    columns: list[Column], data: st.DataObject, width: int
) -> None:
    rows = data.draw(
        st.lists(
            st.lists(st.text("xyz", max_size=60), min_size=len(columns), max_size=len(columns)),
            max_size=5,
        )
    )
    shown, widths = fitted(columns, rows, width)
    natural = [max([len(c.title), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    wholes = [i for i, c in enumerate(columns) if c.whole]
    assert set(wholes) <= set(shown)  # ids are never left out ...
    assert all(widths[i] == natural[i] for i in wholes)  # ... nor cut
    total = sum(widths[i] for i in shown) + GAP * (len(shown) - 1)
    whole_only = sum(natural[i] for i in wholes) + GAP * (len(wholes) - 1)
    assert total <= width or shown == wholes or whole_only > width
