"""``/v1/invitations``: invite by email through the management API, list, revoke."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

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


def test_a_credential_acting_as_another_never_acts_on_their_account(
    client: TestClient, org: Org, mailbox: Mailbox
) -> None:
    """A portal account spans organisations, so only its person's own credentials list or
    create its projects: a key another member made acting as that person (or anything
    such a key makes, or a roll of it) gets 403 EXCEEDS_AUTHORITY."""
    from apiward.core.ids import new_id
    from apiward.core.models import Membership, User

    runtime, context = org.runtime, RequestContext()
    portal = client.portal
    assert portal is not None
    accounts = {}
    for email in ("ada@example.test", "bob@example.test"):
        portal.call(runtime.portal.sign_up, email, email[:3], "a long passphrase", context)
        link = link_in(mailbox.next(email))
        portal.call(runtime.portal.confirm, link.split("token=")[1], context)
        accounts[email] = portal.call(runtime.portal.account_of_email, email)
    shared = portal.call(
        runtime.portal.create_project, accounts["ada@example.test"], "Shared", context
    )
    portal.call(runtime.portal.create_project, accounts["bob@example.test"], "Bob's own", context)
    bob = User(
        new_id("usr"),
        shared.org.id,
        "bob@example.test",
        "bob",
        None,
        runtime.clock.now(),
        account_id=accounts["bob@example.test"].id,
    )

    async def join() -> None:
        async with runtime.store.begin() as tx:
            await tx.insert_user(bob)
            await tx.put_membership(
                Membership(shared.org.id, bob.id, None, "admin", bob.created_at)
            )

    portal.call(join)
    ada = portal.call(runtime.operators.principal, shared.org.id)

    async def acting_key(scopes: list[str]) -> str:
        return (await runtime.keys.create(ada, name="k", scopes=scopes, user_id=bob.id)).plaintext

    def bobs_projects() -> set[str]:
        return {
            p.org.name for p in portal.call(runtime.portal.projects, accounts["bob@example.test"])
        }

    acting = org.headers(portal.call(acting_key, ["projects:read", "projects:manage"]))
    for r in (
        client.get("/v1/projects", headers=acting),
        client.post("/v1/projects", headers=acting, json={"name": "Planted"}),
    ):
        assert (r.status_code, r.json()["reason"]) == (403, "EXCEEDS_AUTHORITY"), r.text
        assert bob.id in r.json()["message"]
    assert bobs_projects() == {"Shared", "Bob's own"}

    # What an acting key makes, or a roll of it, is still the other member's doing.
    wide = org.headers(portal.call(acting_key, ["*"]))
    made = client.post("/v1/keys", headers=wide, json={"name": "made", "scopes": ["*"]}).json()
    assert (made["user_id"], made["created_by"]) == (bob.id, ada.user_id)
    rolled = client.post(
        f"/v1/keys/{made['id']}/roll", headers=org.headers(made["key"]), json={"grace_seconds": 60}
    )
    assert rolled.status_code == 201, rolled.text
    for key in (made["key"], rolled.json()["key"]):
        assert client.get("/v1/keys", headers=org.headers(key)).status_code == 200  # acts as bob
        r = client.get("/v1/projects", headers=org.headers(key))
        assert (r.status_code, r.json()["reason"]) == (403, "EXCEEDS_AUTHORITY"), r.text

    # Bob's own credential (a token of his password, then a key made with it) may.
    token = client.post(
        "/v1/auth/token",
        json={
            "username": "bob@example.test",
            "password": "a long passphrase",
            "org_id": shared.org.id,
        },
    ).json()["access_token"]
    own = client.post(
        "/v1/keys",
        headers=org.headers(token),
        json={"name": "own", "scopes": ["projects:read", "projects:manage"]},
    ).json()["key"]
    for credential in (token, own):
        listed = client.get("/v1/projects", headers=org.headers(credential))
        assert listed.status_code == 200, listed.text
    assert (
        client.post("/v1/projects", headers=org.headers(own), json={"name": "Third"}).status_code
        == 201
    )
    assert bobs_projects() == {"Shared", "Bob's own", "Third"}


@pytest.mark.parametrize("disabled", ["user", "account"])
def test_an_invitation_whose_sender_was_disabled_is_refused(
    client: TestClient, org: Org, mailbox: Mailbox, disabled: str
) -> None:
    """An invitation grants its role only while its sender may still give it: a sender
    disabled since (as a user, or through their portal account) hands out nothing, and
    the link is not used up."""
    from apiward.core.errors import ExceedsAuthority
    from apiward.core.ids import new_id
    from apiward.core.models import Membership, User

    runtime, context = org.runtime, RequestContext()
    portal = client.portal
    assert portal is not None
    portal.call(runtime.portal.sign_up, "sender@example.test", "S", "a long passphrase", context)
    link = link_in(mailbox.next("sender@example.test"))
    portal.call(runtime.portal.confirm, link.split("token=")[1], context)
    account = portal.call(runtime.portal.account_of_email, "sender@example.test")
    sender = User(
        new_id("usr"), org.id, account.email, "S", None, runtime.clock.now(), account_id=account.id
    )

    async def join() -> None:
        async with runtime.store.begin() as tx:
            await tx.insert_user(sender)
            await tx.put_membership(Membership(org.id, sender.id, None, "admin", sender.created_at))

    portal.call(join)
    key = org.create_key(["*"], user_id=sender.id)["key"]
    r = client.post(
        "/v1/invitations",
        headers=org.headers(key),
        json={"email": "new@acme.test", "role": "admin"},
    )
    assert r.status_code == 201, r.text
    token = link_in(mailbox.next("new@acme.test")).split("token=")[1]

    def set_disabled(value: bool) -> None:
        if disabled == "account":
            portal.call(runtime.portal.set_disabled, "sender@example.test", value, context)
        else:
            r = client.patch(
                f"/v1/users/{sender.id}", headers=org.headers(), json={"disabled": value}
            )
            assert r.status_code == 200, r.text

    def accept() -> tuple[Any, Any]:
        return portal.call(
            lambda: runtime.portal.accept(token, context, name="New", password="a long passphrase")
        )

    set_disabled(True)
    with pytest.raises(ExceedsAuthority, match="sender is disabled"):
        accept()
    set_disabled(False)
    _, project = accept()
    assert project.role == "admin"
