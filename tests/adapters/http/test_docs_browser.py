"""The interactive reference in a real browser with no way out: Chromium may load nothing
but apiward's own origin, and the page's strict CSP holds. It opens, authorizes with a key
and runs "Try it out" on GET /v1/keys; a screenshot is saved under tests/artifacts/docs/."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from apiward.adapters.http.app import create_app
from apiward.adapters.runtime import build
from tests.adapters.dashboard.test_browser import CHROMIUM_ARGS, chromium, expect, watch
from tests.conftest import fast_settings
from tests.live import serve

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Route

__all__ = ["chromium"]  # the module-scoped browser fixture

ARTIFACTS = Path(__file__).parents[2] / "artifacts" / "docs"


@pytest.fixture
def reference(tmp_path: Path, chromium: Browser) -> Iterator[tuple[str, str]]:
    settings = fast_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'docs.db'}")

    async def key() -> str:
        runtime = build(settings)
        await runtime.start(background=False)
        try:
            boot = await runtime.tenancy.bootstrap("Acme", "o@acme.test", "correct horse battery")
            operator = await runtime.operators.principal(boot.org.id)
            made = await runtime.keys.create(operator, name="docs", scopes=["keys:read"])
            return made.plaintext
        finally:
            await runtime.stop()

    with ThreadPoolExecutor(1) as pool:  # Playwright's loop runs in this thread
        plaintext = pool.submit(asyncio.run, key()).result()
    with serve(create_app(settings)) as base:
        yield base, plaintext


def test_docs_work_offline_under_a_strict_csp_and_try_it_out(
    chromium: Browser, reference: tuple[str, str]
) -> None:
    base, key = reference
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    outside: list[str] = []

    def offline(route: Route) -> None:  # no network but apiward itself
        if route.request.url.startswith(base):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", offline)
    page = context.new_page()
    errors = watch(page)
    response = page.goto(f"{base}/docs")
    assert response is not None
    assert "script-src 'self'" in (response.headers.get("content-security-policy") or "")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("apiward API")

    page.get_by_role("button", name="Authorize").first.click()
    page.locator("#auth-bearer-value").fill(key)
    page.locator(".modal-ux button.authorize").click()
    page.locator(".modal-ux button.btn-done").click()

    operation = page.locator("#operations-API_keys-list_keys_v1_keys_get")
    if operation.count() == 0:
        operation = page.locator(".opblock-get", has_text="/v1/keys").first
    operation.locator(".opblock-summary").first.click()
    try_it = operation.get_by_role("button", name="Try it out")
    if try_it.count():
        try_it.first.click()
    operation.get_by_role("button", name="Execute").first.click()
    expect(
        operation.locator(".live-responses-table tbody .response-col_status").first
    ).to_contain_text("200")
    expect(operation.locator(".live-responses-table .highlight-code").first).to_contain_text(
        '"items"'
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "try-it-out.png"), full_page=False)
    context.close()
    assert outside == []
    assert errors == [], errors
    assert CHROMIUM_ARGS  # the same headless flags as the dashboard's browser tests
