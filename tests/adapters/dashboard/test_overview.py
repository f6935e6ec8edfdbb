"""The overview, the page after signing in: traffic and refusals of the last 24 hours,
the keys refused most, keys expiring soon or unused, the latest changes; each part for
those whose role reads it, each empty part saying what to do next."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from apiward.adapters.http.app import create_app
from apiward.adapters.settings import Settings
from tests.adapters.dashboard.conftest import BASE_URL, Browser
from tests.conftest import FakeClock, Org, bootstrap


@pytest.fixture
def timed_org(settings: Settings, clock: FakeClock) -> Iterator[Org]:
    """An org on a dashboard whose clock the test moves."""
    app = create_app(settings, clock=clock)
    with TestClient(app, base_url=BASE_URL, raise_server_exceptions=False) as c:
        yield bootstrap(c)


def overview(b: Browser, env: str = "live") -> str:
    r = b.get(f"/dashboard/overview?env={env}")
    assert r.status_code == 200, r.text
    return r.text


def section(page: str, title: str) -> str:
    start = page.index(title)
    end = page.find("</section>", start)
    return page[start:end]


def flush(org: Org) -> None:
    org.client.portal.call(org.runtime.flush_usage)  # type: ignore[union-attr]
    org.client.portal.call(org.runtime.flush_analytics)  # type: ignore[union-attr]


def test_signing_in_lands_on_the_overview(org: Org, browser: Callable[[], Browser]) -> None:
    b = browser()
    r = b.sign_in("owner@acme.test")
    assert (r.status_code, r.headers["location"]) == (303, "/dashboard/overview")
    assert '<a href="/dashboard/overview" aria-current="page">' in overview(b)


def test_traffic_and_the_keys_refused_most(org: Org, owner: Browser) -> None:
    noisy = org.create_key(["keys:read"], name="Noisy <script>")
    calm = org.create_key(["keys:read"], name="Calm")
    for _ in range(3):
        org.client.get("/v1/users", headers=org.headers(noisy["key"]))  # 403
    org.client.get("/v1/keys", headers=org.headers(noisy["key"]))
    org.client.get("/v1/users", headers=org.headers(calm["key"]))
    for _ in range(2):
        org.client.get("/v1/keys", headers=org.headers(calm["key"]))
    flush(org)
    page = overview(owner)
    total = re.search(r'data-testid="total">(\d+)</strong>', page)
    assert total and int(total.group(1)) >= 7  # and the owner's own calls that made the keys
    assert '<strong class="stat" data-testid="refused">4</strong>' in page
    assert '<svg class="chart"' in page
    refused = section(page, "Keys refused most")
    rows = re.findall(r'<a href="/dashboard/keys/(key_\w+)\?env=live">([^<]*)</a>', refused)
    assert rows == [(noisy["id"], "Noisy &lt;script&gt;"), (calm["id"], "Calm")]
    assert '<td data-label="Refused">3</td>' in refused


def test_an_environment_without_traffic_says_how_to_make_a_first_request(
    org: Org, owner: Browser
) -> None:
    page = overview(owner, "test")
    assert 'data-testid="no-traffic"' in page
    assert "curl http://127.0.0.1:8000/v1/auth/check" in page
    assert "No request of your test environment" in page


def test_the_curl_shown_uses_the_public_url(org: Org, owner: Browser) -> None:
    org.runtime.settings.public_url = "https://auth.example.com"
    try:
        assert "curl https://auth.example.com/v1/auth/check" in overview(owner)
    finally:
        org.runtime.settings.public_url = None


def test_keys_expiring_soon_and_keys_unused(timed_org: Org, clock: FakeClock) -> None:
    """With the injected clock: a key expiring in 3 days is listed, one in 20 days is
    not; a key made 40 days ago and never used is listed as unused, a used one is not;
    a revoked key is in neither list."""
    org = timed_org
    soon_at = (clock.now() + timedelta(days=43)).isoformat()
    later_at = (clock.now() + timedelta(days=60)).isoformat()
    soon = org.create_key(["keys:read"], name="Soon", expires_at=soon_at)
    later = org.create_key(["keys:read"], name="Later", expires_at=later_at)
    idle = org.create_key(["keys:read"], name="Idle")
    busy = org.create_key(["keys:read"], name="Busy")
    gone = org.create_key(["keys:read"], name="Gone", expires_at=soon_at)
    revoked = org.client.post(f"/v1/keys/{gone['id']}/revoke", headers=org.headers())
    assert revoked.status_code == 200
    clock.advance(40 * 86400)
    assert org.client.get("/v1/keys", headers=org.headers(busy["key"])).status_code == 200
    flush(org)
    owner = Browser(org.client)
    assert owner.sign_in("owner@acme.test").status_code == 303
    page = overview(owner)
    expiring = section(page, "Expiring within 14 days")
    assert soon["id"] in expiring
    assert later["id"] not in expiring and gone["id"] not in expiring
    unused = section(page, "Unused for 30 days")
    assert idle["id"] in unused and later["id"] in unused
    assert busy["id"] not in unused and gone["id"] not in unused


def test_each_part_is_shown_only_to_roles_that_read_it(
    org: Org, signed_in: Callable[..., Browser]
) -> None:
    nobody = signed_in(None, "norole@acme.test")
    page = overview(nobody)
    assert 'data-testid="nothing-to-see"' in page
    assert "Keys refused most" not in page and "Latest changes" not in page
    assert "Expiring within" not in page
    viewer = overview(signed_in("viewer"))
    assert "Keys refused most" in viewer and "Latest changes" in viewer
    assert 'data-testid="first-key"' not in viewer  # a viewer cannot create one


def test_the_latest_changes_link_to_the_key(org: Org, owner: Browser) -> None:
    key = org.create_key(["keys:read"], name="Audited")
    changes = section(overview(owner), "Latest changes")
    assert "key.created" in changes
    assert f'href="/dashboard/keys/{key["id"]}?env=live"' in changes
