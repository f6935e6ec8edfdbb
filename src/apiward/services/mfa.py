"""Two-factor sign-in to the dashboard: an authenticator app's codes (TOTP, RFC 6238)
and one-time recovery codes.

**Whose factor.** A person who signs in with a password of their own: a portal
account (its users, one per project, share its password and so its factor), or a user
an organisation created with a password. The factor is keyed by the account's or the
user's id.

**Enrolment.** ``begin`` makes a new secret and keeps it sealed (AES-GCM with the
deployment's secret, like signing keys and webhook secrets), not yet enabled; the
account page shows it as an ``otpauth://`` URI and in base32. ``confirm`` enables it
with a first right code, and hands out ten recovery codes, shown once and kept as
their HMAC-SHA256 under a key derived from the deployment's secret, bound to their owner
(``Sealer.digest``). ``disable`` needs a current code (or recovery code) or the password.

**Checking a code** (``check``): each attempt is counted by the sign-in throttle
(``LoginThrottle``) under the person's id, before the code is compared, so a right
password (which forgets the failures of the password) gives no more tries at the
code; a right code gives the attempt back. A code is right for the current 30-second
step or one either side; the step it matched is recorded as used atomically, so the
same code (or an older one) never works twice, whichever process sees it. A recovery
code works once. The secret and the codes are never logged.

**An organisation's requirement.** ``Organisation.require_mfa`` requires a factor of
every member: the dashboard sends one without it to set it up
(``adapters.dashboard.web``), and the password grant refuses them (``services.tokens``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from apiward.core.clock import Clock
from apiward.core.crypto import Sealer
from apiward.core.errors import (
    Conflict,
    InsufficientScope,
    InvalidInput,
    InvalidRequest,
    NotFound,
    WrongCode,
)
from apiward.core.models import Account, AuditEvent, MfaFactor, Principal, RequestContext, User
from apiward.core.passwords import Passwords
from apiward.core.totp import (
    base32,
    looks_like_recovery,
    matching_step,
    new_recovery_codes,
    new_secret,
    normalise,
    otpauth_uri,
    recovery_text,
)
from apiward.services.audit import audit_event, request_event
from apiward.services.ports import AuditTx, MfaTx, PortalTx, Store, TenancyTx
from apiward.services.throttle import LoginThrottle

_SEAL_CONTEXT = "mfa-secret:"
_RECOVERY_CONTEXT = "mfa-recovery:"


class MfaServiceTx(MfaTx, AuditTx, PortalTx, TenancyTx, Protocol):
    """What second factors touch: themselves, the audit log, and (for the operator's
    reset) accounts and users by address."""


@dataclass(frozen=True, slots=True)
class Person:
    """Whoever a second factor belongs to: a portal account, or a user an organisation
    created with a password of its own."""

    owner_id: str
    email: str
    org_id: str | None
    """The user's organisation (its audit log gets the events); None for an account."""
    password_hash: str | None

    @classmethod
    def of(cls, who: Account | User) -> Person:
        if isinstance(who, Account):
            return cls(who.id, who.email, None, who.password_hash)
        return cls(who.id, who.email, who.org_id, who.password_hash)

    @property
    def is_account(self) -> bool:
        return self.org_id is None


@dataclass(frozen=True, slots=True)
class Enrolment:
    """A secret waiting for its first code: what an authenticator app is given."""

    secret: str
    """base32, for typing in."""
    uri: str
    """``otpauth://totp/...``, for pasting or a QR code."""


class TwoFactor:
    def __init__(
        self,
        store: Store[MfaServiceTx],
        clock: Clock,
        sealer: Sealer,
        passwords: Passwords,
        throttle: LoginThrottle,
        issuer: str,
    ) -> None:
        self._store = store
        self._clock = clock
        self._sealer = sealer
        self._passwords = passwords
        self._throttle = throttle
        self._issuer = issuer

    async def factor(self, owner_id: str) -> MfaFactor | None:
        async with self._store.begin() as tx:
            return await tx.get_mfa(owner_id)

    async def enabled(self, owner_id: str) -> bool:
        factor = await self.factor(owner_id)
        return factor is not None and factor.enabled_at is not None

    async def recovery_codes_left(self, owner_id: str) -> int:
        async with self._store.begin() as tx:
            return await tx.recovery_codes_left(owner_id)

    # enrolment --------------------------------------------------------------------

    async def begin(self, person: Person) -> Enrolment:
        """A new secret for ``person``, waiting for its first code (replacing one that
        was waiting). Refused while a factor is enabled: disable it first."""
        secret = new_secret()
        factor = MfaFactor(
            owner_id=person.owner_id,
            secret_sealed=self._seal(person.owner_id, secret),
            created_at=self._clock.now(),
        )
        async with self._store.begin() as tx:
            current = await tx.get_mfa(person.owner_id)
            if current is not None and current.enabled_at is not None:
                raise InvalidRequest("Two-factor sign-in is already on. Turn it off first.")
            await tx.put_mfa(factor)
        return self._enrolment(person, secret)

    async def enrolment(self, person: Person) -> Enrolment | None:
        """The secret waiting for its first code, to show again; None if there is none."""
        factor = await self.factor(person.owner_id)
        if factor is None or factor.enabled_at is not None:
            return None
        return self._enrolment(person, self._open(factor))

    async def confirm(self, person: Person, code: str, context: RequestContext) -> list[str]:
        """Turn two-factor sign-in on with a first right code; the recovery codes, which
        are never shown again."""
        await self._throttle.reserve(self._key(person), context.ip)
        factor = await self.factor(person.owner_id)
        if factor is None or factor.enabled_at is not None:
            raise InvalidRequest("There is no authenticator waiting: start again.")
        step = matching_step(self._open(factor), code, self._clock.now())
        if step is None:
            raise WrongCode()
        codes = new_recovery_codes()
        async with self._store.begin() as tx:
            enabled = await tx.enable_mfa(
                person.owner_id,
                self._clock.now(),
                step,
                [self._recovery_digest(person.owner_id, c) for c in codes],
            )
            if not enabled:
                raise InvalidRequest("There is no authenticator waiting: start again.")
            await tx.insert_audit(self._event("user.mfa_enabled", person, context))
        await self._throttle.succeeded(self._key(person), context.ip)
        return codes

    async def disable(self, person: Person, context: RequestContext, code: str) -> None:
        """Turn two-factor sign-in off, proven by a current code or a recovery code (a
        password alone, which a second factor exists to outlast, does not do it)."""
        if not code:
            raise InvalidInput("Enter a code of your authenticator, or a recovery code.")
        await self.check(person, code, context, audit_failure=False)
        async with self._store.begin() as tx:
            if await tx.delete_mfa(person.owner_id):
                await tx.insert_audit(
                    self._event("user.mfa_disabled", person, context, data={"proof": "code"})
                )

    async def reset(
        self, email: str, context: RequestContext, *, org_id: str | None = None
    ) -> list[Person]:
        """The operator's, for a lost device: turn off the second factor of the account
        with this address and of each user an organisation created with it (only the
        user of ``org_id`` when given). Who had one; an address that names no one is
        ``InvalidInput``."""
        email = email.strip().lower()
        async with self._store.begin() as tx:
            account = await tx.find_account_by_email(email)
            users = [
                u
                for u in await tx.find_users_by_email(email)
                if u.account_id is None and (org_id is None or u.org_id == org_id)
            ]
            people = [Person.of(u) for u in users]
            if account is not None and org_id is None:
                people.insert(0, Person.of(account))
            if not people:
                raise InvalidInput(f"No account or user has the address {email}.")
            removed = []
            for person in people:
                if await tx.delete_mfa(person.owner_id):
                    removed.append(person)
                    await tx.insert_audit(
                        self._event(
                            "user.mfa_disabled", person, context, data={"proof": "operator"}
                        )
                    )
        return removed

    async def reset_member(self, principal: Principal, user_id: str) -> bool:
        """An owner's, for a member who lost their device: turn off the second factor of
        a user the organisation created (``owner:manage``, audited). A member who signs
        in with an account of their own has one factor for all its projects: only the
        operator resets it (``reset``). Whether the user had one."""
        if not principal.grants("owner:manage"):
            raise InsufficientScope("owner:manage")
        now = self._clock.now()
        async with self._store.begin() as tx:
            user = await tx.get_user(principal.org_id, user_id)
            if user is None:
                raise NotFound("user", user_id)
            if user.account_id is not None:
                raise Conflict(
                    "This member signs in with an account of their own, whose second factor "
                    "serves every project it belongs to: the operator resets it "
                    "(apiward users reset-mfa)."
                )
            removed = await tx.delete_mfa(user.id)
            if removed:
                await tx.insert_audit(
                    audit_event(
                        principal,
                        "user.mfa_disabled",
                        now,
                        target_type="user",
                        target_id=user.id,
                        data={"proof": "owner"},
                    )
                )
        return removed

    # signing in ----------------------------------------------------------------------

    async def check(
        self, person: Person, code: str, context: RequestContext, *, audit_failure: bool = True
    ) -> None:
        """Accept a current code of ``person``'s authenticator, or one of their unused
        recovery codes, once; ``WrongCode`` otherwise (``LoginThrottled`` past the
        throttle's budget). A refusal is recorded as ``login.mfa_failed``."""
        await self._throttle.reserve(self._key(person), context.ip)
        now = self._clock.now()
        async with self._store.begin() as tx:
            factor = await tx.get_mfa(person.owner_id)
            if factor is None or factor.enabled_at is None:
                raise WrongCode("Two-factor sign-in is not on for this account.")
            accepted = False
            kind = "code"
            if normalise(code):
                step = matching_step(self._open(factor), code, now)
                # Only a step after the last one used: the same code is refused.
                accepted = step is not None and await tx.use_mfa_step(person.owner_id, step)
            elif looks_like_recovery(code):
                kind = "recovery"
                accepted = await tx.use_recovery_code(
                    person.owner_id, self._recovery_digest(person.owner_id, code), now
                )
                if accepted:
                    left = await tx.recovery_codes_left(person.owner_id)
                    await tx.insert_audit(
                        self._event("user.mfa_recovery_used", person, context, data={"left": left})
                    )
        if not accepted:
            if audit_failure:
                async with self._store.begin() as tx:
                    await tx.insert_audit(
                        self._event("login.mfa_failed", person, context, data={"kind": kind})
                    )
            raise WrongCode()
        await self._throttle.succeeded(self._key(person), context.ip)

    # ----------------------------------------------------------------------------------

    def _key(self, person: Person) -> str:
        """The throttle's username for codes: the person's id, apart from their address,
        so that a right password does not forget the failed codes."""
        return f"mfa:{person.owner_id}"

    def _recovery_digest(self, owner_id: str, code: str) -> str:
        return self._sealer.digest(recovery_text(code), _RECOVERY_CONTEXT + owner_id)

    def _seal(self, owner_id: str, secret: bytes) -> str:
        return self._sealer.seal(secret, _SEAL_CONTEXT + owner_id)

    def _open(self, factor: MfaFactor) -> bytes:
        return self._sealer.open(factor.secret_sealed, _SEAL_CONTEXT + factor.owner_id)

    def _enrolment(self, person: Person, secret: bytes) -> Enrolment:
        return Enrolment(base32(secret), otpauth_uri(secret, person.email, self._issuer))

    def _event(
        self,
        type: str,
        person: Person,
        context: RequestContext,
        *,
        data: dict[str, object] | None = None,
    ) -> AuditEvent:
        return request_event(
            type,
            self._clock.now(),
            context,
            org_id=person.org_id,
            target_type="account" if person.is_account else "user",
            target_id=person.owner_id,
            actor_user_id=None if person.is_account else person.owner_id,
            data={"via": "dashboard", **(data or {})},
        )
