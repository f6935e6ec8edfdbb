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
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from starlette.requests import Request

from apiward.adapters.runtime import Runtime
from apiward.adapters.settings import Settings
from apiward.core.errors import ConfirmFirst, InvalidRequest, SignInFailed
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
from apiward.services.portal import Project
from apiward.services.ports import Transaction

COOKIE = "apiward_session"
SIGN_IN_COOKIE = "apiward_signin"
"""The sign-in form's own CSRF secret, before any session exists."""
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
    ) -> tuple[str, DashboardSession]:
        """A new session for the account or user with this email and password."""
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
            projects = await self._runtime.portal.projects(found.account)
            return await self.open(found.account, projects[0] if projects else None, context)
        assert found.user is not None
        return await self._open(
            context, org_id=found.user.org_id, user_id=found.user.id, account_id=None
        )

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
