"""Every page: security headers, navigation, static files, usage and the audit log."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from tests.adapters.dashboard.conftest import Browser
from tests.conftest import Org

PAGES = [
    "/dashboard/keys",
    "/dashboard/keys?env=test",
    "/dashboard/keys/new",
    "/dashboard/clients",
    "/dashboard/clients/new",
    "/dashboard/members",
    "/dashboard/usage",
    "/dashboard/audit",
]


def assert_secured(headers: object) -> None:
    assert hasattr(headers, "get")
    csp = headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "default-src 'none'" in csp
    assert headers.get("x-frame-options") == "DENY"
    assert headers.get("referrer-policy") == "no-referrer"
    assert headers.get("x-content-type-options") == "nosniff"
    assert headers.get("cache-control") == "no-store"


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_with_security_headers(org: Org, owner: Browser, path: str) -> None:
    r = owner.get(path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert_secured(r.headers)
    assert "<script>" not in r.text and " style=" not in r.text  # nothing inline for the CSP
    assert 'href="/dashboard/static/dashboard.css' in r.text


@pytest.mark.parametrize("path", ["/dashboard/login", "/dashboard/keys/key_nope/revoke"])
def test_sign_in_and_error_pages_are_secured_too(
    org: Org, owner: Browser, browser: Callable[[], Browser], path: str
) -> None:
    r = (browser() if path.endswith("login") else owner).get(path)
    assert_secured(r.headers)


@pytest.mark.parametrize("path", ["/dashboard/nope", "/dashboard/keys/key_x/nope/deeper"])
def test_an_unknown_dashboard_address_is_the_dashboards_404_page(
    owner: Browser, browser: Callable[[], Browser], path: str
) -> None:
    for visitor in (owner, browser()):  # signed in, and not
        r = visitor.get(path)
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("text/html")
        assert "There is no dashboard page at this address." in r.text
        assert_secured(r.headers)


def test_the_secret_page_is_not_stored(org: Org, owner: Browser) -> None:
    r = owner.post("/dashboard/keys", {"name": "k", "scope": ["keys:read"]})
    assert r.status_code == 201
    assert_secured(r.headers)


def test_home_leads_to_the_overview(owner: Browser) -> None:
    r = owner.get("/dashboard")
    assert r.status_code == 303
    assert r.headers["location"] == "/dashboard/overview"


def test_navigation_marks_the_current_page(owner: Browser) -> None:
    page = owner.get("/dashboard/clients").text
    nav = re.findall(r'<a href="(/dashboard/[a-z]+)"( aria-current="page")?>', page)
    assert [href for href, _ in nav] == [
        "/dashboard/overview",
        "/dashboard/keys",
        "/dashboard/clients",
        "/dashboard/members",
        "/dashboard/usage",
        "/dashboard/analytics",
        "/dashboard/audit",
        "/dashboard/webhooks",
        "/dashboard/account",
    ]
    assert [href for href, current in nav if current] == ["/dashboard/clients"]


def test_a_user_without_a_role_sees_no_pages(org: Org, signed_in: Callable[..., Browser]) -> None:
    nobody = signed_in(None, "norole@acme.test")
    r = nobody.get("/dashboard/keys")
    assert r.status_code == 403
    assert "Your role does not have the required permission: keys:read" in r.text
    assert 'aria-label="Settings"' in r.text and "/dashboard/clients" not in r.text


@pytest.mark.parametrize(
    ("name", "media_type"),
    [("dashboard.css", "text/css"), ("dashboard.js", "text/javascript")],
)
def test_static_files(owner: Browser, name: str, media_type: str) -> None:
    r = owner.get(f"/dashboard/static/{name}")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(media_type)
    assert r.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("name", ["nope.css", "..%2Fweb.py", "dashboard.css.map"])
def test_only_the_dashboards_own_files_are_served(owner: Browser, name: str) -> None:
    assert owner.get(f"/dashboard/static/{name}").status_code == 404


def test_usage_shows_plan_key_limits_and_credits(org: Org, owner: Browser) -> None:
    key = org.create_key(
        ["keys:read"],
        by=org.operator_key(),
        name="Metered",
        rate_limits=[{"name": "per-key", "rate": "100/day", "key": "credential"}],
        credits={"remaining": 1000, "refill": {"amount": 1000, "interval": "monthly"}},
    )
    for _ in range(3):
        assert org.client.get("/v1/keys", headers=org.headers(key["key"])).status_code == 200
    page = owner.get("/dashboard/usage").text
    assert "Metered" in page
    assert "per-key" in page and "100 per day, per credential" in page
    assert "97 left now" in page
    assert "<strong>997</strong> left" in page
    assert "refilled to 1000 monthly" in page
    assert "is on the <strong>default</strong> tier" in page


def test_usage_without_limits_says_so(org: Org, owner: Browser) -> None:
    org.create_key(["keys:read"], name="Free")
    page = owner.get("/dashboard/usage").text
    assert "Free" in page
    assert "No limits: requests are not rate limited." in page
    assert "unlimited" in page


def events(html: str) -> list[str]:
    return re.findall(r'<code class="event">([a-z_.]+)</code>', html)


def test_audit_log_lists_and_filters_events(org: Org, owner: Browser) -> None:
    key = org.create_key(["keys:read"], name="Audited")
    owner.post(f"/dashboard/keys/{key['id']}/disable", {})
    everything = events(owner.get("/dashboard/audit").text)
    assert {"key.created", "key.disabled", "login.succeeded"} <= set(everything)
    assert events(owner.get("/dashboard/audit?type=key.disabled").text) == ["key.disabled"]
    by_target = events(owner.get(f"/dashboard/audit?target={key['id']}").text)
    assert by_target == ["key.disabled", "key.created"]
    by_actor = events(owner.get(f"/dashboard/audit?actor={org.owner_id}").text)
    assert "key.disabled" in by_actor
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert events(owner.get(f"/dashboard/audit?since={tomorrow}").text) == []
    today = datetime.now(UTC).date().isoformat()
    assert "key.disabled" in events(owner.get(f"/dashboard/audit?until={today}").text)
    assert events(owner.get("/dashboard/audit?environment=test&type=key.disabled").text) == []
    assert events(owner.get("/dashboard/audit?environment=live&type=key.disabled").text) == [
        "key.disabled"
    ]


def test_a_bad_audit_date_is_explained_not_a_500(owner: Browser) -> None:
    r = owner.get("/dashboard/audit?since=yesterday")
    assert r.status_code == 200
    assert "The since date must be YYYY-MM-DD" in r.text


def test_a_bad_version_header_is_an_error_page_not_json(owner: Browser) -> None:
    r = owner.get("/dashboard/keys", headers={"Apiward-Version": "1999-01-01"})
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("text/html")
    assert "Unknown API version" in r.text


def test_analytics_without_traffic_says_how_to_make_a_first_request(owner: Browser) -> None:
    page = owner.get("/dashboard/analytics").text
    assert 'data-testid="no-traffic"' in page
    assert '/v1/auth/check -H "Authorization: Bearer YOUR_KEY"' in page
    assert "n/a" not in page and '<svg class="chart"' not in page


def test_the_chart_names_times_between_its_ends() -> None:
    from apiward.adapters.dashboard.analytics import chart, time_labels

    assert time_labels(0) == [] and time_labels(3) == [0, 1, 2]
    assert time_labels(24) == [0, 6, 12, 17, 23]
    assert time_labels(31) == [0, 8, 15, 22, 30]
    hours = list(range(1_700_000_000 // 3600 * 3600, 1_700_086_400, 3600))
    drawn = str(chart([], hours, "Verifications per hour"))
    assert len(re.findall(r">\d\d [A-Z][a-z]{2} \d\d:\d\d</text>", drawn)) == 5
