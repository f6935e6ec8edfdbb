"""The one sign-in: every door finds people by the same rule, through the same throttle,
at the same cost for an unknown address."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

import pytest

from apiward.adapters.dashboard.sessions import Sessions
from apiward.core.errors import (
    InvalidGrant,
    InvalidRequest,
    LoginThrottled,
    SignInFailed,
    WrongPassword,
)
from apiward.core.ids import new_id
from apiward.core.models import Account, RequestContext
from apiward.core.passwords import PasswordPolicy, Passwords
from apiward.services.signin import Identity, SignIns
from tests.conftest import Org

PASSWORD = "correct horse battery"
CONTEXT = RequestContext(ip="203.0.113.40")


def call(org: Org, work: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return org.client.portal.call(partial(work, *args, **kwargs))  # type: ignore[union-attr]


def token_door(org: Org, email: str, password: str) -> Any:
    return call(
        org,
        org.runtime.tokens.password_grant,
        email,
        password,
        scope=None,
        org_id=None,
        environment=None,
        context=CONTEXT,
    )


def dashboard_door(org: Org, email: str, password: str) -> Any:
    return call(org, Sessions(org.runtime).sign_in, email, password, CONTEXT)


def test_failures_at_the_token_endpoint_throttle_the_dashboard(org: Org) -> None:
    for _ in range(org.runtime.settings.login_max_failures):
        with pytest.raises(InvalidGrant):
            token_door(org, "owner@acme.test", "wrong password entirely")
    with pytest.raises(LoginThrottled):
        dashboard_door(org, "owner@acme.test", PASSWORD)  # even the right password


def test_failures_at_the_dashboard_throttle_the_token_endpoint(org: Org) -> None:
    for _ in range(org.runtime.settings.login_max_failures):
        with pytest.raises(SignInFailed):
            dashboard_door(org, "owner@acme.test", "wrong password entirely")
    with pytest.raises(LoginThrottled):
        token_door(org, "owner@acme.test", PASSWORD)


def test_a_success_at_one_door_forgets_the_failures_of_the_other(org: Org) -> None:
    limit = org.runtime.settings.login_max_failures
    for _ in range(limit - 1):
        with pytest.raises(SignInFailed):
            dashboard_door(org, "owner@acme.test", "wrong password entirely")
    token_door(org, "owner@acme.test", PASSWORD)
    for _ in range(limit - 1):
        with pytest.raises(InvalidGrant):
            token_door(org, "owner@acme.test", "wrong password entirely")
    assert dashboard_door(org, "owner@acme.test", PASSWORD)


@pytest.mark.parametrize(
    ("email", "password", "signs_in"),
    [
        ("owner@acme.test", PASSWORD, True),
        ("OWNER@acme.test ", PASSWORD, True),
        ("owner@acme.test", "wrong password entirely", False),
        ("ghost@acme.test", PASSWORD, False),
        ("nopassword@acme.test", PASSWORD, False),
        ("disabled@acme.test", PASSWORD, False),
    ],
)
def test_both_doors_find_the_same_person(
    org: Org, email: str, password: str, signs_in: bool
) -> None:
    org.create_user("nopassword@acme.test", role="viewer")
    disabled = org.create_user("disabled@acme.test", role="viewer", password=PASSWORD)
    r = org.client.patch(
        f"/v1/users/{disabled['id']}", headers=org.headers(), json={"disabled": True}
    )
    assert r.status_code == 200, r.text
    sign_ins = org.runtime.sign_ins

    def who(accounts: bool) -> Identity | None:
        found: Identity | None = call(
            org, sign_ins.sign_in, email, password, CONTEXT, accounts=accounts
        )
        return found

    token, dashboard = who(False), who(True)
    assert token == dashboard
    assert (token is not None) is signs_in
    if token is not None:
        assert token.user is not None and token.user.id == org.owner_id


@pytest.mark.parametrize("email", ["ghost@acme.test", "owner@acme.test"])
@pytest.mark.parametrize("accounts", [False, True])
def test_an_unknown_address_costs_one_check_like_a_wrong_password(
    org: Org, monkeypatch: pytest.MonkeyPatch, email: str, accounts: bool
) -> None:
    checks: list[str | None] = []
    verify = Passwords.verify

    def counted(self: Passwords, stored: str | None, password: str) -> bool:
        checks.append(stored)
        return verify(self, stored, password)

    monkeypatch.setattr(Passwords, "verify", counted)
    found = call(
        org, org.runtime.sign_ins.sign_in, email, "wrong guess here", CONTEXT, accounts=accounts
    )
    assert found is None
    assert len(checks) == 1
    assert (checks[0] is None) is (email == "ghost@acme.test")  # None: the dummy hash


def open_account(org: Org, email: str, projects: int) -> list[tuple[str, str]]:
    """A confirmed portal account with ``projects`` projects: each one's (org, user) ids."""
    runtime = org.runtime

    async def run() -> list[tuple[str, str]]:
        now = runtime.clock.now()
        password_hash = runtime.passwords.hash(PASSWORD)
        account = Account(new_id("acc"), email, "Ada", password_hash, now, confirmed_at=now)
        async with runtime.store.begin() as tx:
            await tx.insert_account(account)
        founded = [
            await runtime.tenancy.create_project(f"P{i}", account, CONTEXT) for i in range(projects)
        ]
        return [(f.org.id, f.owner.id) for f in founded]

    return call(org, run)  # type: ignore[no-any-return]


def test_an_account_signs_in_itself_at_the_dashboard_and_its_user_for_a_token(org: Org) -> None:
    [(_, user_id)] = open_account(org, "ada@example.test", projects=1)
    sign_ins = org.runtime.sign_ins
    at_dashboard = call(org, sign_ins.sign_in, "ada@example.test", PASSWORD, CONTEXT, accounts=True)
    assert at_dashboard.account is not None and at_dashboard.user is None
    for_token = call(org, sign_ins.sign_in, "ada@example.test", PASSWORD, CONTEXT)
    assert for_token.account is None and for_token.user.id == user_id
    assert call(org, sign_ins.sign_in, "ada@example.test", "wrong guess here", CONTEXT) is None


def test_an_account_of_several_projects_needs_the_org_id_for_a_token(org: Org) -> None:
    _, (second_org, second_user) = open_account(org, "ada@example.test", projects=2)
    sign_ins = org.runtime.sign_ins
    with pytest.raises(InvalidRequest):
        call(org, sign_ins.sign_in, "ada@example.test", PASSWORD, CONTEXT)
    chosen = call(org, sign_ins.sign_in, "ada@example.test", PASSWORD, CONTEXT, org_id=second_org)
    assert chosen.user.id == second_user


def test_a_disabled_account_signs_in_nowhere(org: Org) -> None:
    open_account(org, "ada@example.test", projects=1)
    call(org, org.runtime.portal.set_disabled, "ada@example.test", True, CONTEXT)
    sign_ins = org.runtime.sign_ins
    for accounts in (False, True):
        found = call(
            org, sign_ins.sign_in, "ada@example.test", PASSWORD, CONTEXT, accounts=accounts
        )
        assert found is None


def test_a_refresh_token_of_a_disabled_account_is_refused(org: Org) -> None:
    """Even were its sessions not ended: a disabled account's users act nowhere."""
    [(org_id, _)] = open_account(org, "ada@example.test", projects=1)
    runtime = org.runtime
    pair = call(
        org,
        runtime.tokens.password_grant,
        "ada@example.test",
        PASSWORD,
        scope=None,
        org_id=org_id,
        environment=None,
        context=CONTEXT,
    )

    async def disable() -> None:
        async with runtime.store.begin() as tx:
            account = await tx.find_account_by_email("ada@example.test")
            assert account is not None
            await tx.update_account(replace(account, disabled_at=runtime.clock.now()))

    call(org, disable)
    with pytest.raises(InvalidGrant, match="disabled"):
        call(org, runtime.tokens.refresh, pair.refresh_token, scope=None, context=CONTEXT)


def test_guessing_the_current_password_to_change_it_is_throttled_like_signing_in(
    org: Org,
) -> None:
    """A session's holder gets no faster way to guess its password than the sign-in form:
    wrong current passwords spend the same budget, and then even the right one waits."""

    async def owner() -> Any:
        async with org.runtime.store.begin() as tx:
            return await tx.get_user(org.id, org.owner_id)

    user = call(org, owner)
    change = org.runtime.portal.change_user_password
    for _ in range(org.runtime.settings.login_max_failures):
        with pytest.raises(WrongPassword):
            call(org, change, user, "wrong password entirely", "a new long password", CONTEXT)
    with pytest.raises(LoginThrottled):
        call(org, change, user, PASSWORD, "a new long password", CONTEXT)
    with pytest.raises(LoginThrottled):
        token_door(org, "owner@acme.test", PASSWORD)  # the same budget as signing in


def test_someone_else_with_the_same_address_cannot_wipe_the_failures_against_you(
    org: Org,
) -> None:
    """An address can name several people (users that several organisations made). A
    success by one of them gives back only its own attempt: it does not forget the
    failures counted against the others' passwords."""
    runtime = org.runtime
    victim = "owner@acme.test"
    known = "the attacker chose this one"

    async def attacker_user() -> str:
        boot = await runtime.tenancy.bootstrap(
            "Globex", "boss@globex.test", PASSWORD, allow_another=True
        )
        boss = await runtime.operators.principal(boot.org.id)
        await runtime.tenancy.create_user(boss, victim, password=known, role="viewer")
        return boot.org.id

    globex = call(org, attacker_user)

    def grant(password: str, org_id: str, ip: str) -> Any:
        return call(
            org,
            runtime.tokens.password_grant,
            victim,
            password,
            scope=None,
            org_id=org_id,
            environment=None,
            context=RequestContext(ip=ip),
        )

    budget = runtime.settings.login_max_failures
    for i in range(budget - 1):
        with pytest.raises(InvalidGrant):
            grant("a wrong guess at the owner's password", org.id, f"198.51.100.{i}")
    grant(known, globex, "198.51.100.100")  # the attacker signs in as their own user
    with pytest.raises(InvalidGrant):  # the last guess the budget allows
        grant("one more wrong guess", org.id, "198.51.100.101")
    with pytest.raises(LoginThrottled):
        grant(PASSWORD, org.id, "198.51.100.200")


class CountingPasswords(Passwords):
    """The deployment's own Argon2id hasher, counting the verifications it runs."""

    def __init__(self, policy: PasswordPolicy) -> None:
        super().__init__(policy)
        self.verified: list[str | None] = []

    def verify(self, stored: str | None, password: str) -> bool:
        self.verified.append(stored)
        return super().verify(stored, password)


SHARED = "shared@example.test"


def shared_address(org: Org, people: int) -> list[tuple[str, str]]:
    """``people`` organisations that each made a user with the same address and a
    password of its own: each one's (org id, that user's password), oldest first."""
    runtime = org.runtime

    async def run() -> list[tuple[str, str]]:
        made = []
        for i in range(people):
            boot = await runtime.tenancy.bootstrap(
                f"Org {i}", f"boss{i}@example.test", PASSWORD, allow_another=True
            )
            boss = await runtime.operators.principal(boot.org.id)
            password = f"password of person {i:02d}"
            await runtime.tenancy.create_user(boss, SHARED, password=password, role="viewer")
            made.append((boot.org.id, password))
        return made

    return call(org, run)  # type: ignore[no-any-return]


@pytest.mark.parametrize("accounts", [False, True])
def test_an_attempt_costs_one_hash_however_many_people_share_the_address(
    org: Org, accounts: bool
) -> None:
    """20 users with one address: every attempt, right or wrong, with or without the
    organisation, runs exactly one Argon2 verification, as an unknown address does."""
    runtime = org.runtime
    people = shared_address(org, 20)
    passwords = CountingPasswords(runtime.settings.password_policy)
    sign_ins = SignIns(runtime.store, runtime.clock, passwords, runtime.login_throttle)
    (first_org, first), (later_org, later) = people[0], people[7]
    attempts: list[tuple[str, str, str | None, str | None]] = [
        # (address, password, org id, the org of the user it signs in)
        (SHARED, "a wrong guess here", None, None),
        (SHARED, first, None, first_org),
        (SHARED, later, later_org, later_org),
        (SHARED, "a wrong guess here", later_org, None),
        (SHARED, later, None, None),  # another person's password needs their org_id
        ("ghost@example.test", "a wrong guess here", None, None),
    ]
    for i, (email, password, org_id, signs_in) in enumerate(attempts):
        passwords.verified.clear()
        found = call(
            org,
            sign_ins.sign_in,
            email,
            password,
            RequestContext(ip=f"198.51.100.{i}"),
            org_id=org_id,
            accounts=accounts,
        )
        assert len(passwords.verified) == 1, (email, password, org_id)
        assert (passwords.verified[0] is None) is (email != SHARED)  # None: the dummy hash
        if signs_in is None:
            assert found is None
        else:
            assert found is not None and found.user is not None
            assert found.user.org_id == signs_in


def test_an_account_is_the_one_checked_before_users_sharing_its_address(org: Org) -> None:
    """Users that organisations made with an account's address never stand in front of
    the account: without an org id its password is the one checked."""
    shared_address(org, 3)
    [(_, user_id)] = open_account(org, SHARED, projects=1)
    sign_ins = org.runtime.sign_ins
    at_dashboard = call(org, sign_ins.sign_in, SHARED, PASSWORD, CONTEXT, accounts=True)
    assert at_dashboard.account is not None
    for_token = call(org, sign_ins.sign_in, SHARED, PASSWORD, CONTEXT)
    assert for_token.user.id == user_id
