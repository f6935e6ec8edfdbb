"""The developer portal in a real browser (Playwright, Debian's Chromium), with a real
SMTP server: sign-up → confirmation → project → key → API call; an invitation; a
password reset. Links are read out of the received emails and opened in the browser.
Screenshots go to ``tests/artifacts/dashboard/``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest

from apiward.adapters.http.app import create_app
from tests.adapters.dashboard.test_browser import chromium, context, expect, shoot, watch
from tests.conftest import fast_settings
from tests.live import free_port, serve
from tests.mailbox import Mailbox, link_in, smtp_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

__all__ = ["chromium", "context"]  # fixtures shared with the dashboard's browser tests

PASSWORD = "a long enough passphrase"


@pytest.fixture(scope="module")
def mailbox() -> Iterator[Mailbox]:
    with smtp_server() as box:
        yield box


@pytest.fixture(scope="module")
def portal(
    tmp_path_factory: pytest.TempPathFactory, chromium: Browser, mailbox: Mailbox
) -> Iterator[str]:
    port = free_port()
    db = tmp_path_factory.mktemp("portal") / "apiward.db"
    settings = fast_settings(
        database_url=f"sqlite+aiosqlite:///{db}",
        smtp_host="127.0.0.1",
        smtp_port=mailbox.port,
        smtp_security="none",
        public_url=f"http://127.0.0.1:{port}",
        platform_name="Acme Developers",
        last_used_flush_seconds=0.2,
    )
    with serve(create_app(settings), port=port) as base:
        yield base


def sign_up(page: Page, base: str, email: str, name: str) -> None:
    page.goto(f"{base}/dashboard/login")
    page.get_by_role("link", name="Create one").click()
    page.get_by_label("Your name").fill(name)
    page.get_by_label("Work email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()


def sign_in(page: Page, email: str, password: str = PASSWORD) -> None:
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def new_project(page: Page, name: str) -> None:
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Create project").click()
    expect(page.get_by_text("The project is created")).to_be_visible()


def test_sign_up_confirm_create_project_and_key_then_call_the_api(
    portal: str, context: BrowserContext, mailbox: Mailbox
) -> None:
    page = context.new_page()
    errors = watch(page)
    sign_up(page, portal, "ada@example.test", "Ada Lovelace")
    shoot(page, "portal-check-inbox")

    page.goto(link_in(mailbox.next("ada@example.test")))
    expect(page.get_by_text("Your email address is confirmed")).to_be_visible()
    sign_in(page, "ada@example.test")
    page.wait_for_url(re.compile(r".*/dashboard/projects$"))
    expect(page.get_by_text("You have no project yet")).to_be_visible()
    shoot(page, "portal-projects-empty")

    new_project(page, "Weather API")
    expect(page.locator(".org")).to_have_text("Weather API")
    page.get_by_role("link", name="Create live key").click()
    page.get_by_label("Name", exact=True).fill("Backend")
    page.get_by_text("Scopes to manage").click()  # apiward's own scopes are folded
    page.get_by_role("checkbox", name=re.compile(r"^keys:read")).check()
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#secret").input_value()
    assert secret.startswith("aw_live_")

    answer = httpx.get(f"{portal}/v1/keys", headers={"Authorization": f"Bearer {secret}"})
    assert answer.status_code == 200
    assert [k["name"] for k in answer.json()["items"]] == ["Backend"]

    # A second project, then back to the first through the top bar's switcher.
    page.get_by_role("link", name="Projects", exact=True).first.click()
    new_project(page, "Maps API")
    expect(page.locator(".org")).to_have_text("Maps API")
    page.get_by_text("Switch project").click()
    shoot(page, "portal-switcher", full_page=False)
    page.get_by_role("button", name=re.compile(r"^Weather API")).click()
    expect(page.locator(".org")).to_have_text("Weather API")
    expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()
    page.get_by_role("navigation").get_by_role("link", name="API keys").click()
    expect(page.get_by_role("row").filter(has_text="Backend")).to_be_visible()
    assert errors == []


def test_an_invitation_brings_a_teammate_into_the_project(
    portal: str, chromium: Browser, mailbox: Mailbox
) -> None:
    owner_ctx, guest_ctx = chromium.new_context(), chromium.new_context()
    try:
        owner = owner_ctx.new_page()
        sign_up(owner, portal, "owner@example.test", "Olivia Owner")
        owner.goto(link_in(mailbox.next("owner@example.test")))
        sign_in(owner, "owner@example.test")
        new_project(owner, "Payments")
        owner.get_by_role("link", name="Members & roles").click()
        owner.get_by_label("Address to invite").fill("grace@example.test")
        owner.get_by_label("With the role").select_option("developer")
        owner.get_by_role("button", name="Send invitation").click()
        expect(owner.get_by_text("The invitation is sent")).to_be_visible()
        invitations = owner.locator("#invitations")
        expect(invitations.get_by_text("grace@example.test")).to_be_visible()
        shoot(owner, "portal-invitations")

        guest = guest_ctx.new_page()
        errors = watch(guest)
        guest.goto(link_in(mailbox.next("grace@example.test")))
        expect(guest.get_by_role("heading", name="Join Payments")).to_be_visible()
        guest.get_by_label("Your name").fill("Grace Hopper")
        guest.get_by_label("Choose a password").fill(PASSWORD)
        shoot(guest, "portal-accept")
        guest.get_by_role("button", name="Create account and join").click()
        guest.wait_for_url(re.compile(r".*/dashboard/overview$"))
        expect(guest.locator(".org")).to_have_text("Payments")
        expect(guest.locator(".role")).to_have_text("developer")
        assert errors == []

        owner.reload()
        expect(owner.get_by_text("No invitation is waiting for an answer.")).to_be_visible()
        expect(owner.get_by_text("Grace Hopper")).to_be_visible()
    finally:
        owner_ctx.close()
        guest_ctx.close()


def test_a_forgotten_password_is_reset_by_email(
    portal: str, context: BrowserContext, mailbox: Mailbox
) -> None:
    page = context.new_page()
    sign_up(page, portal, "reset@example.test", "Rita")
    page.goto(link_in(mailbox.next("reset@example.test")))

    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email").fill("reset@example.test")
    page.get_by_role("button", name="Email me a link").click()
    expect(page.get_by_text("If reset@example.test has an account")).to_be_visible()

    link = link_in(mailbox.next("reset@example.test"))
    page.goto(link)
    page.get_by_label("New password", exact=True).fill("another long passphrase")
    page.get_by_label("New password, again").fill("another long passphrase")
    shoot(page, "portal-reset")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_text("Your password is changed")).to_be_visible()

    sign_in(page, "reset@example.test", PASSWORD)
    expect(page.get_by_text("Wrong email or password.")).to_be_visible()
    sign_in(page, "reset@example.test", "another long passphrase")
    page.wait_for_url(re.compile(r".*/dashboard/projects$"))

    page.goto(link)
    expect(page.get_by_role("heading", name="This link does not work")).to_be_visible()
