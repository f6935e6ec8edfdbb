"""End to end in a real browser: Playwright driving Debian's Chromium against a real server.

Covers signing in, creating a key and using it against the API, revoking it and seeing
the API refuse it, and a viewer who cannot create keys. Screenshots of the main pages
are saved to ``tests/artifacts/dashboard/``. No browser is downloaded: the tests use
``/usr/bin/chromium`` (``apt-get install chromium``) and skip without it or without the
``playwright`` package, except in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import Route

from apiward.adapters.http.app import create_app
from apiward.adapters.runtime import build
from apiward.core.limits import Credits, Refill
from apiward.core.models import RateOverride
from tests.adapters.dashboard.conftest import PASSWORD
from tests.conftest import IN_CI, fast_settings
from tests.live import serve

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Locator, Page
    from playwright.sync_api._generated import LocatorAssertions

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parents[2] / "artifacts" / "dashboard"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
DEVELOPER = "dev@acme.test"
OWNER = "owner@acme.test"
VIEWER = "viewer@acme.test"


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    return None


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    problem = _missing()
    if problem:
        message = f"Browser tests need Chromium and Playwright: {problem}."
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _app(db: Path) -> FastAPI:
    settings = fast_settings(
        database_url=f"sqlite+aiosqlite:///{db}",
        rate_limits=[{"name": "org-hourly", "rate": "10000/hour", "key": "org"}],
        last_used_flush_seconds=0.2,
        analytics_flush_seconds=0.2,
        webhook_poll_seconds=0.1,
        webhook_retry_base_seconds=0.1,
        webhook_max_attempts=2,
        api_scopes={"invoices:read": "Read invoices", "invoices:write": "Change invoices"},
    )

    async def bootstrap() -> None:
        runtime = build(settings)
        await runtime.start(background=False)
        try:
            boot = await runtime.tenancy.bootstrap("Acme", OWNER, PASSWORD)
            operator = await runtime.operators.principal(boot.org.id)
            await runtime.tenancy.create_user(
                operator, VIEWER, name="Vera Viewer", password=PASSWORD, role="viewer"
            )
            await runtime.tenancy.create_user(
                operator, DEVELOPER, name="Dev Eloper", password=PASSWORD, role="developer"
            )
            await runtime.tenancy.create_space(operator, "Team Europe")
            await runtime.tenancy.create_role(
                operator,
                "billing",
                ["invoices:read", "invoices:write"],
                "Reads and writes invoices",
            )
            await runtime.keys.create(
                operator,
                name="Partner sync",
                scopes=["invoices:read"],
                rate_limits=[RateOverride("per-key", "600/minute")],
                credits=Credits(4200, Refill(5000, "monthly")),
            )
        finally:
            await runtime.stop()

    # Playwright's sync API runs an event loop in this thread: bootstrap in another.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, bootstrap()).result()
    return create_app(settings)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, chromium: Browser) -> Iterator[str]:
    with serve(_app(tmp_path_factory.mktemp("browser") / "apiward.db")) as base:
        yield base


@pytest.fixture
def context(chromium: Browser) -> Iterator[BrowserContext]:
    ctx = chromium.new_context(viewport={"width": 1280, "height": 860})
    yield ctx
    ctx.close()


def expect(locator: Locator) -> LocatorAssertions:
    """Playwright's waiting assertions (imported late: the module loads without it)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def watch(page: Page) -> list[str]:
    """Console errors of the page (a CSP violation is one)."""
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", on_console)
    return errors


def shoot(page: Page, name: str, *, full_page: bool = True) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)


def sign_in(page: Page, base: str, email: str, *, keys: bool = True) -> None:
    """Sign in, land on the overview, and (with ``keys``) go on to the key list."""
    page.goto(f"{base}/dashboard")
    assert "/dashboard/login" in page.url
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r".*/dashboard/overview$"))
    expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()
    if keys:
        page.get_by_role("navigation").get_by_role("link", name="API keys").click()
        page.wait_for_url(re.compile(r".*/dashboard/keys$"))


def test_sign_in_create_use_and_revoke_a_key(server: str, context: BrowserContext) -> None:
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server)
    page = context.new_page()
    errors = watch(page)
    page.goto(f"{server}/dashboard")
    shoot(page, "sign-in")
    sign_in(page, server, OWNER)
    expect(page.get_by_role("heading", name="API keys")).to_be_visible()

    page.get_by_role("link", name="Create live key").click()
    page.get_by_label("Name", exact=True).fill("Billing service")
    page.get_by_text("Scopes to manage").click()  # apiward's own scopes are folded
    page.get_by_role("checkbox", name=re.compile(r"^keys:read")).check()
    page.get_by_role("checkbox", name=re.compile(r"^invoices:read")).check()
    shoot(page, "key-new")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_text("You won't see it again.")).to_be_visible()
    secret = page.locator("#secret").input_value()
    assert secret.startswith("aw_live_")
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_text("Copied to the clipboard.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    shoot(page, "key-created")

    listed = httpx.get(f"{server}/v1/keys", headers={"Authorization": f"Bearer {secret}"})
    assert listed.status_code == 200
    assert "Billing service" in [k["name"] for k in listed.json()["items"]]

    page.get_by_role("link", name="Done, I have stored it").click()
    row = page.get_by_role("row").filter(has_text="Billing service")
    expect(row.get_by_text(f"…{secret[-4:]}")).to_be_visible()
    assert secret not in page.content()
    shoot(page, "keys")

    row.get_by_role("link", name="Revoke").click()
    expect(page.get_by_role("heading", name="Revoke “Billing service”?")).to_be_visible()
    page.get_by_role("button", name="Revoke key").click()
    expect(page.get_by_text("The API key is revoked")).to_be_visible()
    expect(row.get_by_text("revoked")).to_be_visible()

    refused = httpx.get(f"{server}/v1/keys", headers={"Authorization": f"Bearer {secret}"})
    assert refused.status_code == 401
    assert refused.json()["message"] == "API key has been revoked"
    assert errors == []


def test_a_key_is_found_opened_and_edited(server: str, context: BrowserContext) -> None:
    page = context.new_page()
    errors = watch(page)
    sign_in(page, server, OWNER)
    page.get_by_label("Search").fill("partner")
    page.get_by_role("button", name="Find").click()
    expect(page.get_by_text("1 key found")).to_be_visible()
    page.get_by_role("link", name="Partner sync").click()
    expect(page.get_by_role("heading", name="Partner sync")).to_be_visible()
    expect(page.get_by_text("credits left")).to_be_visible()
    expect(page.get_by_text("600 per minute")).to_be_visible()
    shoot(page, "key-page")

    page.get_by_role("link", name="Edit").click()
    expect(page.get_by_role("checkbox", name=re.compile(r"^invoices:read"))).to_be_checked()
    page.get_by_label("Name", exact=True).fill("")
    page.get_by_label("IP allow-list").fill("not an address")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_text("Correct the 2 fields marked below.")).to_be_visible()
    expect(page.get_by_label("Name", exact=True)).to_have_attribute("aria-invalid", "true")
    shoot(page, "key-edit-errors")
    page.get_by_label("Name", exact=True).fill("Partner sync (EU)")
    page.get_by_label("IP allow-list").fill("203.0.113.0/24")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_text("The API key is changed.")).to_be_visible()
    expect(page.get_by_role("heading", name="Partner sync (EU)")).to_be_visible()
    expect(page.locator(".key-facts").get_by_text("203.0.113.0/24")).to_be_visible()
    # The form refused with its errors is a 400 page, which the console reports; any
    # other console error (a CSP violation, say) fails the test.
    assert [e for e in errors if "status of 400 (Bad Request)" not in e] == []


def test_a_webhook_is_added_tested_and_redelivered(server: str, context: BrowserContext) -> None:
    from tests.adapters.http.test_webhooks import Receiver

    receiver = Receiver()
    receiver.answers["/hook"] = [200, 503, 503]  # the test event passes; the next fails
    hooks = Starlette(routes=[Route("/{name}", receiver.handle, methods=["POST"])])
    with serve(hooks) as base:
        page = context.new_page()
        errors = watch(page)
        sign_in(page, server, OWNER, keys=False)
        shoot(page, "overview")
        page.get_by_role("navigation").get_by_role("link", name="Webhooks").click()
        page.get_by_role("link", name="Add endpoint").click()
        page.get_by_label("URL").fill(f"{base}/hook")
        page.get_by_role("checkbox", name=re.compile(r"^key\.created")).check()
        shoot(page, "webhook-new")
        page.get_by_role("button", name="Add endpoint").click()
        expect(page.get_by_text("You won't see it again.")).to_be_visible()
        assert page.locator("#secret").input_value().startswith("whsec_")
        page.get_by_role("link", name="Done, I have stored it").click()
        endpoint = page.url
        page.get_by_role("button", name="Send a test event").click()
        expect(page.get_by_text("A webhook.test event is queued")).to_be_visible()
        for _ in range(50):
            if receiver.at("/hook"):
                break
            page.wait_for_timeout(100)
        # A key created: an event the endpoint fails to take, twice.
        page.goto(f"{server}/dashboard/keys/new")
        page.get_by_label("Name", exact=True).fill("Hooked")
        page.get_by_role("checkbox", name=re.compile(r"^invoices:read")).check()
        shoot(page, "key-new-with-the-apis-scopes")
        page.get_by_role("button", name="Create key").click()
        expect(page.get_by_text("You won't see it again.")).to_be_visible()
        page.goto(endpoint)
        redeliver = page.get_by_role("button", name="Redeliver")
        for _ in range(50):
            page.reload()
            if redeliver.count():
                break
            page.wait_for_timeout(200)
        shoot(page, "webhook-deliveries")
        redeliver.click()
        expect(page.get_by_text("The delivery is queued again")).to_be_visible()
        for _ in range(50):
            if len(receiver.at("/hook")) == 4:
                break
            page.wait_for_timeout(100)
        assert [c.event["type"] for c in receiver.at("/hook")] == [
            "webhook.test",
            "key.created",
            "key.created",
            "key.created",
        ]
        assert errors == []


def test_an_edit_beyond_ones_role_is_refused_next_to_the_scopes(
    server: str, context: BrowserContext
) -> None:
    page = context.new_page()
    errors = watch(page)
    sign_in(page, server, DEVELOPER)
    page.get_by_role("link", name="Create live key").click()
    page.get_by_label("Name", exact=True).fill("Dev's key")
    page.get_by_role("checkbox", name=re.compile(r"^invoices:read")).check()
    page.get_by_role("button", name="Create key").click()
    page.get_by_role("link", name="Done, I have stored it").click()
    page.get_by_role("link", name="Dev's key").click()
    page.get_by_role("link", name="Edit").click()
    page.get_by_label("Other scopes").fill("users:manage")
    page.get_by_role("button", name="Save changes").click()
    scopes = page.get_by_label("Other scopes")
    expect(scopes).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#scopes-error")).to_contain_text("users:manage")
    shoot(page, "key-edit-refused")
    page.get_by_role("link", name="Cancel").click()
    expect(page.locator(".key-facts")).not_to_contain_text("users:manage")
    assert [e for e in errors if "status of 400 (Bad Request)" not in e] == []


def test_clients_members_usage_and_audit_pages(server: str, context: BrowserContext) -> None:
    page = context.new_page()
    errors = watch(page)
    sign_in(page, server, OWNER)

    page.get_by_role("link", name="OAuth clients").click()
    page.get_by_role("link", name="Create live client").click()
    page.get_by_label("Name", exact=True).fill("Partner portal")
    page.get_by_text("Scopes to manage").click()  # apiward's own scopes are folded
    page.get_by_role("checkbox", name=re.compile(r"^keys:read")).check()
    page.get_by_role("button", name="Create client").click()
    client_id = page.locator("#client-id").input_value()
    client_secret = page.locator("#secret").input_value()
    token = httpx.post(
        f"{server}/v1/auth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, client_secret),
    )
    assert token.status_code == 200
    shoot(page, "client-created")
    page.get_by_role("link", name="Done, I have stored it").click()
    expect(page.get_by_role("cell", name="Partner portal")).to_be_visible()
    shoot(page, "clients")

    page.get_by_role("link", name="Members & roles").click()
    expect(page.get_by_text(VIEWER)).to_be_visible()
    page.get_by_text("Add a user").click()
    page.get_by_label("Email").fill("sam@acme.test")
    page.get_by_label("Name optional").fill("Sam Support")
    page.get_by_role("button", name="Add user").click()
    expect(page.get_by_text("The user is created.")).to_be_visible()
    shoot(page, "members")

    page.get_by_role("link", name="Rate limits & usage").click()
    expect(page.get_by_role("heading", name="Organisation plan")).to_be_visible()
    shoot(page, "usage")

    page.get_by_role("link", name="Audit log").click()
    page.get_by_label("Event").fill("client.created")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("cell", name="client.created")).to_be_visible()
    page.get_by_role("link", name="Reset").click()
    expect(page.locator("code.event", has_text="user.created").first).to_be_visible()
    shoot(page, "audit")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You have signed out.")).to_be_visible()
    page.goto(f"{server}/dashboard/keys")
    assert "/dashboard/login" in page.url
    assert errors == []


def test_phone_width(server: str, chromium: Browser) -> None:
    ctx = chromium.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True
    )
    try:
        page = ctx.new_page()
        sign_in(page, server, OWNER)
        for path, name in (("/keys", "keys"), ("/members", "members"), ("/audit", "audit")):
            page.goto(f"{server}/dashboard{path}")
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{path} scrolls sideways at 390px ({width}px wide)"
            shoot(page, f"phone-{name}", full_page=False)
    finally:
        ctx.close()


def test_a_key_can_be_created_with_the_keyboard_alone(server: str, context: BrowserContext) -> None:
    page = context.new_page()
    sign_in(page, server, OWNER)
    active = "document.activeElement.textContent.trim()"
    page.keyboard.press("Tab")
    assert page.evaluate(active) == "Skip to content"
    for _ in range(20):
        page.keyboard.press("Tab")
        if page.evaluate(active) == "Create live key":
            break
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/dashboard/keys/new\?env=live$"))
    assert page.evaluate("document.activeElement.id") == "name"  # autofocus
    page.keyboard.type("Typed by keyboard")
    page.keyboard.press("Tab")  # the environment radios
    page.keyboard.press("Tab")  # the first scope
    page.keyboard.press("Space")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")  # submits the form from the name field
    expect(page.get_by_text("You won't see it again.")).to_be_visible()
    assert page.locator("#secret").input_value().startswith("aw_live_")


def test_a_viewer_cannot_create_keys(server: str, context: BrowserContext) -> None:
    page = context.new_page()
    sign_in(page, server, VIEWER)
    expect(page.get_by_role("heading", name="API keys")).to_be_visible()
    assert page.get_by_role("link", name=re.compile("Create")).count() == 0
    assert page.get_by_role("link", name="Revoke").count() == 0
    shoot(page, "viewer-keys")
    answer = page.goto(f"{server}/dashboard/keys/new")
    assert answer is not None and answer.status == 403
    expect(page.get_by_text("does not have the required permission: keys:write")).to_be_visible()
    token = page.locator("input[name=csrf]").first.input_value()
    posted = page.request.post(
        f"{server}/dashboard/keys",
        form={"csrf": token, "name": "sneaky", "env": "live", "scope": "keys:read"},
    )
    assert posted.status == 403
    page.goto(f"{server}/dashboard/keys")
    assert page.get_by_text("sneaky").count() == 0


def test_analytics_draws_verifications_by_outcome(server: str, context: BrowserContext) -> None:
    token = httpx.post(
        f"{server}/v1/auth/token", json={"username": OWNER, "password": PASSWORD}
    ).json()["access_token"]
    for _ in range(5):
        httpx.get(f"{server}/v1/keys", headers={"Authorization": f"Bearer {token}"})
    for _ in range(2):
        httpx.get(f"{server}/v1/keys", headers={"Authorization": "Bearer aw_live_nope"})
    page = context.new_page()
    errors = watch(page)
    sign_in(page, server, OWNER)
    page.get_by_role("link", name="Analytics").click()
    expect(page.get_by_role("heading", name="Analytics")).to_be_visible()
    deadline = time.monotonic() + 10
    while page.get_by_test_id("total").inner_text() == "0" and time.monotonic() < deadline:
        time.sleep(0.3)  # the counts arrive within the flush interval
        page.reload()
    assert int(page.get_by_test_id("total").inner_text().replace(",", "")) >= 5
    expect(page.locator("svg.chart rect").first).to_be_visible()
    expect(page.locator(".legend")).to_contain_text("VALID")
    shoot(page, "analytics")
    page.get_by_role("link", name="7d").click()
    expect(page.locator("svg.chart")).to_be_visible()
    assert errors == [], errors
