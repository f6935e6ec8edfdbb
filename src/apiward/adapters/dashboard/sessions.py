"""Dashboard sessions: signing in with a password, the session cookie, signing out.

A session is a random cookie value (256 bits). The store keeps only its SHA-256, an
absolute expiry (``APIWARD_SESSION_TTL_SECONDS``) and, once it ends, the time it was
revoked. A session belongs to a portal account (which opens one of its projects at a
time, and may switch) or to a user an organisation created with a password. Each
request resolves the cookie and builds a principal of kind ``SESSION`` whose scopes
are the user's role in the project's default space: the services then check exactly
what they check for the user's own tokens.

Sign-in is the one of every door (``services.signin``: the token endpoint's rule for
finding the account or user, its throttle, the same cost for an unknown email,
``login.failed`` recorded after the answer); a session opened is recorded as
``login.succeeded``. A password change or reset ends every session of the account.

**Two-factor sign-in.** When the person a right password signs in has an authenticator
on (``services.mfa``), no session opens yet: the browser gets a pending sign-in instead,
a cookie sealed with the deployment's secret that names the account or user and
expires after ``PENDING_SECONDS`` or when the password changes, and the sign-in's second
page asks for a code. Only a right code (or an unused recovery code), checked under the
sign-in throttle, turns it into a session.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from starlette.requests import Request

from apiward.adapters.runtime import Runtime
from apiward.adapters.settings import Settings
from apiward.core.crypto import SealError
from apiward.core.errors import ConfirmFirst, InvalidRequest, SignInExpired, SignInFailed
from apiward.core.ids import new_id
from apiward.core.models import (
    Account,
    AuditEvent,
    CredentialKind,
    DashboardSession,
    Membership,
    Organisation,
    Principal,
    RequestContext,
    Space,
    User,
)
from apiward.core.scopes import ScopeSet
from apiward.services.audit import request_event
from apiward.services.authority import user_roles
from apiward.services.mfa import Person
from apiward.services.portal import Project
from apiward.services.ports import Transaction

COOKIE = "apiward_session"
SIGN_IN_COOKIE = "apiward_signin"
"""The sign-in form's own CSRF secret, before any session exists."""
MFA_COOKIE = "apiward_mfa"
"""A pending sign-in: a right password, waiting for the second factor's code."""
PENDING_SECONDS = 300
_PENDING_CONTEXT = "mfa-pending"
COOKIE_PATH = "/dashboard"
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def cookie_digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def secure_cookies(request: Request, settings: Settings) -> bool:
    """Whether cookies get ``Secure``: the setting, else all but plain HTTP on loopback."""
    if settings.session_cookie_secure is not None:
        return settings.session_cookie_secure
    return not (request.url.scheme == "http" and request.url.hostname in _LOOPBACK)


@dataclass(frozen=True, slots=True)
class SecondStep:
    """A right password of someone with two-factor sign-in on: the pending sign-in's
    cookie, for the page that asks for the code."""

    cookie: str


@dataclass(frozen=True, slots=True)
class SignedIn:
    """The person behind a dashboard request, in the project they have open."""

    session: DashboardSession
    user: User
    org: Organisation
    role: str | None
    principal: Principal


@dataclass(frozen=True, slots=True)
class Visitor:
    """Whoever holds a live session: a portal account or an organisation's user."""

    session: DashboardSession
    account: Account | None
    signed: SignedIn | None
    """The project open; None for an account that has none open (or none at all)."""

    @property
    def email(self) -> str:
        if self.account is not None:
            return self.account.email
        return self.signed.user.email if self.signed else ""


class Sessions:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._store = runtime.store
        self._clock = runtime.clock
        self._ttl = timedelta(seconds=runtime.settings.session_ttl_seconds)

    def _event(
        self,
        type: str,
        context: RequestContext,
        *,
        org_id: str | None,
        user_id: str | None = None,
        account_id: str | None = None,
        actor: str | None = None,
    ) -> AuditEvent:
        return request_event(
            type,
            self._clock.now(),
            context,
            org_id=org_id,
            target_type="account" if account_id else "user",
            target_id=account_id or user_id,
            actor_user_id=actor,
            data={"via": "dashboard"},
        )

    async def sign_in(
        self, email: str, password: str, context: RequestContext, *, org_id: str | None = None
    ) -> tuple[str, DashboardSession] | SecondStep:
        """A new session for the account or user with this email and password, or, when
        they have two-factor sign-in on, the pending sign-in that waits for a code."""
        if not email.strip() or not password:
            raise SignInFailed("Enter your email and password.")
        try:
            found = await self._runtime.portal.authenticate(
                email, password, context, org_id=org_id, data={"via": "dashboard"}
            )
        except InvalidRequest:
            raise SignInFailed(
                "This email belongs to several organisations: enter the organisation's id "
                "under “More options”."
            ) from None
        if found is None:
            raise SignInFailed()
        if found.account is not None:
            if not found.account.confirmed:
                raise ConfirmFirst(found.account.email)
            if await self._runtime.two_factor.enabled(found.account.id):
                return self._pending(found.account)
            return await self._open_account(found.account, context)
        assert found.user is not None
        user = found.user
        if await self._runtime.two_factor.enabled(user.id):
            return self._pending(user)
        return await self._open(context, org_id=user.org_id, user_id=user.id, account_id=None)

    async def second_step(
        self, pending: str | None, code: str, context: RequestContext
    ) -> tuple[str, DashboardSession]:
        """The session a pending sign-in opens with a right code. ``SignInExpired`` for a
        pending sign-in that is missing, expired or not this deployment's (or whose
        person can no longer sign in); ``WrongCode`` for a code that is not right."""
        who = await self.pending(pending)
        if who is None:
            raise SignInExpired()
        await self._runtime.two_factor.check(Person.of(who), code.strip()[:64], context)
        if isinstance(who, Account):
            return await self._open_account(who, context)
        return await self._open(context, org_id=who.org_id, user_id=who.id, account_id=None)

    async def pending(self, pending: str | None) -> Account | User | None:
        """Who a live pending sign-in is for, if they can still sign in."""
        if not pending or len(pending) > 512:
            return None
        try:
            data = json.loads(self._runtime.sealer.open(pending, _PENDING_CONTEXT))
        except (SealError, ValueError):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("exp"), int | float):
            return None
        if self._clock.now().timestamp() >= data["exp"]:
            return None
        who: Account | User | None = None
        async with self._store.begin() as tx:
            if isinstance(data.get("a"), str):
                account = await tx.get_account(data["a"])
                if account and account.disabled_at is None and account.confirmed:
                    who = account
            elif isinstance(data.get("u"), str) and isinstance(data.get("o"), str):
                user = await tx.get_user(data["o"], data["u"])
                if user and user.disabled_at is None and user.account_id is None:
                    who = user
        # A password changed since (reset by its owner, say) ends the pending sign-in.
        mark = data.get("p")
        if who is None or not isinstance(mark, str):
            return None
        return who if hmac.compare_digest(mark, _password_mark(who)) else None

    def _pending(self, who: Account | User) -> SecondStep:
        data: dict[str, object] = {
            "exp": self._clock.now().timestamp() + PENDING_SECONDS,
            "p": _password_mark(who),
            "n": new_secret(),
        }
        if isinstance(who, Account):
            data["a"] = who.id
        else:
            data.update(u=who.id, o=who.org_id)
        sealed = self._runtime.sealer.seal(json.dumps(data).encode(), _PENDING_CONTEXT)
        return SecondStep(sealed)

    async def _open_account(
        self, account: Account, context: RequestContext
    ) -> tuple[str, DashboardSession]:
        projects = await self._runtime.portal.projects(account)
        return await self.open(account, projects[0] if projects else None, context)

    async def open(
        self, account: Account, project: Project | None, context: RequestContext
    ) -> tuple[str, DashboardSession]:
        """A new session for an account, with ``project`` open."""
        return await self._open(
            context,
            org_id=project.org.id if project else None,
            user_id=project.user.id if project else None,
            account_id=account.id,
        )

    async def _open(
        self,
        context: RequestContext,
        *,
        org_id: str | None,
        user_id: str | None,
        account_id: str | None,
    ) -> tuple[str, DashboardSession]:
        now = self._clock.now()
        cookie = new_secret()
        session = DashboardSession(
            id=new_id("ses"),
            digest=cookie_digest(cookie),
            org_id=org_id,
            user_id=user_id,
            account_id=account_id,
            created_at=now,
            expires_at=now + self._ttl,
            ip=context.ip,
            user_agent=context.user_agent,
        )
        async with self._store.begin() as tx:
            await tx.prune_sessions(now)
            await tx.insert_session(session)
            await tx.insert_audit(
                self._event(
                    "login.succeeded",
                    context,
                    org_id=None if account_id else org_id,
                    user_id=user_id,
                    account_id=account_id,
                    actor=None if account_id else user_id,
                )
            )
        return cookie, session

    async def renew(self, visitor: Visitor, context: RequestContext) -> str:
        """A fresh session for the same person and project (after a password change
        ended every other one); the new cookie."""
        session = visitor.session
        cookie, _ = await self._open(
            context,
            org_id=session.org_id,
            user_id=session.user_id,
            account_id=session.account_id,
        )
        return cookie

    async def resolve(
        self, cookie: str | None, context: RequestContext, environment: str
    ) -> Visitor | None:
        """The live session of this cookie, or None (unknown, expired, revoked, disabled)."""
        if not cookie or len(cookie) > 128:
            return None
        now = self._clock.now()
        async with self._store.begin() as tx:
            session = await tx.find_session(cookie_digest(cookie))
            if session is None or session.revoked_at is not None or session.expires_at <= now:
                return None
            account = None
            if session.account_id is not None:
                account = await tx.get_account(session.account_id)
                if account is None or account.disabled_at is not None or not account.confirmed:
                    return None
            signed = await self._signed(tx, session, account, context, environment)
        if account is None and signed is None:
            return None
        return Visitor(session, account, signed)

    async def _signed(
        self,
        tx: Transaction,
        session: DashboardSession,
        account: Account | None,
        context: RequestContext,
        environment: str,
    ) -> SignedIn | None:
        if session.org_id is None or session.user_id is None:
            return None
        user = await tx.get_user(session.org_id, session.user_id)
        org = await tx.get_org(session.org_id)
        space = await tx.default_space(session.org_id)
        if user is None or user.disabled_at is not None or org is None or space is None:
            return None
        if user.account_id != (account.id if account else None):
            return None
        roles = await user_roles(tx, org.id, user.id)
        memberships = await tx.list_memberships(org.id, user.id)
        return _signed_in(session, user, org, space, roles, memberships, context, environment)

    async def switch(self, visitor: Visitor, org_id: str) -> Project:
        """Open another project of the visitor's account in this session."""
        if visitor.account is None:
            raise InvalidRequest("Only a portal account has several projects.")
        project = await self._runtime.portal.project(visitor.account, org_id)
        async with self._store.begin() as tx:
            await tx.move_session(visitor.session.id, project.org.id, project.user.id)
        return project

    async def sign_out(self, visitor: Visitor, context: RequestContext) -> None:
        session = visitor.session
        async with self._store.begin() as tx:
            await tx.revoke_session(session.id, self._clock.now())
            await tx.insert_audit(
                self._event(
                    "logout",
                    context,
                    org_id=None if session.account_id else session.org_id,
                    user_id=session.user_id,
                    account_id=session.account_id,
                    actor=None if session.account_id else session.user_id,
                )
            )

    def expires_in(self, session: DashboardSession, now: datetime) -> int:
        return max(0, int((session.expires_at - now).total_seconds()))


def _password_mark(who: Account | User) -> str:
    """A pending sign-in's mark of the password it was right for (of its hash)."""
    return hashlib.sha256((who.password_hash or "").encode()).hexdigest()[:32]


def _signed_in(
    session: DashboardSession,
    user: User,
    org: Organisation,
    space: Space,
    roles: dict[str | None, ScopeSet],
    memberships: list[Membership],
    context: RequestContext,
    environment: str,
) -> SignedIn:
    role = next((m.role for m in memberships if m.space_id == space.id), None) or next(
        (m.role for m in memberships if m.space_id is None), None
    )
    principal = Principal(
        org_id=org.id,
        environment=environment,
        space_id=space.id,
        user_id=user.id,
        scopes=roles.get(space.id) or roles.get(None) or ScopeSet(()),
        credential_id=session.id,
        credential_kind=CredentialKind.SESSION,
        context=replace(context, space_id=space.id),
    )
    return SignedIn(session, user, org, role, principal)
