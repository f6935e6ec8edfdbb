"""Dashboard sessions: signing in with a password, the session cookie, signing out.

A session is a random cookie value (256 bits). The store keeps only its SHA-256, an
absolute expiry (``APIWARD_SESSION_TTL_SECONDS``) and, once the user signs out, the
time it was revoked. Each request resolves the cookie to its user and builds a
principal of kind ``SESSION`` whose scopes are the user's role in the org's default
space: the services then check exactly what they check for the user's own tokens.

Sign-in goes through the token endpoint's logic (``Tokens._sign_in``: one Argon2 check
per candidate, the same cost for an unknown email) and its ``LoginThrottle``, and is
recorded in the audit log as ``login.succeeded`` or ``login.failed``.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from starlette.requests import Request

from apiward.adapters.runtime import Runtime
from apiward.adapters.settings import Settings
from apiward.core.errors import AuthenticationError, InvalidRequest
from apiward.core.ids import new_id
from apiward.core.models import (
    AuditEvent,
    CredentialKind,
    Organisation,
    Principal,
    RequestContext,
    User,
)
from apiward.core.scopes import ScopeSet
from apiward.services.ports import DashboardSession

COOKIE = "apiward_session"
SIGN_IN_COOKIE = "apiward_signin"
"""The sign-in form's own CSRF secret, before any session exists."""
COOKIE_PATH = "/dashboard"
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class SignInFailed(AuthenticationError):
    reason = "INVALID_LOGIN"
    default_message = "Wrong email or password."


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
    """The person behind a dashboard request."""

    session: DashboardSession
    user: User
    org: Organisation
    role: str | None
    principal: Principal


class Sessions:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._store = runtime.store
        self._clock = runtime.clock
        self._ttl = timedelta(seconds=runtime.settings.session_ttl_seconds)

    def _event(
        self, org_id: str, type: str, context: RequestContext, user_id: str, actor: str | None
    ) -> AuditEvent:
        return AuditEvent(
            id=new_id("evt"),
            org_id=org_id,
            environment=None,
            type=type,
            created_at=self._clock.now(),
            actor_user_id=actor,
            target_type="user",
            target_id=user_id,
            ip=context.ip,
            user_agent=context.user_agent,
            request_id=context.request_id,
            data={"via": "dashboard"},
        )

    async def sign_in(
        self, email: str, password: str, context: RequestContext, *, org_id: str | None = None
    ) -> tuple[str, DashboardSession]:
        """A new session for the user with this email and password: (cookie, record)."""
        if not email.strip() or not password:
            raise SignInFailed("Enter your email and password.")
        throttle = self._runtime.login_throttle
        await throttle.check(email, context.ip)
        try:
            user, candidates = await self._runtime.tokens.sign_in(email, password, org_id)
        except InvalidRequest:
            raise SignInFailed(
                "This email belongs to several organisations: enter the organisation's id "
                "under “More options”."
            ) from None
        if user is None:
            await throttle.failed(email, context.ip)
            if candidates:
                async with self._store.begin() as tx:
                    for known in candidates:
                        await tx.insert_audit(
                            self._event(known.org_id, "login.failed", context, known.id, None)
                        )
            raise SignInFailed()
        await throttle.succeeded(email)
        now = self._clock.now()
        cookie = new_secret()
        session = DashboardSession(
            id=new_id("ses"),
            digest=cookie_digest(cookie),
            org_id=user.org_id,
            user_id=user.id,
            created_at=now,
            expires_at=now + self._ttl,
            ip=context.ip,
            user_agent=context.user_agent,
        )
        async with self._store.begin() as tx:
            await tx.prune_sessions(now)
            await tx.insert_session(session)
            await tx.insert_audit(
                self._event(user.org_id, "login.succeeded", context, user.id, user.id)
            )
        return cookie, session

    async def resolve(
        self, cookie: str | None, context: RequestContext, environment: str
    ) -> SignedIn | None:
        """The live session of this cookie, or None (unknown, expired, revoked, user disabled)."""
        if not cookie or len(cookie) > 128:
            return None
        now = self._clock.now()
        async with self._store.begin() as tx:
            session = await tx.find_session(cookie_digest(cookie))
            if session is None or session.revoked_at is not None or session.expires_at <= now:
                return None
            user = await tx.get_user(session.org_id, session.user_id)
            org = await tx.get_org(session.org_id)
            space = await tx.default_space(session.org_id)
            if user is None or user.disabled_at is not None or org is None or space is None:
                return None
            roles = await self._runtime.tenancy.role_scopes(tx, org.id, user.id)
            memberships = await tx.list_memberships(org.id, user.id)
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

    async def sign_out(self, signed: SignedIn) -> None:
        context = signed.principal.context
        async with self._store.begin() as tx:
            await tx.revoke_session(signed.session.id, self._clock.now())
            await tx.insert_audit(
                self._event(signed.org.id, "logout", context, signed.user.id, signed.user.id)
            )

    def expires_in(self, session: DashboardSession, now: datetime) -> int:
        return max(0, int((session.expires_at - now).total_seconds()))
