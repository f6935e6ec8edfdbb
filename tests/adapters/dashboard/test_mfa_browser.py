"""Two-factor sign-in in a real browser: turning it on from the account page with a
code computed here from the key the page shows, then signing in with the password and
a code. Chromium through Playwright, as in ``test_browser.py`` (skipped without them,
except in CI)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from apiward.adapters.http.app import create_app
from apiward.adapters.runtime import build
from apiward.core.totp import code_at, from_base32, step_of
from tests.adapters.dashboard.conftest import PASSWORD
from tests.adapters.dashboard.test_browser import chromium, context, expect, shoot, watch
from tests.conftest import fast_settings
from tests.live import serve

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

__all__ = ["chromium", "context"]  # fixtures shared with the dashboard's browser tests

OWNER = "owner@acme.test"
MEMBER = "vera@acme.test"
KEYS: dict[str, str] = {}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, chromium: Browser) -> Iterator[str]:
    db = Path(tmp_path_factory.mktemp("mfa-browser")) / "apiward.db"
    settings = fast_settings(database_url=f"sqlite+aiosqlite:///{db}")

    async def bootstrap() -> None:
        runtime = build(settings)
        await runtime.start(background=False)
        try:
            boot = await runtime.tenancy.bootstrap("Acme", OWNER, PASSWORD)
            operator = await runtime.operators.principal(boot.org.id)
            await runtime.tenancy.create_user(
                operator, MEMBER, name="Vera", password=PASSWORD, role="viewer"
            )
            made = await runtime.keys.create(operator, name="owner", scopes=["*", "owner:*"])
            KEYS["owner"] = made.plaintext
        finally:
            await runtime.stop()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, bootstrap()).result()
    with serve(create_app(settings)) as base:
        yield base


def _code(secret: str, steps: int = 0) -> str:
    return code_at(from_base32(secret), step_of(datetime.now(UTC)) + steps)


def _password(page: Page, base: str, email: str = OWNER) -> None:
    page.goto(f"{base}/dashboard/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def test_turn_on_two_factor_sign_in_then_sign_in_with_a_code(
    server: str, context: BrowserContext
) -> None:
    page = context.new_page()
    errors = watch(page)
    _password(page, server)
    page.wait_for_url(re.compile(r".*/dashboard/overview$"))
    page.goto(f"{server}/dashboard/account")
    page.get_by_role("button", name="Set up two-factor sign-in").click()
    secret = page.locator("#mfa-secret").input_value()
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    assert page.locator("#mfa-uri").input_value().startswith("otpauth://totp/")
    shoot(page, "mfa-enrol")
    page.get_by_label("Code from the app").fill(_code(secret))
    page.get_by_role("button", name="Turn on two-factor sign-in").click()
    expect(page.get_by_text("Store these recovery codes now.")).to_be_visible()
    assert page.locator("#recovery-codes li").count() == 10
    recovery = page.locator("#recovery-codes li").first.inner_text().strip()
    shoot(page, "mfa-recovery-codes")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r".*/dashboard/login\?done=signed_out$"))

    _password(page, server)
    page.wait_for_url(re.compile(r".*/dashboard/login/code\?next=.*"))
    expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()
    shoot(page, "mfa-code")
    # The next step's code: the enrolment used this one, and a code works once.
    page.get_by_label("Code").fill(_code(secret, 1))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r".*/dashboard/overview$"))
    expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()
    assert errors == []
    # A recovery code, once, when the authenticator is not at hand.
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r".*/dashboard/login\?done=signed_out$"))
    _password(page, server)
    page.wait_for_url(re.compile(r".*/dashboard/login/code\?next=.*"))
    page.get_by_label("Code").fill(recovery)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r".*/dashboard/overview$"))
    assert errors == []


def test_an_organisation_requiring_it_sends_a_member_to_set_it_up(
    server: str, context: BrowserContext
) -> None:
    owner = {"Authorization": f"Bearer {KEYS['owner']}"}
    on = httpx.patch(f"{server}/v1/org", headers=owner, json={"require_mfa": True})
    assert on.status_code == 200, on.text
    try:
        page = context.new_page()
        errors = watch(page)
        _password(page, server, MEMBER)
        page.wait_for_url(re.compile(r".*/dashboard/account\?done=mfa_required.*"))
        expect(page.get_by_text("requires two-factor sign-in of its members")).to_be_visible()
        expect(page.get_by_role("button", name="Set up two-factor sign-in")).to_be_visible()
        shoot(page, "mfa-required")
        page.goto(f"{server}/dashboard/keys")
        page.wait_for_url(re.compile(r".*/dashboard/account\?done=mfa_required.*"))
        assert errors == []
    finally:
        httpx.patch(f"{server}/v1/org", headers=owner, json={"require_mfa": False})
