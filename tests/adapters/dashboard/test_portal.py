"""The developer portal through the dashboard, with a real SMTP server: sign-up and email
confirmation, projects, invitations, password reset and change, and what none of them
may tell about an address."""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from apiward.adapters import logging as logs
from apiward.adapters.http.app import create_app
from apiward.adapters.runtime import Runtime
from apiward.adapters.settings import Settings
from apiward.adapters.storage import tables as t
from apiward.core.models import AuditEvent, AuditFilter, PageRequest
from tests.adapters.dashboard.conftest import BASE_URL, PASSWORD, Browser, csrf_of, secret_of
from tests.conftest import Org, bootstrap, fast_settings
from tests.mailbox import Mailbox, link_in, smtp_server, text_of

NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with smtp_server() as box:
        yield box


def portal_settings(database_url: str, mailbox: Mailbox, **overrides: Any) -> Settings:
    return fast_settings(
        database_url=database_url,
        smtp_host="127.0.0.1",
        smtp_port=mailbox.port,
        smtp_security="none",
        public_url=BASE_URL,
        platform_name="Acme Developers",
        mail_from="Acme Developers <developers@acme.test>",
        **overrides,
    )


@pytest.fixture
def settings(database_url: str, mailbox: Mailbox) -> Settings:
    """Every portal test that takes this runs on SQLite and on PostgreSQL."""
    return portal_settings(database_url, mailbox)


def runtime_of(client: TestClient) -> Runtime:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return runtime


def path_of(link: str) -> str:
    assert link.startswith(BASE_URL + "/dashboard/"), link
    return link.removeprefix(BASE_URL)


def sign_up(b: Browser, email: str, password: str = PASSWORD, name: str = "Ada") -> Any:
    token = csrf_of(b.get("/dashboard/signup").text)
    return b.request(
        "POST",
        "/dashboard/signup",
        data={"csrf": token, "email": email, "name": name, "password": password},
    )


def public_post(b: Browser, page: str, path: str, data: dict[str, str]) -> Any:
    """Post a form of a page shown to people not signed in."""
    token = csrf_of(b.get(page).text)
    return b.request("POST", path, data={"csrf": token, **data})


def confirmed_account(
    browser: Callable[[], Browser], mailbox: Mailbox, email: str = "ada@example.test"
) -> Browser:
    """A new account, confirmed through its email, signed in."""
    b = browser()
    assert sign_up(b, email).status_code == 200
    assert b.get(path_of(mailbox.link(email))).status_code == 303
    assert b.sign_in(email).status_code == 303
    return b


def create_project(b: Browser, name: str) -> Any:
    return b.post("/dashboard/projects", {"name": name}, csrf=b.csrf("/dashboard/projects"))


def events(client: TestClient, org_id: str | None, type: str) -> list[AuditEvent]:
    async def read() -> list[AuditEvent]:
        async with runtime_of(client).store.begin() as tx:
            page = await tx.list_audit(org_id, AuditFilter(type=type), PageRequest(1, 100))
        return page.items

    return client.portal.call(read)  # type: ignore[union-attr]


# sign-up, confirmation, first project, first key, first call ------------------------


def test_sign_up_confirm_create_a_project_and_a_key_and_call_the_api(
    client: TestClient, browser: Callable[[], Browser], mailbox: Mailbox
) -> None:
    b = browser()
    r = sign_up(b, "Ada@Example.test")
    assert r.status_code == 200
    assert "Check your inbox" in r.text

    message = mailbox.next("ada@example.test")
    assert message["Subject"] == "Confirm your email address for Acme Developers"
    assert message["From"] == "Acme Developers <developers@acme.test>"
    assert message.get_body(preferencelist=("html",)) is not None
    text = text_of(message)
    assert "Hello Ada" in text and "works once" in text

    # Before confirming, the password is right but the account cannot go further.
    r = b.sign_in("ada@example.test")
    assert r.status_code == 401
    assert "Confirm your email address first" in r.text
    assert b.session is None

    r = b.get(path_of(link_in(message)))
    assert r.status_code == 303
    assert r.headers["location"] == "/dashboard/login?done=confirmed"
    assert "Your email address is confirmed" in b.get(r.headers["location"]).text

    r = b.sign_in("ada@example.test")
    assert r.status_code == 303
    # No project yet: every project page leads to the projects page.
    r = b.get("/dashboard/keys")
    assert (r.status_code, r.headers["location"]) == (303, "/dashboard/projects")
    assert "You have no project yet" in b.get("/dashboard/projects").text

    r = create_project(b, "Ada's weather API")
    assert (r.status_code, r.headers["location"]) == (303, "/dashboard/keys?done=project_created")
    page = b.get("/dashboard/keys").text
    assert "Ada&#39;s weather API" in page

    r = b.post("/dashboard/keys", {"name": "backend", "scope": ["keys:read"]})
    assert r.status_code == 201
    key = secret_of(r.text)

    r = client.get("/v1/keys", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    assert [k["name"] for k in r.json()["items"]] == ["backend"]

    # The project has its test environment too; the key made in live is not there.
    test_keys = b.get("/dashboard/keys?env=test").text
    assert "backend" not in test_keys

    assert events(client, None, "account.signed_up")
    assert events(client, None, "account.confirmed")


def test_a_confirmation_link_works_once(browser: Callable[[], Browser], mailbox: Mailbox) -> None:
    b = browser()
    sign_up(b, "once@example.test")
    path = path_of(mailbox.link("once@example.test"))
    assert b.get(path).status_code == 303
    r = b.get(path)
    assert r.status_code == 400
    assert "expired or has already been used" in r.text
    assert b.get("/dashboard/confirm?token=awel_forged").status_code == 400
    assert b.get("/dashboard/confirm").status_code == 400


def test_a_new_confirmation_link_replaces_the_old_one(
    browser: Callable[[], Browser], mailbox: Mailbox
) -> None:
    b = browser()
    sign_up(b, "late@example.test")
    old = path_of(mailbox.link("late@example.test"))
    r = public_post(
        b, "/dashboard/login", "/dashboard/confirm/resend", {"email": "late@example.test"}
    )
    assert r.status_code == 200
    new = path_of(mailbox.link("late@example.test"))
    assert new != old
    assert b.get(old).status_code == 400
    assert b.get(new).status_code == 303


def test_an_expired_confirmation_link_is_refused(
    sqlite_url: str, mailbox: Mailbox, clock: Any
) -> None:
    settings = portal_settings(sqlite_url, mailbox, confirm_link_ttl_seconds=600)
    with TestClient(
        create_app(settings, clock=clock), base_url=BASE_URL, raise_server_exceptions=False
    ) as client:
        b = Browser(client)
        sign_up(b, "slow@example.test")
        path = path_of(mailbox.link("slow@example.test"))
        clock.advance(601)
        assert b.get(path).status_code == 400


def test_signing_up_again_tells_nothing_and_changes_nothing(
    browser: Callable[[], Browser], mailbox: Mailbox
) -> None:
    confirmed_account(browser, mailbox, "taken@example.test")
    new, known = browser(), browser()
    a = sign_up(new, "fresh@example.test", name="Someone")
    b = sign_up(known, "taken@example.test", password="another password 1", name="Someone")
    assert a.status_code == b.status_code == 200
    assert a.text.replace("fresh@", "X@") == b.text.replace("taken@", "X@").replace(
        csrf_of(b.text), csrf_of(a.text)
    )
    # The address's owner learns of it by email; the password stays as it was.
    message = mailbox.next("taken@example.test")
    assert message["Subject"] == "Your Acme Developers account"
    assert "already has an account" in text_of(message)
    assert known.sign_in("taken@example.test", "another password 1").status_code == 401
    assert known.sign_in("taken@example.test").status_code == 303


def test_an_account_exists_when_its_sign_up_is_answered(
    browser: Callable[[], Browser], mailbox: Mailbox
) -> None:
    """Signing in right after signing up finds the account (it is made before the answer;
    only the email is sent after it): it asks for the confirmation, not for a password."""
    b = browser()
    assert sign_up(b, "quick@example.test").status_code == 200
    r = b.sign_in("quick@example.test")
    assert "Confirm your email address first" in r.text
    assert "Wrong email or password" not in r.text


def test_weak_passwords_and_bad_addresses_are_refused_with_a_message(
    browser: Callable[[], Browser], mailbox: Mailbox
) -> None:
    b = browser()
    r = sign_up(b, "weak@example.test", password="short")
    assert r.status_code == 400
    assert "at least 10 characters" in r.text
    r = sign_up(b, "weak@example.test", password="weakweakweak")
    assert r.status_code == 400
    assert "Password must not contain the email address" in r.text
    r = sign_up(b, "not an address", password=NEW_PASSWORD)
    assert r.status_code == 400
    assert "is not a valid email address" in r.text
    # Every error at once, each next to its field.
    r = sign_up(b, "not an address", password="short")
    assert r.status_code == 400
    assert 'id="email-error"' in r.text and 'id="password-error"' in r.text
    assert 'aria-describedby="password-hint password-error"' in r.text
    assert mailbox.nothing_for("weak@example.test", wait=0.5)


def test_sign_up_can_be_closed_or_limited_to_domains(sqlite_url: str, mailbox: Mailbox) -> None:
    closed = portal_settings(sqlite_url, mailbox, signup_enabled=False)
    with TestClient(create_app(closed), base_url=BASE_URL) as client:
        b = Browser(client)
        assert b.get("/dashboard/signup").status_code == 403
        assert "by invitation only" in b.get("/dashboard/signup").text
        assert "Create one" not in b.get("/dashboard/login").text
        r = b.request("POST", "/dashboard/signup", data={"csrf": "x", "email": "a@b.test"})
        assert r.status_code == 403
    limited = portal_settings(sqlite_url, mailbox, signup_email_domains=["Acme.test"])
    with TestClient(create_app(limited), base_url=BASE_URL) as client:
        b = Browser(client)
        r = sign_up(b, "someone@elsewhere.test")
        assert r.status_code == 400
        assert "open to addresses at acme.test only" in r.text
        assert sign_up(b, "someone@acme.test").status_code == 200
        assert mailbox.next("someone@acme.test")


def test_sign_up_is_rate_limited_per_address(
    browser: Callable[[], Browser], mailbox: Mailbox
) -> None:
    b = browser()
    for _ in range(5):
        assert sign_up(b, "flood@example.test").status_code == 200
    r = sign_up(b, "flood@example.test")
    assert r.status_code == 429
    assert "Too many attempts" in r.text
    # Another address from the same IP still gets through (the IP budget is larger).
    assert sign_up(b, "other@example.test").status_code == 200


def test_link_tokens_are_stored_hashed(
    client: TestClient, browser: Callable[[], Browser], mailbox: Mailbox
) -> None:
    sign_up(browser(), "hash@example.test")
    token = mailbox.link("hash@example.test").split("token=")[1]
    assert token.startswith("awel_")

    async def rows() -> list[Any]:
        engine = runtime_of(client).sql.engine
        async with engine.connect() as conn:
            return list((await conn.execute(t.email_links.select())).all())

    stored = client.portal.call(rows)  # type: ignore[union-attr]
    assert stored
    assert all(token not in str(tuple(row)) for row in stored)


# projects ---------------------------------------------------------------------------


def test_one_account_in_several_projects_switches_between_them(
    client: TestClient, browser: Callable[[], Browser], mailbox: Mailbox
) -> None:
    b = confirmed_account(browser, mailbox)
    create_project(b, "First")
    create_project(b, "Second")
    page = b.get("/dashboard/projects").text
    assert "First" in page and "Second" in page
    assert "Switch project" in page

    first = next(p for p in _projects(client, "ada@example.test") if p.org.name == "First")
    r = b.post(f"/dashboard/projects/{first.org.id}/open", {}, csrf=b.csrf("/dashboard/projects"))
    assert r.status_code == 303
    assert '<span class="org" title="Project ' + first.org.id in b.get("/dashboard/keys").text
    second = next(p for p in _projects(client, "ada@example.test") if p.org.name == "Second")
    r = b.post("/dashboard/projects/switch", {"org_id": second.org.id})
    assert (r.status_code, r.headers["location"]) == (303, "/dashboard/overview")
    assert '<span class="org" title="Project ' + second.org.id in b.get("/dashboard/keys").text

    # A project of someone else cannot be opened.
    other = bootstrap(client, "Elsewhere", "owner@elsewhere.test", another=True)
    r = b.post(f"/dashboard/projects/{other.id}/open", {}, csrf=b.csrf("/dashboard/projects"))
    assert r.status_code == 404
    assert "Elsewhere" not in b.get("/dashboard/keys").text


def _projects(client: TestClient, email: str) -> list[Any]:
    runtime = runtime_of(client)

    async def run() -> list[Any]:
        async with runtime.store.begin() as tx:
            account = await tx.find_account_by_email(email)
        assert account is not None
        return await runtime.portal.projects(account)

    return client.portal.call(run)  # type: ignore[union-attr]


def test_projects_of_different_accounts_may_share_a_name(
    browser: Callable[[], Browser], mailbox: Mailbox
) -> None:
    a = confirmed_account(browser, mailbox, "a@example.test")
    b = confirmed_account(browser, mailbox, "b@example.test")
    assert create_project(a, "My app").status_code == 303
    assert create_project(b, "My app").status_code == 303


def test_the_project_limit_holds(sqlite_url: str, mailbox: Mailbox) -> None:
    with TestClient(
        create_app(portal_settings(sqlite_url, mailbox, projects_per_account=1)),
        base_url=BASE_URL,
    ) as client:
        b = confirmed_account(lambda: Browser(client), mailbox)
        assert create_project(b, "One").status_code == 303
        r = create_project(b, "Two")
        assert r.status_code == 409
        assert "at most 1 projects" in r.text


# invitations ------------------------------------------------------------------------


def invite(b: Browser, email: str, role: str = "developer") -> Any:
    return b.post(
        "/dashboard/members/invitations",
        {"email": email, "role": role},
        csrf=b.csrf("/dashboard/members"),
    )


def test_an_invitee_without_an_account_joins_with_a_role(
    client: TestClient, browser: Callable[[], Browser], mailbox: Mailbox
) -> None:
    owner = confirmed_account(browser, mailbox, "owner@example.test")
    create_project(owner, "Team API")
    r = invite(owner, "Grace@Example.test", "developer")
    assert (r.status_code, r.headers["location"]) == (
        303,
        "/dashboard/members?done=invited#invitations",
    )
    assert "grace@example.test" in owner.get("/dashboard/members").text

    message = mailbox.next("grace@example.test")
    assert message["Subject"] == "You are invited to Team API on Acme Developers"
    assert "Ada (owner@example.test) invited you" in text_of(message)

    path = path_of(link_in(message))
    guest = browser()
    page = guest.get(path)
    assert page.status_code == 200
    assert "Create account and join" in page.text
    token = path.split("token=")[1]
    bad = guest.request(
        "POST",
        "/dashboard/invitations/accept",
        data={"csrf": csrf_of(page.text), "token": token, "name": "x\ny", "password": "short"},
    )
    assert bad.status_code == 400
    assert 'id="name-error"' in bad.text and 'id="password-error"' in bad.text
    r = guest.request(
        "POST",
        "/dashboard/invitations/accept",
        data={"csrf": csrf_of(page.text), "token": token, "name": "Grace", "password": PASSWORD},
    )
    assert (r.status_code, r.headers["location"]) == (303, "/dashboard/overview")
    keys = guest.get("/dashboard/keys").text
    assert "Team API" in keys and "developer" in keys
    # A developer manages keys but cannot invite.
    assert invite(guest, "someone@example.test").status_code == 403
    # The link is spent; the owner sees the new member, and the invitation is gone.
    assert guest.get(path).status_code == 400
    members = owner.get("/dashboard/members").text
    assert "Grace" in members
    assert "No invitation is waiting" in members
    # The new account signs in with its password.
    assert browser().sign_in("grace@example.test").status_code == 303

    org_id = _projects(client, "owner@example.test")[0].org.id
    assert events(client, org_id, "invitation.created")
    assert events(client, org_id, "invitation.accepted")


def test_an_invitee_with_an_account_signs_in_to_accept(
    client: TestClient, browser: Callable[[], Browser], mailbox: Mailbox
) -> None:
    owner = confirmed_account(browser, mailbox, "owner@example.test")
    create_project(owner, "Shared")
    member = confirmed_account(browser, mailbox, "member@example.test")
    create_project(member, "Own")
    invite(owner, "member@example.test", "viewer")
    path = path_of(mailbox.link("member@example.test"))

    stranger = browser()
    page = stranger.get(path).text
    assert "Sign in to accept" in page
    r = public_post(
        stranger,
        "/dashboard/login",
        "/dashboard/invitations/accept",
        {"token": path.split("token=")[1], "name": "Mallory", "password": "mallory's password"},
    )
    assert r.status_code == 403
    assert "Sign in as member@example.test" in r.text

    # Signing in from the invitation leads back to it.
    r = stranger.sign_in("member@example.test", next=path)
    assert (r.status_code, r.headers["location"]) == (303, path)

    page = member.get(path).text
    assert "Accept and open the project" in page
    r = member.request(
        "POST",
        "/dashboard/invitations/accept",
        data={"csrf": csrf_of(page), "token": path.split("token=")[1]},
    )
    assert r.status_code == 303
    keys = member.get("/dashboard/keys").text
    assert "Shared" in keys and "viewer" in keys
    names = sorted(p.org.name for p in _projects(client, "member@example.test"))
    assert names == ["Own", "Shared"]


def test_an_invitation_for_another_address_is_not_accepted_by_the_signed_in_account(
    browser: Callable[[], Browser], mailbox: Mailbox
) -> None:
    owner = confirmed_account(browser, mailbox, "owner@example.test")
    create_project(owner, "P")
    invite(owner, "intended@example.test")
    path = path_of(mailbox.link("intended@example.test"))
    page = owner.get(path).text
    assert "You are signed in as owner@example.test" in page
    r = owner.post("/dashboard/invitations/accept", {"token": path.split("token=")[1]})
    assert r.status_code == 403
    assert "This invitation is for intended@example.test" in r.text


def test_a_revoked_or_replaced_invitation_no_longer_works(
    client: TestClient, browser: Callable[[], Browser], mailbox: Mailbox
) -> None:
    owner = confirmed_account(browser, mailbox, "owner@example.test")
    create_project(owner, "P")
    invite(owner, "x@example.test")
    first = path_of(mailbox.link("x@example.test"))
    invite(owner, "x@example.test", "viewer")
    second = path_of(mailbox.link("x@example.test"))
    assert browser().get(first).status_code == 400
    assert browser().get(second).status_code == 200

    org_id = _projects(client, "owner@example.test")[0].org.id
    pending = _pending(client, org_id)
    assert [(i.email, i.role) for i in pending] == [("x@example.test", "viewer")]
    r = owner.post(
        f"/dashboard/members/invitations/{pending[0].id}/revoke",
        {},
        csrf=owner.csrf("/dashboard/members"),
    )
    assert r.status_code == 303
    assert browser().get(second).status_code == 400
    assert events(client, org_id, "invitation.revoked")


def _pending(client: TestClient, org_id: str) -> list[Any]:
    runtime = runtime_of(client)

    async def run() -> list[Any]:
        principal = await runtime.operators.principal(org_id)
        return await runtime.portal.invitations(principal)

    return client.portal.call(run)  # type: ignore[union-attr]


def test_inviting_a_member_or_granting_more_than_one_holds_is_refused(
    org: Org, signed_in: Callable[..., Browser], owner: Browser, mailbox: Mailbox
) -> None:
    r = invite(owner, "owner@acme.test")
    assert r.status_code == 409
    assert "already a member" in r.text
    admin = signed_in("admin")
    r = invite(admin, "new@acme.test", "owner")
    assert r.status_code == 403
    assert "owner:*" in r.text and "refused" in r.text
    assert mailbox.nothing_for("new@acme.test", wait=0.5)


# password reset and change ----------------------------------------------------------


def test_password_reset_by_email_ends_every_session(
    client: TestClient, browser: Callable[[], Browser], mailbox: Mailbox
) -> None:
    elsewhere = confirmed_account(browser, mailbox, "ada@example.test")
    create_project(elsewhere, "P")
    assert elsewhere.get("/dashboard/keys").status_code == 200

    b = browser()
    r = public_post(b, "/dashboard/forgot", "/dashboard/forgot", {"email": "ada@example.test"})
    assert r.status_code == 200
    message = mailbox.next("ada@example.test")
    assert message["Subject"] == "Reset your Acme Developers password"
    path = path_of(link_in(message))
    form = b.get(path)
    assert form.status_code == 200 and "Choose a new password" in form.text
    token = path.split("token=")[1]
    for password, again, field in (
        (NEW_PASSWORD, "not the same", "password_again"),
        ("short", "short", "password"),
    ):
        r = b.request(
            "POST",
            "/dashboard/reset",
            data={
                "csrf": csrf_of(form.text),
                "token": token,
                "password": password,
                "password_again": again,
            },
        )
        assert r.status_code == 400 and f'id="{field}-error"' in r.text, field
    r = b.request(
        "POST",
        "/dashboard/reset",
        data={
            "csrf": csrf_of(form.text),
            "token": token,
            "password": NEW_PASSWORD,
            "password_again": NEW_PASSWORD,
        },
    )
    assert (r.status_code, r.headers["location"]) == (303, "/dashboard/login?done=password_reset")

    # The other browser's session is over; the old password no longer signs in.
    r = elsewhere.get("/dashboard/keys")
    assert r.status_code == 303 and r.headers["location"].startswith("/dashboard/login")
    assert browser().sign_in("ada@example.test").status_code == 401
    assert browser().sign_in("ada@example.test", NEW_PASSWORD).status_code == 303
    # The link worked once; the owner is told the password changed.
    assert b.get(path).status_code == 400
    assert (
        mailbox.next("ada@example.test")["Subject"] == "Your Acme Developers password was changed"
    )
    assert events(client, None, "password.reset")


def test_a_reset_request_tells_nothing_about_the_address(
    browser: Callable[[], Browser], mailbox: Mailbox
) -> None:
    confirmed_account(browser, mailbox, "known@example.test")
    a = public_post(
        browser(), "/dashboard/forgot", "/dashboard/forgot", {"email": "known@example.test"}
    )
    b = public_post(
        browser(), "/dashboard/forgot", "/dashboard/forgot", {"email": "nobody@example.test"}
    )
    assert a.status_code == b.status_code == 200
    assert "If known@example.test has an account" in a.text
    assert a.text.replace("known@", "X@") == b.text.replace("nobody@", "X@")
    assert mailbox.next("known@example.test")
    assert mailbox.nothing_for("nobody@example.test", wait=1.0)


def test_a_reset_link_of_a_mistyped_confirmation_is_refused(
    browser: Callable[[], Browser], mailbox: Mailbox
) -> None:
    b = browser()
    sign_up(b, "mix@example.test")
    confirm = path_of(mailbox.link("mix@example.test"))
    token = confirm.split("token=")[1]
    assert b.get(f"/dashboard/reset?token={token}").status_code == 400


def test_changing_the_password_signed_in_ends_the_other_sessions(
    client: TestClient, browser: Callable[[], Browser], mailbox: Mailbox
) -> None:
    here = confirmed_account(browser, mailbox, "ada@example.test")
    create_project(here, "P")
    there = browser()
    assert there.sign_in("ada@example.test").status_code == 303
    # A refresh token from the password grant, with the account's password.
    org_id = _projects(client, "ada@example.test")[0].org.id
    grant = client.post(
        "/v1/auth/token",
        json={"username": "ada@example.test", "password": PASSWORD, "org_id": org_id},
    )
    assert grant.status_code == 200, grant.text
    refresh = grant.json()["refresh_token"]

    r = here.post(
        "/dashboard/account/password",
        {
            "current": "wrong password here",
            "password": NEW_PASSWORD,
            "password_again": NEW_PASSWORD,
        },
        csrf=here.csrf("/dashboard/account"),
    )
    assert r.status_code == 401
    assert "current password is not right" in r.text
    assert 'id="current-error"' in r.text  # next to the field it is about
    r = here.post(
        "/dashboard/account/password",
        {"current": PASSWORD, "password": "short", "password_again": "other"},
        csrf=here.csrf("/dashboard/account"),
    )
    assert r.status_code == 400
    assert 'id="password-error"' in r.text and 'id="password_again-error"' in r.text
    r = here.post(
        "/dashboard/account/password",
        {"current": PASSWORD, "password": NEW_PASSWORD, "password_again": NEW_PASSWORD},
        csrf=here.csrf("/dashboard/account"),
    )
    assert r.status_code == 303
    assert here.get("/dashboard/keys").status_code == 200  # this browser got a new session
    assert there.get("/dashboard/keys").status_code == 303  # the other one is signed out
    r = client.post(
        "/v1/auth/token", json={"grant_type": "refresh_token", "refresh_token": refresh}
    )
    assert r.status_code == 400
    assert mailbox.next("ada@example.test")["Subject"].endswith("password was changed")


def test_a_user_created_by_an_org_changes_its_own_password(
    org: Org, owner: Browser, browser: Callable[[], Browser], mailbox: Mailbox
) -> None:
    other = browser()
    assert other.sign_in("owner@acme.test").status_code == 303
    r = owner.post(
        "/dashboard/account/password",
        {"current": PASSWORD, "password": NEW_PASSWORD, "password_again": NEW_PASSWORD},
        csrf=owner.csrf("/dashboard/account"),
    )
    assert r.status_code == 303
    assert owner.get("/dashboard/keys").status_code == 200
    assert other.get("/dashboard/keys").status_code == 303
    assert browser().sign_in("owner@acme.test", NEW_PASSWORD).status_code == 303


def test_a_reset_link_is_used_once_under_concurrency(
    client: TestClient, browser: Callable[[], Browser], mailbox: Mailbox
) -> None:
    confirmed_account(browser, mailbox, "race@example.test")
    public_post(browser(), "/dashboard/forgot", "/dashboard/forgot", {"email": "race@example.test"})
    token = mailbox.link("race@example.test").split("token=")[1]
    runtime = runtime_of(client)

    async def race() -> list[object]:
        from apiward.core.models import RequestContext

        return await asyncio.gather(
            *(
                runtime.portal.reset_password(token, f"{NEW_PASSWORD} {i}", RequestContext())
                for i in range(8)
            ),
            return_exceptions=True,
        )

    results = client.portal.call(race)  # type: ignore[union-attr]
    won = [r for r in results if not isinstance(r, BaseException)]
    assert len(won) == 1
    assert all(type(r).__name__ == "LinkInvalid" for r in results if isinstance(r, BaseException))


def test_a_project_name_cannot_break_an_email_header(
    browser: Callable[[], Browser], mailbox: Mailbox
) -> None:
    b = confirmed_account(browser, mailbox)
    r = create_project(b, "Evil\r\nBcc: victim@example.test")
    assert r.status_code == 400
    assert "must not contain line breaks" in r.text
    assert create_project(b, "🧑‍💻 Dév team").status_code == 303
    invite(b, "x@example.test")
    assert mailbox.next("x@example.test")["Subject"] == (
        "You are invited to 🧑‍💻 Dév team on Acme Developers"
    )


def test_without_smtp_the_confirmation_link_is_in_the_log_and_works(sqlite_url: str) -> None:
    stream = io.StringIO()
    settings = fast_settings(database_url=sqlite_url, public_url=BASE_URL, log_level="info")
    with TestClient(create_app(settings), base_url=BASE_URL) as client:
        logs.configure("info", "json", stream, secret_prefixes=("aw", "awel"))
        try:
            b = Browser(client)
            assert sign_up(b, "dev@example.test").status_code == 200
            client.portal.call(runtime_of(client).portal.drain)  # type: ignore[union-attr]
            client.portal.call(runtime_of(client).postbox.drain)  # type: ignore[union-attr]
        finally:
            logs.configure("warning", "json")
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        email = next(line for line in lines if line["event"] == "email_not_sent_logged")
        assert email["to"] == "dev@example.test"
        link = re.search(r"http://\S+token=\S+", email["body"])
        assert link is not None
        assert b.get(path_of(link.group(0))).status_code == 303
        assert b.sign_in("dev@example.test").status_code == 303


def test_with_smtp_no_link_reaches_the_log(
    client: TestClient, browser: Callable[[], Browser], mailbox: Mailbox
) -> None:
    stream = io.StringIO()
    logs.configure("debug", "json", stream, secret_prefixes=("aw", "awel"))
    try:
        b = confirmed_account(browser, mailbox, "quiet@example.test")
        create_project(b, "Quiet")
        invite(b, "friend@example.test")
        public_post(b, "/dashboard/forgot", "/dashboard/forgot", {"email": "quiet@example.test"})
        links = [mailbox.link("friend@example.test"), mailbox.link("quiet@example.test")]
    finally:
        logs.configure("warning", "json")
    text = stream.getvalue()
    assert "email_sent" in text
    for link in links:
        assert link.split("token=")[1] not in text
    assert "awel_" not in text


def test_reset_requests_are_rate_limited_per_ip(sqlite_url: str, mailbox: Mailbox) -> None:
    settings = portal_settings(sqlite_url, mailbox, portal_ip_limit="3/hour")
    with TestClient(create_app(settings), base_url=BASE_URL) as client:
        b = Browser(client)
        for i in range(3):
            r = public_post(b, "/dashboard/forgot", "/dashboard/forgot", {"email": f"{i}@x.test"})
            assert r.status_code == 200
        r = public_post(b, "/dashboard/forgot", "/dashboard/forgot", {"email": "3@x.test"})
        assert r.status_code == 429
        assert "Too many attempts" in r.text


def test_with_sign_up_closed_an_invitation_still_opens_an_account(
    sqlite_url: str, mailbox: Mailbox
) -> None:
    settings = portal_settings(sqlite_url, mailbox, signup_enabled=False)
    with TestClient(create_app(settings), base_url=BASE_URL) as client:
        org = bootstrap(client, "Closed Co", "owner@closed.test")
        r = client.post(
            "/v1/invitations",
            headers=org.headers(),
            json={"email": "invitee@elsewhere.test", "role": "viewer"},
        )
        assert r.status_code == 201
        guest = Browser(client)
        path = path_of(mailbox.link("invitee@elsewhere.test"))
        page = guest.get(path).text
        r = guest.request(
            "POST",
            "/dashboard/invitations/accept",
            data={
                "csrf": csrf_of(page),
                "token": path.split("token=")[1],
                "name": "Invitee",
                "password": PASSWORD,
            },
        )
        assert (r.status_code, r.headers["location"]) == (303, "/dashboard/overview")
        assert "Closed Co" in guest.get("/dashboard/keys").text


def test_an_invitation_whose_role_was_deleted_is_refused(
    client: TestClient, org: Org, mailbox: Mailbox
) -> None:
    headers = org.headers()
    client.post("/v1/roles", headers=headers, json={"name": "auditor", "scopes": ["audit:read"]})
    client.post("/v1/invitations", headers=headers, json={"email": "a@x.test", "role": "auditor"})
    assert client.delete("/v1/roles/auditor", headers=headers).status_code == 204
    guest = Browser(client)
    path = path_of(mailbox.link("a@x.test"))
    r = public_post(
        guest,
        path,
        "/dashboard/invitations/accept",
        {"token": path.split("token=")[1], "name": "A", "password": PASSWORD},
    )
    assert r.status_code == 400
    assert "no longer exists" in r.text
