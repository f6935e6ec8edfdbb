"""Password sign-in, for every door: the token endpoint's password grant
(docs/compatibility.md) and the dashboard.

**Who an email and a password sign in.** An email names at most one portal account
(addresses of accounts are unique) and any number of users: the account's own, one
per project, which share its address and its password (they have none of their own),
and users that organisations created with a password of their own (one per
organisation at most). Every user with the address is a candidate, narrowed to the
organisation asked for when one is; a disabled account or user never signs in
(``services.authority.is_active``).

**One password is checked per attempt**, whoever shares the address, so that no one
can make an attempt cost more by creating users with an address (any self-service
tenant can): the account's when the address has one (this door opens it, or its
users are among the candidates), else the user of the organisation asked for, else
the earliest user with a password of its own; with an organisation asked for, its
own user comes before the account. Only who could sign in is chosen: enabled, with a
password. A right password for anyone else is a wrong one
here: such a user sends the organisation's id. The choice reads only what the store
holds, never the password, and every case answers a wrong password alike, so an
attempt tells nobody which case applied. A door that opens a session for an account
(the dashboard) signs the account in when its password is right; otherwise exactly
one user must match, and an account whose users are in several organisations needs
the organisation's id.

This is the token endpoint's rule and the dashboard's together. An account's users
always carry its address (addresses never change), so finding the account and the
users by email, in one transaction, costs every address the same queries.

**What it costs.** One Argon2 check, against the chosen password's hash or a dummy
hash when there is none (``Passwords.verify``): an unknown address costs what a wrong
password costs, and an address shared by many people what one person costs.

**Throttling.** Every attempt goes through the one ``LoginThrottle``, whatever the door:
failures at the dashboard count against the token endpoint and the other way round.

**Refusals** are recorded as ``login.failed`` where the attempt was for
(``services.audit.failed_sign_in_events``), after the answer: a write on the path of
known addresses only would tell a stopwatch that the address is known.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

import structlog

from apiward.core.clock import Clock
from apiward.core.errors import ApiwardError, InvalidRequest
from apiward.core.models import Account, AuditEvent, RequestContext, User
from apiward.core.passwords import Passwords
from apiward.services.audit import failed_sign_in_events
from apiward.services.background import Background
from apiward.services.ports import AuditTx, PortalTx, Store, TenancyTx
from apiward.services.throttle import LoginThrottle

log = structlog.get_logger("apiward.signin")


class SignInTx(PortalTx, TenancyTx, AuditTx, Protocol):
    """What finding an account or user by email, and auditing a failure, touches."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a right password signed in: a portal account, or one organisation's user."""

    account: Account | None = None
    user: User | None = None


@dataclass(frozen=True, slots=True)
class _Candidates:
    """The account with an address, and every user with it (in the organisation asked for)."""

    account: Account | None
    users: list[User]
    people: int
    """How many people the address names, in every organisation: the account (its users
    sign in with its password) and each user with a password of its own."""
    org_id: str | None = None

    @property
    def own(self) -> list[User]:
        """Users with a password of their own (an organisation created them), oldest first."""
        return [u for u in self.users if u.account_id is None]

    @property
    def accounts(self) -> list[User]:
        """The account's users, who sign in with its password."""
        account = self.account
        return [u for u in self.users if account is not None and u.account_id == account.id]

    def checked(self, accounts: bool) -> Account | User | None:
        """The one person whose password an attempt checks (the module's rule), among
        those who could sign in: enabled, and with a password."""
        own = [u for u in self.own if u.password_hash is not None and u.disabled_at is None]
        account = self.account
        if account is not None and (account.disabled_at or not (accounts or self.accounts)):
            account = None  # nothing this door could open with the account's password
        if own and (account is None or self.org_id is not None):
            return own[0]
        return account


class SignIns:
    def __init__(
        self,
        store: Store[SignInTx],
        clock: Clock,
        passwords: Passwords,
        throttle: LoginThrottle,
    ) -> None:
        self._store = store
        self._clock = clock
        self._passwords = passwords
        self._throttle = throttle
        self._background = Background(log)

    async def sign_in(
        self,
        email: str,
        password: str,
        context: RequestContext,
        *,
        org_id: str | None = None,
        accounts: bool = False,
        data: dict[str, object] | None = None,
    ) -> Identity | None:
        """Who this email and password sign in (the account itself only with
        ``accounts``), or None. ``LoginThrottled`` past the throttle's budgets (even for
        the right password), ``InvalidRequest`` when several organisations' users match
        and no ``org_id`` chose one. A refusal's ``login.failed`` events carry ``data``."""
        await self._throttle.reserve(email, context.ip)
        found = await self._candidates(email, org_id)
        account_ok, users = await self._matches(found, password, accounts)
        if accounts and account_ok:
            who: Identity | None = Identity(account=found.account)
        else:
            who = _one(users)
        if who is None:
            self._refused(found, context, accounts, data)
            return None
        await self._throttle.succeeded(email, context.ip, forget=found.people == 1)
        return who

    async def confirm(
        self, email: str, password_hash: str | None, password: str, context: RequestContext
    ) -> bool:
        """Whether ``password`` is the signed-in person's current one (before changing
        it): checked under the same throttle as signing in, so holding a session gives
        no faster way to guess the password than the sign-in form."""
        await self._throttle.reserve(email, context.ip)
        ok = await asyncio.to_thread(self._passwords.verify, password_hash, password)
        if ok:
            # The current password proves one person; the failures stay for the others.
            await self._throttle.succeeded(email, context.ip, forget=False)
        return ok

    async def drain(self) -> None:
        """Wait for the refusals recorded after their answers (at shutdown, in tests)."""
        await self._background.drain()

    async def _candidates(self, email: str, org_id: str | None) -> _Candidates:
        email = email.strip().lower()
        if any(ch < " " for ch in email):
            return _Candidates(None, [], 0)  # no address holds a control character
        async with self._store.begin() as tx:
            account = await tx.find_account_by_email(email)
            users = await tx.find_users_by_email(email)  # oldest first
        people = (account is not None) + sum(u.account_id is None for u in users)
        chosen = [u for u in users if org_id is None or u.org_id == org_id]
        return _Candidates(account, chosen, people, org_id)

    async def _matches(
        self, found: _Candidates, password: str, accounts: bool
    ) -> tuple[bool, list[User]]:
        """Whether the account's password is this one (and it is enabled), and the
        enabled users it signs in: one check, of the one person the attempt is for."""
        person = found.checked(accounts)
        stored = person.password_hash if person is not None else None
        # Against a dummy hash when there is none: an unknown address and a wrong
        # password cost the same.
        right = await asyncio.to_thread(self._passwords.verify, stored, password)
        if isinstance(person, Account):
            account_ok = right
            users = found.accounts if account_ok else []
        else:
            account_ok = False
            users = [person] if right and person is not None else []
        return account_ok, [u for u in users if u.disabled_at is None]

    def _refused(
        self,
        found: _Candidates,
        context: RequestContext,
        accounts: bool,
        data: dict[str, object] | None,
    ) -> None:
        tried = found.account.id if accounts and found.account is not None else None
        events = failed_sign_in_events(
            self._clock.now(), context, users=found.users, account_id=tried, data=data
        )
        if events:
            self._background.later(self._audit(events), "login.failed audit")

    async def _audit(self, events: list[AuditEvent]) -> None:
        try:
            async with self._store.begin() as tx:
                for event in events:
                    await tx.insert_audit(event)
        except ApiwardError as exc:
            log.warning("audit_write_failed", error=exc.message, events=len(events))


def _one(users: list[User]) -> Identity | None:
    if len(users) > 1:
        raise InvalidRequest(
            "This account belongs to several organisations; send org_id to choose one."
        )
    return Identity(user=users[0]) if users else None
