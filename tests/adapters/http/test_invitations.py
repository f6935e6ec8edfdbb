"""``/v1/invitations``: invite by email through the management API, list, revoke."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from apiward.adapters.settings import Settings
from apiward.core.models import RequestContext
from tests.conftest import Org, fast_settings
from tests.mailbox import Mailbox, link_in, smtp_server, text_of


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with smtp_server() as box:
        yield box


@pytest.fixture
def settings(sqlite_url: str, mailbox: Mailbox) -> Settings:
    return fast_settings(
        database_url=sqlite_url,
        smtp_host="127.0.0.1",
        smtp_port=mailbox.port,
        smtp_security="none",
        public_url="https://portal.example.test",
    )


def test_invite_list_and_revoke(client: TestClient, org: Org, mailbox: Mailbox) -> None:
    r = client.post(
        "/v1/invitations",
        headers=org.headers(),
        json={"email": "Dev@Example.test", "role": "developer"},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["email"] == "dev@example.test"
    assert body["role"] == "developer"
    assert body["invited_by"] == org.owner_id
    assert "token" not in r.text and "awel_" not in r.text

    message = mailbox.next("dev@example.test")
    link = link_in(message)
    assert link.startswith("https://portal.example.test/dashboard/invitations/accept?token=awel_")
    assert "as developer" in text_of(message)

    listed = client.get("/v1/invitations", headers=org.headers()).json()
    assert [i["id"] for i in listed] == [body["id"]]

    assert client.delete(f"/v1/invitations/{body['id']}", headers=org.headers()).status_code == 204
    assert client.get("/v1/invitations", headers=org.headers()).json() == []
    r = client.delete(f"/v1/invitations/{body['id']}", headers=org.headers())
    assert r.status_code == 404


def test_invitations_need_their_scopes_and_stay_in_their_org(
    client: TestClient, org: Org, other_org: Org, mailbox: Mailbox
) -> None:
    reader = org.create_key(["users:read"])["key"]
    r = client.post(
        "/v1/invitations", headers=org.headers(reader), json={"email": "a@b.test", "role": "viewer"}
    )
    assert r.status_code == 403
    assert client.get("/v1/invitations", headers=org.headers(reader)).status_code == 200

    mine = client.post(
        "/v1/invitations", headers=org.headers(), json={"email": "a@b.test", "role": "viewer"}
    ).json()
    assert client.get("/v1/invitations", headers=other_org.headers()).json() == []
    r = client.delete(f"/v1/invitations/{mine['id']}", headers=other_org.headers())
    assert r.status_code == 404
    assert len(client.get("/v1/invitations", headers=org.headers()).json()) == 1


def test_bad_invitations_get_a_clear_message(client: TestClient, org: Org) -> None:
    cases = [
        ({"email": "not-an-address", "role": "viewer"}, 400, "not a valid email address"),
        ({"email": "a@b.test", "role": "emperor"}, 404, "emperor"),
        ({"email": "owner@acme.test", "role": "viewer"}, 409, "already a member"),
        ({"email": "a@b.test"}, 400, "role"),
    ]
    for payload, status, words in cases:
        r = client.post("/v1/invitations", headers=org.headers(), json=payload)
        assert r.status_code == status, (payload, r.text)
        assert words in r.text


def test_an_account_creates_and_lists_its_projects_through_the_api(
    client: TestClient, org: Org, mailbox: Mailbox
) -> None:
    # A user an organisation created has no account: no projects of its own.
    r = client.get("/v1/projects", headers=org.headers())
    assert r.status_code == 403
    assert "no portal account" in r.text

    runtime = org.runtime
    portal = client.portal
    assert portal is not None
    context = RequestContext()
    portal.call(runtime.portal.sign_up, "ada@example.test", "Ada", "a long passphrase", context)
    link = link_in(mailbox.next("ada@example.test"))
    portal.call(runtime.portal.confirm, link.split("token=")[1], context)
    account = portal.call(runtime.portal.account_of_email, "ada@example.test")
    first = portal.call(runtime.portal.create_project, account, "First", context)
    principal = portal.call(runtime.operators.principal, first.org.id)

    async def new_key(scopes: list[str]) -> str:
        return (await runtime.keys.create(principal, name="k", scopes=scopes)).plaintext

    key = portal.call(new_key, ["*"])

    r = client.post("/v1/projects", headers=org.headers(key), json={"name": "Second"})
    assert r.status_code == 201, r.text
    assert r.json()["role"] == "owner"
    listed = client.get("/v1/projects", headers=org.headers(key)).json()
    assert [(p["name"], p["role"]) for p in listed] == [("First", "owner"), ("Second", "owner")]

    narrow = portal.call(new_key, ["keys:read"])
    r = client.post("/v1/projects", headers=org.headers(narrow), json={"name": "X"})
    assert r.status_code == 403


def test_an_invitation_whose_sender_lost_the_role_is_refused(
    client: TestClient, org: Org, mailbox: Mailbox
) -> None:
    from apiward.core.errors import ExceedsAuthority

    admin = org.create_user("admin@acme.test", role="admin")
    admin_key = org.create_key(["*"], user_id=admin["id"])["key"]
    r = client.post(
        "/v1/invitations",
        headers=org.headers(admin_key),
        json={"email": "new@acme.test", "role": "developer"},
    )
    assert r.status_code == 201, r.text
    token = link_in(mailbox.next("new@acme.test")).split("token=")[1]
    # The owner demotes the sender before the invitation is accepted.
    demoted = client.put(
        f"/v1/users/{admin['id']}/memberships", headers=org.headers(), json={"role": "viewer"}
    )
    assert demoted.status_code == 200
    portal = client.portal
    assert portal is not None
    runtime, context = org.runtime, RequestContext()
    with pytest.raises(ExceedsAuthority, match="no longer holds its role"):
        portal.call(
            lambda: runtime.portal.accept(token, context, name="New", password="a long passphrase")
        )
    # Not consumed: once the sender holds the role again, the same link works.
    client.put(
        f"/v1/users/{admin['id']}/memberships", headers=org.headers(), json={"role": "admin"}
    )
    _, project = portal.call(
        lambda: runtime.portal.accept(token, context, name="New", password="a long passphrase")
    )
    assert project.role == "developer"
