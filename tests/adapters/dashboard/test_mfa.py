"""Two-factor sign-in to the dashboard: enrolment from the account page, the sign-in's
second step, recovery codes, replays, the time window on the injected clock, the
throttle, the audit trail, and the secret kept sealed."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import segno
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from apiward.adapters.cli.main import app as cli
from apiward.adapters.dashboard.sessions import MFA_COOKIE, PENDING_SECONDS
from apiward.adapters.http.app import create_app
from apiward.adapters.settings import Settings
from apiward.core.ids import new_id
from apiward.core.models import Account, AuditFilter, PageRequest
from apiward.core.totp import STEP_SECONDS, code_at, from_base32, step_of
from tests.adapters.dashboard.conftest import BASE_URL, PASSWORD, Browser, csrf_of
from tests.conftest import FakeClock, Org, bootstrap, fast_settings

OWNER = "owner@acme.test"
_SECRET = re.compile(r'id="mfa-secret"[^>]*value="([^"]+)"')
_URI = re.compile(r'id="mfa-uri"[^>]*value="([^"]+)"')
_RECOVERY = re.compile(r"<li>([a-z2-9]{5}-[a-z2-9]{5})</li>")


@pytest.fixture
def app_settings(sqlite_url: str) -> Settings:
    return fast_settings(database_url=sqlite_url, login_max_failures=5)


@pytest.fixture
def timed(app_settings: Settings, clock: FakeClock) -> Iterator[Org]:
    """An org on an app at a loopback URL whose clock the test moves."""
    app = create_app(app_settings, clock=clock)
    with TestClient(app, base_url=BASE_URL, raise_server_exceptions=False) as c:
        yield bootstrap(c)


@pytest.fixture
def browser(timed: Org) -> Callable[[], Browser]:
    return lambda: Browser(timed.client)


@pytest.fixture
def owner(timed: Org, browser: Callable[[], Browser]) -> Browser:
    b = browser()
    assert b.sign_in(OWNER).status_code == 303
    return b


def _code(secret: str, clock: FakeClock, steps: int = 0) -> str:
    return code_at(from_base32(secret), step_of(clock.now()) + steps)


def enrol(b: Browser, clock: FakeClock) -> tuple[str, list[str]]:
    """Turn two-factor sign-in on from the account page: the key and the recovery codes."""
    assert (
        b.post("/dashboard/account/mfa/begin", {}, csrf=b.csrf("/dashboard/account")).status_code
        == 303
    )
    page = b.get("/dashboard/account").text
    match = _SECRET.search(page)
    assert match, "the account page shows no key"
    secret = match.group(1)
    r = b.post(
        "/dashboard/account/mfa/confirm",
        {"code": _code(secret, clock)},
        csrf=b.csrf("/dashboard/account"),
    )
    assert r.status_code == 200, r.text
    codes = _RECOVERY.findall(r.text)
    assert len(codes) == 10
    return secret, codes


def password_step(b: Browser, email: str = OWNER, **extra: str) -> httpx.Response:
    r = b.sign_in(email, **extra)
    assert r.status_code == 303, r.text
    assert r.headers["location"].startswith("/dashboard/login/code")
    assert b.session is None  # no session before the code
    assert b.jar.get(MFA_COOKIE)
    return r


def code_step(b: Browser, code: str, next_: str = "/dashboard/overview") -> httpx.Response:
    page = b.get(f"/dashboard/login/code?next={next_}")
    if page.status_code != 200:
        return page
    return b.request(
        "POST",
        "/dashboard/login/code",
        data={"csrf": csrf_of(page.text), "code": code, "next": next_},
    )


def events(org: Org, *types: str, org_id: str | None = "") -> list[Any]:
    runtime = org.runtime

    async def read() -> list[Any]:
        async with runtime.store.begin() as tx:
            if org_id == "":
                found = await tx.list_audit(org.id, AuditFilter(), PageRequest(1, 200))
                accounts = await tx.list_audit(None, AuditFilter(), PageRequest(1, 200))
                items = found.items + accounts.items
            else:
                items = (await tx.list_audit(org_id, AuditFilter(), PageRequest(1, 200))).items
        return [e for e in items if e.type in types]

    return org.client.portal.call(read)  # type: ignore[union-attr]


def test_enrolment_shows_the_key_and_turns_on_only_with_a_right_code(
    timed: Org, owner: Browser, clock: FakeClock
) -> None:
    page = owner.get("/dashboard/account").text
    assert "Set up two-factor sign-in" in page
    owner.post("/dashboard/account/mfa/begin", {}, csrf=owner.csrf("/dashboard/account"))
    page = owner.get("/dashboard/account").text
    secret = _SECRET.search(page).group(1)  # type: ignore[union-attr]
    uri = _URI.search(page).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)  # 160 bits, base32
    assert uri.startswith("otpauth://totp/apiward:owner@acme.test?")
    assert f"secret={secret}" in uri and "period=30" in uri and "digits=6" in uri
    # The QR code draws exactly this link (inline, no style attribute for the CSP to refuse).
    qr = re.search(r'data-testid="mfa-qr">(<svg.*?</svg>)</figure>', page, re.S)
    assert qr and "style=" not in qr.group(1) and "<script" not in qr.group(1)
    drawn = re.findall(r' d="([^"]+)"', qr.group(1))
    expected = re.findall(r' d="([^"]+)"', segno.make(uri, error="m").svg_inline(light="#fff"))
    assert drawn == expected and len(drawn) == 2  # the background, then the modules
    # A wrong code leaves it off, and the same key waiting.
    wrong = owner.post(
        "/dashboard/account/mfa/confirm",
        {"code": _code(secret, clock, 5)},
        csrf=owner.csrf("/dashboard/account"),
    )
    assert wrong.status_code == 401
    assert "That code is not right" in wrong.text
    assert _SECRET.search(wrong.text).group(1) == secret  # type: ignore[union-attr]
    done = owner.post(
        "/dashboard/account/mfa/confirm",
        {"code": _code(secret, clock)},
        csrf=owner.csrf("/dashboard/account"),
    )
    assert done.status_code == 200
    assert len(set(_RECOVERY.findall(done.text))) == 10
    # Shown once: the page never draws them again, nor the key.
    again = owner.get("/dashboard/account").text
    assert not _RECOVERY.findall(again) and secret not in again
    assert 'data-testid="mfa-qr"' not in again
    assert "10 recovery codes left." in again
    [enabled] = events(timed, "user.mfa_enabled")
    assert enabled.target_id == timed.owner_id and enabled.org_id == timed.id
    # Turning it on again needs turning it off first.
    begin = owner.post("/dashboard/account/mfa/begin", {}, csrf=owner.csrf("/dashboard/account"))
    assert begin.status_code == 400
    assert "already on" in begin.text


def test_sign_in_asks_for_the_code_after_the_password(
    timed: Org, owner: Browser, browser: Callable[[], Browser], clock: FakeClock
) -> None:
    secret, _ = enrol(owner, clock)
    clock.advance(STEP_SECONDS)
    b = browser()
    password_step(b)
    # The pending sign-in opens no page.
    assert b.get("/dashboard/overview").headers["location"].startswith("/dashboard/login")
    wrong = code_step(b, "000000" if _code(secret, clock) != "000000" else "111111")
    assert wrong.status_code == 401
    assert "That code is not right" in wrong.text
    assert b.session is None
    right = code_step(b, _code(secret, clock), "/dashboard/keys")
    assert right.status_code == 303
    assert right.headers["location"] == "/dashboard/keys"
    assert b.session is not None and not b.jar.get(MFA_COOKIE)
    assert b.get("/dashboard/keys").status_code == 200
    [failed] = events(timed, "login.mfa_failed")
    assert failed.target_id == timed.owner_id
    # A wrong password still answers as before, with no second step.
    assert browser().sign_in(OWNER, "not the password at all").status_code == 401


def test_a_code_works_once_within_its_window(
    timed: Org, owner: Browser, browser: Callable[[], Browser], clock: FakeClock
) -> None:
    secret, _ = enrol(owner, clock)
    clock.advance(STEP_SECONDS)
    code = _code(secret, clock)
    first = browser()
    password_step(first)
    assert code_step(first, code).status_code == 303
    thief = browser()
    password_step(thief)
    replayed = code_step(thief, code)
    assert replayed.status_code == 401  # the same code, seen once already
    assert thief.session is None
    # Nor an older one still in the window.
    assert code_step(thief, _code(secret, clock, -1)).status_code == 401
    clock.advance(STEP_SECONDS)
    assert code_step(thief, _code(secret, clock)).status_code == 303


def test_codes_of_one_step_either_side_are_taken_and_no_further(
    timed: Org, owner: Browser, browser: Callable[[], Browser], clock: FakeClock
) -> None:
    secret, _ = enrol(owner, clock)
    clock.advance(10 * STEP_SECONDS)
    b = browser()
    password_step(b)
    assert code_step(b, _code(secret, clock, -2)).status_code == 401
    assert code_step(b, _code(secret, clock, 2)).status_code == 401
    assert code_step(b, _code(secret, clock, -1)).status_code == 303  # a slow phone
    clock.advance(3 * STEP_SECONDS)
    b = browser()
    password_step(b)
    assert code_step(b, _code(secret, clock, 1)).status_code == 303  # a fast one


def test_a_pending_sign_in_expires(
    timed: Org, owner: Browser, browser: Callable[[], Browser], clock: FakeClock
) -> None:
    secret, _ = enrol(owner, clock)
    b = browser()
    password_step(b)
    clock.advance(PENDING_SECONDS + 1)
    late = code_step(b, _code(secret, clock))
    assert late.status_code == 401
    assert "Your sign-in has timed out" in late.text
    assert b.session is None
    # Without the pending cookie at all (another browser), the same.
    other = browser()
    r = other.request(
        "POST",
        "/dashboard/login/code",
        data={"csrf": csrf_of(other.get("/dashboard/login").text), "code": _code(secret, clock)},
    )
    assert r.status_code == 401 and other.session is None
    # A forged pending cookie is no sign-in either.
    other.jar.set(MFA_COOKIE, "eyJhIjoiYWNjX3gifQ", domain="127.0.0.1", path="/dashboard")
    assert "Your sign-in has timed out" in other.get("/dashboard/login/code").text


def test_a_recovery_code_signs_in_once(
    timed: Org, owner: Browser, browser: Callable[[], Browser], clock: FakeClock
) -> None:
    _, codes = enrol(owner, clock)
    b = browser()
    password_step(b)
    assert code_step(b, codes[3].upper().replace("-", " ")).status_code == 303
    again = browser()
    password_step(again)
    assert code_step(again, codes[3]).status_code == 401
    assert code_step(again, "zzzzz-zzzzz").status_code == 401
    assert "9 recovery codes left." in b.get("/dashboard/account").text
    [used] = events(timed, "user.mfa_recovery_used")
    assert used.data["left"] == 9


def test_code_attempts_are_throttled_and_a_right_password_gives_no_more(
    timed: Org, owner: Browser, browser: Callable[[], Browser], clock: FakeClock
) -> None:
    secret, _ = enrol(owner, clock)
    clock.advance(STEP_SECONDS)
    limit = timed.runtime.settings.login_max_failures
    b = browser()
    password_step(b)
    wrong = "000000" if _code(secret, clock) != "000000" else "111111"
    for _ in range(limit):
        assert code_step(b, wrong).status_code == 401
    throttled = code_step(b, _code(secret, clock))  # even the right code, for now
    assert throttled.status_code == 429
    assert "Too many failed sign-in attempts" in throttled.text
    fresh = browser()
    password_step(fresh)  # the password is right, and forgets its own failures only
    assert code_step(fresh, _code(secret, clock)).status_code == 429
    assert fresh.session is None
    [*_, last] = events(timed, "login.mfa_failed")
    assert last.target_id == timed.owner_id


def test_turning_it_off_needs_a_code_not_the_password_alone(
    timed: Org, owner: Browser, browser: Callable[[], Browser], clock: FakeClock
) -> None:
    secret, recovery = enrol(owner, clock)
    clock.advance(STEP_SECONDS)
    token = owner.csrf("/dashboard/account")
    empty = owner.post("/dashboard/account/mfa/disable", {}, csrf=token)
    assert empty.status_code == 400
    password = owner.post("/dashboard/account/mfa/disable", {"current": PASSWORD}, csrf=token)
    assert password.status_code == 400  # a password alone is what the factor outlasts
    wrong = owner.post("/dashboard/account/mfa/disable", {"code": "000000"}, csrf=token)
    assert wrong.status_code == 401
    off = owner.post("/dashboard/account/mfa/disable", {"code": _code(secret, clock)}, csrf=token)
    assert off.status_code == 303
    assert browser().sign_in(OWNER).headers["location"] == "/dashboard/overview"
    # On again, then off with a recovery code (the authenticator lost).
    _, recovery = enrol(owner, clock)
    token = owner.csrf("/dashboard/account")
    off = owner.post("/dashboard/account/mfa/disable", {"code": recovery[0]}, csrf=token)
    assert off.status_code == 303
    proofs = [e.data["proof"] for e in events(timed, "user.mfa_disabled")]
    assert proofs == ["code", "code"]


def test_the_secret_is_sealed_at_rest_the_codes_hashed_and_neither_logged(
    sqlite_url: str, clock: FakeClock, capfd: pytest.CaptureFixture[str]
) -> None:
    settings = fast_settings(database_url=sqlite_url, log_level="debug")
    with TestClient(
        create_app(settings, clock=clock), base_url=BASE_URL, raise_server_exceptions=False
    ) as c:
        org = bootstrap(c)
        b = Browser(c)
        assert b.sign_in(OWNER).status_code == 303
        secret, codes = enrol(b, clock)
        clock.advance(STEP_SECONDS)
        signer = Browser(c)
        password_step(signer)
        code = _code(secret, clock)
        assert code_step(signer, code).status_code == 303
        runtime = org.runtime

        async def rows() -> list[str]:
            engine = runtime.sql.engine
            async with engine.connect() as conn:
                factors = (await conn.execute(sa.text("SELECT * FROM mfa_factors"))).all()
                recovery = (await conn.execute(sa.text("SELECT * FROM mfa_recovery_codes"))).all()
            return [repr(tuple(r)) for r in [*factors, *recovery]]

        stored = " ".join(c.portal.call(rows))  # type: ignore[union-attr]
    raw = from_base32(secret)
    for needle in (secret, secret.lower(), raw.hex(), *codes, *(x.replace("-", "") for x in codes)):
        assert needle not in stored
    # The codes' digests are keyed by the deployment's secret and bound to their owner:
    # no unkeyed hash of a code, as typed or cleaned, is what the database holds.
    for code_ in codes:
        for text in (code_, code_.replace("-", "")):
            for prefix in (b"", b"apiward-recovery:"):
                assert hashlib.sha256(prefix + text.encode()).hexdigest() not in stored
    logs = capfd.readouterr()
    assert "smtp_not_configured" in logs.out  # the app's logs are captured here
    for needle in (secret, raw.hex(), *codes, code):
        assert needle not in logs.out + logs.err


def test_a_portal_account_signs_in_with_its_code(
    timed: Org, browser: Callable[[], Browser], clock: FakeClock
) -> None:
    runtime = timed.runtime

    async def make() -> None:
        password_hash = await runtime.tenancy.hash_password(PASSWORD, "ada@example.test")
        now = clock.now()
        account = Account(
            new_id("acc"), "ada@example.test", "Ada", password_hash, now, confirmed_at=now
        )
        async with runtime.store.begin() as tx:
            await tx.insert_account(account)

    timed.client.portal.call(make)  # type: ignore[union-attr]
    ada = browser()
    assert ada.sign_in("ada@example.test").status_code == 303
    secret, _ = enrol(ada, clock)
    clock.advance(STEP_SECONDS)
    b = browser()
    password_step(b, "ada@example.test")
    assert code_step(b, _code(secret, clock)).status_code == 303
    assert "Signed in as ada@example.test" in b.get("/dashboard/account").text
    [enabled] = events(timed, "user.mfa_enabled", org_id=None)
    assert enabled.target_type == "account"


def test_the_password_grant_is_refused_once_a_second_factor_is_on(
    timed: Org, owner: Browser, clock: FakeClock
) -> None:
    form = {"grant_type": "password", "username": OWNER, "password": PASSWORD}
    assert timed.client.post("/v1/auth/token", data=form).status_code == 200
    enrol(owner, clock)
    refused = timed.client.post("/v1/auth/token", data=form)
    assert refused.status_code == 400
    assert "second factor" in refused.text


def test_an_operator_turns_it_off_for_a_lost_device(
    app_settings: Settings,
    timed: Org,
    owner: Browser,
    browser: Callable[[], Browser],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    enrol(owner, clock)
    for name, value in (
        ("APIWARD_DATABASE_URL", app_settings.database_url),
        ("APIWARD_SECRET_KEY", "test-secret-that-is-at-least-32-bytes-long"),
    ):
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli, ["users", "reset-mfa", "OWNER@acme.test", "--json"])
    assert result.exit_code == 0, result.output
    assert timed.owner_id in result.output
    assert browser().sign_in(OWNER).headers["location"] == "/dashboard/overview"
    [off] = events(timed, "user.mfa_disabled")
    assert off.data["proof"] == "operator"
    again = CliRunner().invoke(cli, ["users", "reset-mfa", "owner@acme.test"])
    assert again.exit_code == 0 and "nothing to do" in again.output
    unknown = CliRunner().invoke(cli, ["users", "reset-mfa", "nobody@acme.test"])
    assert unknown.exit_code != 0


def test_an_organisation_can_require_a_second_factor_of_every_member(
    timed: Org, owner: Browser, browser: Callable[[], Browser], clock: FakeClock
) -> None:
    timed.create_user("viewer@acme.test", "viewer", password=PASSWORD)
    timed.create_user("admin@acme.test", "admin", password=PASSWORD)
    # Only an owner's powers turn it on or off: an admin's key (``*``) may not.
    admin_key = timed.client.post(
        "/v1/auth/token",
        data={"grant_type": "password", "username": "admin@acme.test", "password": PASSWORD},
    ).json()["access_token"]
    refused = timed.client.patch(
        "/v1/org", headers=timed.headers(admin_key), json={"require_mfa": True}
    )
    assert refused.status_code == 403, refused.text
    assert refused.json()["required_scope"] == "owner:manage"
    r = timed.client.patch("/v1/org", headers=timed.headers(), json={"require_mfa": True})
    assert r.status_code == 200, r.text
    assert r.json()["require_mfa"] is True
    assert timed.client.get("/v1/org", headers=timed.headers()).json()["require_mfa"] is True
    [updated] = events(timed, "org.updated")
    assert updated.data == {"require_mfa": True}
    # An owner without one is sent to set it up, from every page but the account's.
    sent = owner.get("/dashboard/keys")
    assert sent.status_code == 303
    assert sent.headers["location"] == "/dashboard/account?done=mfa_required"
    page = owner.get(sent.headers["location"])
    assert page.status_code == 200
    assert "requires two-factor sign-in of its members" in page.text
    # So is every other member, whatever their role.
    for email in ("admin@acme.test", "viewer@acme.test"):
        member = browser()
        assert member.sign_in(email).status_code == 303
        assert member.get("/dashboard/overview").status_code == 303, email
    # The password grant is no way around it.
    for email in ("admin@acme.test", "viewer@acme.test"):
        form = {"grant_type": "password", "username": email, "password": PASSWORD}
        assert timed.client.post("/v1/auth/token", data=form).status_code == 400
    # Set up: every page opens again.
    enrol(owner, clock)
    assert owner.get("/dashboard/keys").status_code == 200
    # And off again for the organisation.
    r = timed.client.patch("/v1/org", headers=timed.headers(), json={"require_mfa": False})
    assert r.json()["require_mfa"] is False
    viewer = browser()
    assert viewer.sign_in("viewer@acme.test").status_code == 303
    assert viewer.get("/dashboard/overview").status_code == 200


def test_a_password_changed_meanwhile_ends_the_pending_sign_in(
    timed: Org, owner: Browser, browser: Callable[[], Browser], clock: FakeClock
) -> None:
    secret, _ = enrol(owner, clock)
    clock.advance(STEP_SECONDS)
    b = browser()
    password_step(b)
    new = "a brand new passphrase"
    changed = owner.post(
        "/dashboard/account/password",
        {"current": PASSWORD, "password": new, "password_again": new},
        csrf=owner.csrf("/dashboard/account"),
    )
    assert changed.status_code == 303
    late = code_step(b, _code(secret, clock))
    assert late.status_code == 401
    assert "Your sign-in has timed out" in late.text
    assert b.session is None
    password_step(b, password=new)
    assert code_step(b, _code(secret, clock)).status_code == 303


def test_an_owner_resets_a_members_second_factor_and_no_one_else_may(
    timed: Org, owner: Browser, browser: Callable[[], Browser], clock: FakeClock
) -> None:
    """For a member who lost their authenticator: an owner turns their factor off
    (audited); an admin (no owner powers) may not, nor an owner of another organisation."""
    member = timed.create_user("grace@acme.test", "admin", password=PASSWORD)
    grace = browser()
    assert grace.sign_in("grace@acme.test").status_code == 303
    enrol(grace, clock)
    password_step(browser(), "grace@acme.test")  # the code is asked for
    path = f"/dashboard/members/users/{member['id']}/reset-mfa"
    assert "Reset 2FA" not in grace.get("/dashboard/members").text
    refused = grace.post(path, {}, csrf=grace.csrf("/dashboard/members"))
    assert refused.status_code == 403
    other = bootstrap(timed.client, "Globex", "owner@globex.test", another=True)
    assert other.id != timed.id
    stranger = browser()
    assert stranger.sign_in("owner@globex.test").status_code == 303
    assert stranger.post(path, {}, csrf=stranger.csrf("/dashboard/members")).status_code == 404
    assert "Reset 2FA" in owner.get("/dashboard/members").text
    r = owner.post(path, {}, csrf=owner.csrf("/dashboard/members"))
    assert r.status_code == 303 and "done=mfa_reset" in r.headers["location"]
    after = browser().sign_in("grace@acme.test")
    assert after.headers["location"] == "/dashboard/overview"  # the password alone, again
    [reset] = [e for e in events(timed, "user.mfa_disabled") if e.data["proof"] == "owner"]
    assert reset.target_id == member["id"] and reset.actor_user_id == timed.owner_id
