"""Signing in and out: the session cookie, its storage, expiry, throttling and CSRF."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from apiward.adapters.http.app import create_app
from apiward.adapters.settings import Settings
from apiward.core.models import AuditFilter, PageRequest
from tests.adapters.dashboard.conftest import BASE_URL, PASSWORD, Browser, csrf_of
from tests.conftest import FakeClock, Org, bootstrap, fast_settings


def audit_types(org: Org, **filters: Any) -> list[str]:
    runtime = org.runtime

    async def run() -> list[str]:
        await runtime.portal.drain()  # refused sign-ins are written after the answer
        principal = await runtime.operators.principal(org.id)
        page = await runtime.audit.list(principal, AuditFilter(**filters), PageRequest(1, 100))
        return [e.type for e in page.items]

    result: list[str] = org.client.portal.call(run)  # type: ignore[union-attr]
    return result


def test_pages_send_people_without_a_session_to_sign_in(
    org: Org, browser: Callable[[], Browser]
) -> None:
    r = browser().get("/dashboard/audit?type=key.created")
    assert r.status_code == 303
    assert (
        r.headers["location"] == "/dashboard/login?next=%2Fdashboard%2Faudit%3Ftype%3Dkey.created"
    )


def test_sign_in_sets_a_httponly_samesite_session_cookie(owner: Browser) -> None:
    r = owner.get("/dashboard/keys")
    assert r.status_code == 200
    assert "owner@acme.test" in r.text


def test_session_cookie_flags(org: Org, browser: Callable[[], Browser]) -> None:
    r = browser().sign_in("owner@acme.test")
    assert r.status_code == 303
    assert r.headers["location"] == "/dashboard/overview"
    cookie = next(v for v in r.headers.get_list("set-cookie") if v.startswith("apiward_session="))
    flags = [f.strip().lower() for f in cookie.split(";")]
    assert "httponly" in flags
    assert "samesite=lax" in flags
    assert "path=/dashboard" in flags
    assert any(f.startswith("max-age=") for f in flags)
    assert "secure" not in flags  # plain http://127.0.0.1 in development


@pytest.mark.parametrize(
    ("base_url", "setting", "secure"),
    [
        ("http://127.0.0.1:8000", None, False),
        ("http://localhost:8000", None, False),
        ("https://dash.example.com", None, True),
        ("http://dash.example.com", None, True),
        ("http://127.0.0.1:8000", True, True),
        ("https://dash.example.com", False, False),
    ],
)
def test_secure_flag_defaults_to_on_except_plain_http_on_loopback(
    sqlite_url: str, base_url: str, setting: bool | None, secure: bool
) -> None:
    settings = fast_settings(database_url=sqlite_url, session_cookie_secure=setting)
    with TestClient(create_app(settings), base_url=base_url) as c:
        bootstrap(c)
        form = c.get("/dashboard/login")
        sign_in_cookie = form.headers["set-cookie"].lower()
        assert ("; secure" in sign_in_cookie) is secure
        # As a browser on HTTPS would: send the cookie back whatever the scheme here.
        c.cookies = {"apiward_signin": form.cookies["apiward_signin"]}
        r = c.post(
            "/dashboard/login",
            data={
                "csrf": csrf_of(form.text),
                "email": "owner@acme.test",
                "password": PASSWORD,
            },
            follow_redirects=False,
        )
        assert r.status_code == 303
        cookie = next(v for v in r.headers.get_list("set-cookie") if "apiward_session=" in v)
        assert ("; secure" in cookie.lower()) is secure


def test_the_store_keeps_only_a_hash_of_the_session(org: Org, owner: Browser) -> None:
    cookie = owner.session
    assert cookie is not None
    runtime = org.runtime

    async def find() -> tuple[bool, bool]:
        async with runtime.store.begin() as tx:
            by_digest = await tx.find_session(hashlib.sha256(cookie.encode()).hexdigest())
            by_plain = await tx.find_session(cookie)
        return by_digest is not None, by_plain is not None

    assert org.client.portal.call(find) == (True, False)  # type: ignore[union-attr]


def test_wrong_password_is_refused_and_audited(org: Org, browser: Callable[[], Browser]) -> None:
    b = browser()
    r = b.sign_in("owner@acme.test", "wrong password entirely")
    assert r.status_code == 401
    assert "Wrong email or password." in r.text
    assert 'value="owner@acme.test"' in r.text  # the email is kept in the form
    assert b.session is None
    assert "login.failed" in audit_types(org)


def test_sign_in_is_audited(org: Org, owner: Browser) -> None:
    assert "login.succeeded" in audit_types(org, type="login.succeeded")


def test_unknown_email_gets_the_same_answer(org: Org, browser: Callable[[], Browser]) -> None:
    r = browser().sign_in("nobody@acme.test", "whatever it is")
    assert r.status_code == 401
    assert "Wrong email or password." in r.text


def test_sign_in_failures_share_the_token_endpoint_throttle(
    org: Org, browser: Callable[[], Browser]
) -> None:
    b = browser()
    limit = org.runtime.settings.login_max_failures
    for _ in range(limit):
        assert b.sign_in("owner@acme.test", "wrong password entirely").status_code == 401
    throttled = b.sign_in("owner@acme.test")  # even the right password, for now
    assert throttled.status_code == 429
    assert "Too many failed sign-in attempts" in throttled.text
    token = org.client.post(
        "/v1/auth/token",
        data={"grant_type": "password", "username": "owner@acme.test", "password": PASSWORD},
    )
    assert token.status_code == 429  # the same counter


def test_an_email_in_several_orgs_signs_in_its_first_user_and_the_others_with_the_org_id(
    org: Org, other_org: Org, browser: Callable[[], Browser]
) -> None:
    """One password is checked per attempt (services/signin.py): without an
    organisation's id, the earliest user's; the others name their organisation."""
    org.create_user("both@example.test", "viewer", password=PASSWORD)
    other_org.create_user("both@example.test", "viewer", password="another password here")
    first = browser()
    assert first.sign_in("both@example.test").status_code == 303
    assert "Acme" in first.get("/dashboard/keys").text
    b = browser()
    unnamed = b.sign_in("both@example.test", "another password here")
    assert unnamed.status_code == 401
    assert "Wrong email or password." in unnamed.text
    chosen = b.sign_in("both@example.test", "another password here", org_id=other_org.id)
    assert chosen.status_code == 303
    assert "Globex" in b.get("/dashboard/keys").text


def test_sign_out_revokes_the_session(
    org: Org, owner: Browser, browser: Callable[[], Browser]
) -> None:
    stolen = owner.session
    r = owner.post("/dashboard/logout", {})
    assert r.status_code == 303
    assert r.headers["location"] == "/dashboard/login?done=signed_out"
    assert owner.session is None
    replay = browser()
    replay.jar.set("apiward_session", stolen or "", domain="127.0.0.1", path="/dashboard")
    assert replay.get("/dashboard/keys").status_code == 303
    assert "logout" in audit_types(org)


def test_login_page_redirects_when_already_signed_in(owner: Browser) -> None:
    r = owner.get("/dashboard/login")
    assert r.status_code == 303
    assert r.headers["location"] == "/dashboard/overview"


@pytest.mark.parametrize(
    ("target", "landing"),
    [
        ("/dashboard/audit?type=key.created", "/dashboard/audit?type=key.created"),
        ("https://evil.example/", "/dashboard/overview"),
        ("//evil.example/dashboard/", "/dashboard/overview"),
        ("/dashboard\\..\\evil", "/dashboard/overview"),
        ("/v1/keys", "/dashboard/overview"),
    ],
)
def test_sign_in_returns_only_to_dashboard_pages(
    org: Org, browser: Callable[[], Browser], target: str, landing: str
) -> None:
    r = browser().sign_in("owner@acme.test", next=target)
    assert r.headers["location"] == landing


def test_sign_in_form_needs_its_csrf_token(org: Org, browser: Callable[[], Browser]) -> None:
    b = browser()
    b.get("/dashboard/login")
    r = b.request(
        "POST",
        "/dashboard/login",
        data={"csrf": "forged", "email": "owner@acme.test", "password": PASSWORD},
    )
    assert r.status_code == 403
    assert "This form has expired" in r.text
    assert b.session is None


def test_forms_are_refused_without_the_session_token(org: Org, owner: Browser) -> None:
    key = org.create_key(["keys:read"])
    for token in ("", "0" * 64):
        r = owner.post(f"/dashboard/keys/{key['id']}/revoke", {}, csrf=token)
        assert r.status_code == 403
        assert "This form has expired" in r.text
    got = org.client.get(f"/v1/keys/{key['id']}", headers=org.headers())
    assert got.json()["state"] == "active"


def test_a_token_of_another_session_is_refused(
    org: Org, owner: Browser, browser: Callable[[], Browser]
) -> None:
    other = browser()
    assert other.sign_in("owner@acme.test").status_code == 303
    key = org.create_key(["keys:read"])
    r = owner.post(f"/dashboard/keys/{key['id']}/disable", {}, csrf=other.csrf())
    assert r.status_code == 403


@pytest.fixture
def timed(settings: Settings, clock: FakeClock) -> Iterator[Org]:
    with TestClient(
        create_app(settings, clock=clock), base_url=BASE_URL, raise_server_exceptions=False
    ) as c:
        yield bootstrap(c)


def test_sessions_expire(timed: Org, clock: FakeClock) -> None:
    b = Browser(timed.client)
    assert b.sign_in("owner@acme.test").status_code == 303
    assert b.get("/dashboard/keys").status_code == 200
    clock.advance(timed.runtime.settings.session_ttl_seconds - 5)
    assert b.get("/dashboard/keys").status_code == 200
    clock.advance(10)
    assert b.get("/dashboard/keys").status_code == 303


def test_a_disabled_user_is_signed_out(org: Org, signed_in: Callable[..., Browser]) -> None:
    dev = signed_in("developer")
    users = org.client.get("/v1/users", headers=org.headers()).json()["items"]
    dev_id = next(u["id"] for u in users if u["email"] == "developer@acme.test")
    r = org.client.patch(f"/v1/users/{dev_id}", headers=org.headers(), json={"disabled": True})
    assert r.status_code == 200
    assert dev.get("/dashboard/keys").status_code == 303


def test_dashboard_can_be_turned_off(sqlite_url: str) -> None:
    settings = fast_settings(database_url=sqlite_url, dashboard_enabled=False)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        assert c.get("/dashboard/login").status_code == 404


def test_every_dashboard_form_is_refused_without_its_token(org: Org, owner: Browser) -> None:
    """Each POST route of the dashboard (listed from the app, so a new form is covered
    the day it is added) answers 403 to a forged or missing token, and changes nothing."""
    from apiward.adapters.http.access import routes_of

    key = org.create_key(["keys:read"], name="Untouched")
    posts = sorted(
        {
            path
            for path, route in routes_of(org.client.app)  # type: ignore[arg-type]
            if path.startswith("/dashboard") and "POST" in (route.methods or ())
        }
    )
    assert len(posts) >= 30, posts
    for path in posts:
        target = re.sub(r"\{[a-z_]+\}", key["id"], path)
        for token in ("", "0" * 64):
            r = owner.post(target, {"name": "Changed", "env": "live"}, csrf=token)
            assert r.status_code == 403, (path, r.status_code)
    got = org.client.get(f"/v1/keys/{key['id']}", headers=org.headers()).json()
    assert (got["name"], got["state"]) == ("Untouched", "active")
