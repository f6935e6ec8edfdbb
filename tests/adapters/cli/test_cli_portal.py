"""The CLI's portal commands: projects of accounts, invitations by email, account events."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from apiward.adapters.cli.main import app
from apiward.adapters.http.app import create_app
from tests.adapters.cli.conftest import run
from tests.conftest import fast_settings
from tests.mailbox import Mailbox, link_in, smtp_server, text_of

PASSWORD = "correct horse battery"
BASE = "http://127.0.0.1:8000"


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with smtp_server() as box:
        yield box


@pytest.fixture
def env(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, mailbox: Mailbox
) -> dict[str, str]:
    smtp = {
        "APIWARD_SMTP_HOST": "127.0.0.1",
        "APIWARD_SMTP_PORT": str(mailbox.port),
        "APIWARD_SMTP_SECURITY": "none",
        "APIWARD_PUBLIC_URL": "http://127.0.0.1:8000",
    }
    for name, value in smtp.items():
        monkeypatch.setenv(name, value)
    return {**cli_env, **smtp}


@pytest.fixture
def server(env: dict[str, str], mailbox: Mailbox) -> Iterator[TestClient]:
    """The server on the CLI's database, sending email to the same mailbox."""
    settings = fast_settings(
        database_url=env["APIWARD_DATABASE_URL"],
        smtp_host="127.0.0.1",
        smtp_port=mailbox.port,
        smtp_security="none",
        public_url=BASE,
    )
    with TestClient(create_app(settings), base_url=BASE) as client:
        yield client


def _form(client: TestClient, page: str, path: str, data: dict[str, str]) -> int:
    html = client.get(page).text
    csrf = html.split('name="csrf" value="')[1].split('"')[0]
    r = client.post(path, data={"csrf": csrf, **data}, follow_redirects=False)
    client.cookies.clear()
    status: int = r.status_code
    return status


def confirmed_account(client: TestClient, mailbox: Mailbox, email: str) -> None:
    """Sign up through the dashboard and open the confirmation link."""
    data = {"email": email, "name": email.split("@")[0], "password": PASSWORD}
    assert _form(client, "/dashboard/signup", "/dashboard/signup", data) == 200
    confirm = link_in(mailbox.next(email)).removeprefix(BASE)
    assert client.get(confirm, follow_redirects=False).status_code == 303


def test_projects_and_invitations_from_the_cli(server: TestClient, mailbox: Mailbox) -> None:
    confirmed_account(server, mailbox, "ops@example.test")

    # An unknown account owns nothing.
    result = CliRunner().invoke(app, ["projects", "create", "X", "--owner", "no@example.test"])
    assert result.exit_code == 1
    assert "No account has the address no@example.test" in result.output

    created = json.loads(
        run("projects", "create", "Billing", "--owner", "ops@example.test", "--json")
    )
    assert created[0]["name"] == "Billing" and created[0]["role"] == "owner"
    org_id = created[0]["id"]
    mine = json.loads(run("projects", "list", "--account", "ops@example.test", "--json"))
    assert [p["id"] for p in mine] == [org_id]
    assert org_id in run("projects", "list")

    invited = json.loads(
        run("invitations", "create", "--email", "new@example.test", "--role", "viewer",
            "--org", org_id, "--json")
    )  # fmt: skip
    # The command waits for the email before it exits.
    link = link_in(mailbox.next("new@example.test", timeout=5))
    assert "/dashboard/invitations/accept?token=awel_" in link
    listed = json.loads(run("invitations", "list", "--org", org_id, "--json"))
    assert [i["id"] for i in listed] == [invited[0]["id"]]
    assert "Revoked" in run("invitations", "revoke", invited[0]["id"], "--org", org_id)
    assert json.loads(run("invitations", "list", "--org", org_id, "--json")) == []

    events = json.loads(run("audit", "--accounts", "--json"))["items"]
    types = {e["type"] for e in events}
    assert {"account.signed_up", "account.confirmed"} <= types
    in_project = {e["type"] for e in json.loads(run("audit", "--org", org_id, "--json"))["items"]}
    assert {"project.created", "invitation.created", "invitation.revoked"} <= in_project


def test_an_operator_disables_and_enables_an_account(server: TestClient, mailbox: Mailbox) -> None:
    def sign_in() -> int:
        data = {"email": "dev@example.test", "password": PASSWORD}
        return _form(server, "/dashboard/login", "/dashboard/login", data)

    confirmed_account(server, mailbox, "dev@example.test")
    assert sign_in() == 303

    listed = json.loads(run("accounts", "list", "--json"))
    assert [(a["email"], a["confirmed"], a["disabled"]) for a in listed] == [
        ("dev@example.test", True, False)
    ]
    assert json.loads(run("accounts", "disable", "dev@example.test", "--json"))[0]["disabled"]
    assert sign_in() == 401
    run("accounts", "enable", "dev@example.test")
    assert sign_in() == 303
    types = [e["type"] for e in json.loads(run("audit", "--accounts", "--json"))["items"]]
    assert "account.disabled" in types and "account.enabled" in types


@pytest.mark.parametrize(
    ("name", "said"),
    [
        (None, "you@acme.test invited you"),
        ("Ada Lovelace", "Ada Lovelace (you@acme.test) invited you"),
    ],
)
def test_an_invitation_names_its_sender(
    server: TestClient, mailbox: Mailbox, name: str | None, said: str
) -> None:
    """The mail reads as a person wrote it: never "you invited you" for an owner whose
    address is you@..., and with the name `apiward init --name` gave."""
    named = ["--name", name] if name else []
    run("init", "--org-name", "Acme", "--email", "you@acme.test",
        "--password", PASSWORD, *named)  # fmt: skip
    run("invitations", "create", "--email", "new@example.test", "--role", "viewer")
    text = text_of(mailbox.next("new@example.test", timeout=5))
    assert said in " ".join(text.split())
