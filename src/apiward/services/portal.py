"""The developer portal: accounts, email confirmation, projects, invitations, resets.

An *account* is a person who signs in to the dashboard with an email address and a
password; a *project* is an organisation with its environments. An account belongs to
any number of projects through one ``User`` per project (``User.account_id``), whose
role there says what the account may do in it, and whose password is the account's.

Every link sent by email carries a random token (256 bits, with this deployment's
prefix so that logs mask it); the store keeps its SHA-256 only. A link works once
(``PortalTx.use_link`` lets exactly one of two concurrent uses through) and until it
expires. No answer and no timing tells whether an address has an account: sign-up and
reset requests answer alike for every address, and do what depends on the address (the
look-up, the new account or link, the email) after the answer.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote

import structlog

from apiward.core.clock import Clock
from apiward.core.errors import (
    Conflict,
    EmailNotConfirmed,
    InsufficientScope,
    InvalidInput,
    LinkInvalid,
    NotFound,
    PermissionDenied,
    SignUpClosed,
    WrongPassword,
)
from apiward.core.ids import new_id
from apiward.core.models import (
    Account,
    AuditEvent,
    EmailLink,
    LinkPurpose,
    Membership,
    Notice,
    Organisation,
    Page,
    PageRequest,
    Principal,
    RequestContext,
    User,
)
from apiward.core.passwords import Passwords, weakness
from apiward.core.roles import BUILTIN_ROLES
from apiward.core.scopes import ScopeSet
from apiward.services.audit import audit_event, request_event
from apiward.services.authority import check_still_offered, require_own_account
from apiward.services.background import Background
from apiward.services.ports import (
    AuditTx,
    CredentialsTx,
    InvalidationsTx,
    Mailer,
    PortalTx,
    Store,
    TenancyTx,
)
from apiward.services.signin import Identity, SignIns
from apiward.services.tenancy import Tenancy, check_email, check_name
from apiward.services.throttle import ActionThrottle

if TYPE_CHECKING:
    from apiward.services.tokens import Tokens


class PortalServiceTx(PortalTx, TenancyTx, CredentialsTx, AuditTx, InvalidationsTx, Protocol):
    """What the portal's sign-up, sign-in and invitation flows touch."""


log = structlog.get_logger("apiward.portal")


@dataclass(frozen=True, slots=True)
class PortalPolicy:
    """What the operator configured (``APIWARD_SIGNUP_*``, ``APIWARD_*_LINK_TTL_SECONDS``)."""

    links: Mapping[LinkPurpose, str]
    """The page each kind of link opens; the token is appended (``...?token=``)."""
    sign_in_url: str
    forgot_url: str
    link_prefix: str
    signup_enabled: bool = True
    signup_domains: tuple[str, ...] = ()
    confirm_ttl: timedelta = timedelta(days=1)
    reset_ttl: timedelta = timedelta(hours=1)
    invite_ttl: timedelta = timedelta(days=7)
    projects_per_account: int = 20


@dataclass(frozen=True, slots=True)
class Project:
    """A project of an account: the org, the account's user there, and its role."""

    org: Organisation
    user: User
    role: str | None


@dataclass(frozen=True, slots=True)
class Invitation:
    """An invitation link, the project it is for, and who sent it."""

    link: EmailLink
    org: Organisation
    inviter: str
    has_account: bool
    """Whether the invited address has an account already (the link's holder reads it)."""


def link_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _ttl_text(ttl: timedelta) -> str:
    seconds = int(ttl.total_seconds())
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} seconds"


class Portal:
    def __init__(
        self,
        store: Store[PortalServiceTx],
        clock: Clock,
        passwords: Passwords,
        tenancy: Tenancy,
        tokens: Tokens,
        throttle: ActionThrottle,
        mailer: Mailer,
        policy: PortalPolicy,
        sign_ins: SignIns,
    ) -> None:
        self._store = store
        self._clock = clock
        self._passwords = passwords
        self._tenancy = tenancy
        self._tokens = tokens
        self._throttle = throttle
        self.mailer = mailer
        self.policy = policy
        self._sign_ins = sign_ins
        self._background = Background(log)

    async def drain(self) -> None:
        """Wait for the work done after answers (at shutdown, and in tests)."""
        await self._background.drain()
        await self._sign_ins.drain()

    # links -----------------------------------------------------------------------

    def _new_link(
        self,
        purpose: LinkPurpose,
        email: str,
        ttl: timedelta,
        *,
        account_id: str | None = None,
        org_id: str | None = None,
        role: str | None = None,
        created_by: str | None = None,
    ) -> tuple[str, EmailLink]:
        """A new link's token (for the email only) and its record (the token's SHA-256)."""
        token = f"{self.policy.link_prefix}_{secrets.token_urlsafe(32)}"
        now = self._clock.now()
        link = EmailLink(
            id=new_id("lnk"),
            purpose=purpose,
            digest=link_digest(token),
            email=email,
            created_at=now,
            expires_at=now + ttl,
            account_id=account_id,
            org_id=org_id,
            role=role,
            created_by=created_by,
        )
        return token, link

    def _url(self, purpose: LinkPurpose, token: str) -> str:
        return f"{self.policy.links[purpose]}?token={quote(token, safe='')}"

    async def link(self, token: str, purpose: LinkPurpose) -> EmailLink:
        """The live link of this token, or ``LinkInvalid`` (unknown, used, expired...)."""
        if not token.startswith(self.policy.link_prefix + "_") or len(token) > 200:
            raise LinkInvalid()
        async with self._store.begin() as tx:
            link = await tx.find_link(link_digest(token))
        if link is None or link.purpose != purpose or not link.usable(self._clock.now()):
            raise LinkInvalid()
        return link

    @staticmethod
    async def _use(tx: PortalServiceTx, link: EmailLink, now: datetime) -> None:
        if not await tx.use_link(link.id, now):
            raise LinkInvalid()

    def _event(
        self,
        type: str,
        context: RequestContext,
        *,
        account_id: str | None,
        org_id: str | None = None,
        actor_user_id: str | None = None,
        data: dict[str, object] | None = None,
    ) -> AuditEvent:
        """An event about an account; ``org_id`` None when it concerns no project."""
        return request_event(
            type,
            self._clock.now(),
            context,
            org_id=org_id,
            target_type="account" if account_id else None,
            target_id=account_id,
            actor_user_id=actor_user_id,
            data=data,
        )

    # sign-up and confirmation ----------------------------------------------------

    def _check_domain(self, email: str) -> None:
        domains = self.policy.signup_domains
        if domains and email.rsplit("@", 1)[1] not in domains:
            listed = ", ".join(domains)
            raise InvalidInput(f"Sign-up is open to addresses at {listed} only.")

    async def sign_up(self, email: str, name: str, password: str, context: RequestContext) -> None:
        """Open an account and email a confirmation link; an address that has an account
        gets an email saying so instead. Both answer the same, at the same speed (one
        password hash and one transaction each; the email is sent after the answer),
        and a new account exists when the answer arrives."""
        if not self.policy.signup_enabled:
            raise SignUpClosed()
        email = check_email(email)
        self._check_domain(email)
        name = check_name(name or email.split("@")[0], "account")
        await self._throttle.spend("signup", email, context.ip)
        problem = weakness(password, email=email)
        if problem:
            raise InvalidInput(problem)
        await self._sign_up(email, name, password, context)

    async def _sign_up(self, email: str, name: str, password: str, context: RequestContext) -> None:
        password_hash = await self._tenancy.hash_password(password, email)
        now = self._clock.now()
        async with self._store.begin() as tx:
            existing = await tx.find_account_by_email(email)
            if existing is not None:
                await tx.insert_audit(
                    self._event("account.signup_repeated", context, account_id=existing.id)
                )
                notice = Notice(
                    "account_exists",
                    email,
                    {
                        "name": existing.name,
                        "sign_in": self.policy.sign_in_url,
                        "forgot": self.policy.forgot_url,
                    },
                )
            else:
                account = Account(new_id("acc"), email, name, password_hash, now)
                token, link = self._new_link(
                    LinkPurpose.CONFIRM, email, self.policy.confirm_ttl, account_id=account.id
                )
                await tx.insert_account(account)
                await tx.insert_link(link)
                await tx.insert_audit(
                    self._event(
                        "account.signed_up", context, account_id=account.id, data={"email": email}
                    )
                )
                notice = self._confirm_notice(account, token)
        self.mailer.post(notice)

    def _confirm_notice(self, account: Account, token: str) -> Notice:
        return Notice(
            "confirm",
            account.email,
            {
                "name": account.name,
                "link": self._url(LinkPurpose.CONFIRM, token),
                "valid_for": _ttl_text(self.policy.confirm_ttl),
            },
        )

    async def resend_confirmation(self, email: str, context: RequestContext) -> None:
        """A new confirmation link for an unconfirmed account; nothing for any other
        address (the answer is the same)."""
        email = check_email(email)
        await self._throttle.spend("confirm", email, context.ip)
        self._background.later(self._resend(email, context), "confirmation resend")

    async def _resend(self, email: str, context: RequestContext) -> None:
        now = self._clock.now()
        async with self._store.begin() as tx:
            account = await tx.find_account_by_email(email)
            if account is None or account.confirmed or account.disabled_at is not None:
                return
            await tx.revoke_links(LinkPurpose.CONFIRM, now, email=email)
            token, link = self._new_link(
                LinkPurpose.CONFIRM, email, self.policy.confirm_ttl, account_id=account.id
            )
            await tx.insert_link(link)
            await tx.insert_audit(
                self._event("account.confirmation_sent", context, account_id=account.id)
            )
        self.mailer.post(self._confirm_notice(account, token))

    async def confirm(self, token: str, context: RequestContext) -> Account:
        """Mark the address of the link's account confirmed."""
        link = await self.link(token, LinkPurpose.CONFIRM)
        now = self._clock.now()
        async with self._store.begin() as tx:
            account = await tx.get_account(link.account_id or "")
            if account is None or account.email != link.email:
                raise LinkInvalid()
            await self._use(tx, link, now)
            if not account.confirmed:
                account = replace(account, confirmed_at=now)
                await tx.update_account(account)
            await tx.insert_audit(self._event("account.confirmed", context, account_id=account.id))
        return account

    # signing in ------------------------------------------------------------------

    async def authenticate(
        self,
        email: str,
        password: str,
        context: RequestContext,
        *,
        org_id: str | None = None,
        data: dict[str, object] | None = None,
    ) -> Identity | None:
        """The account or the user this email and password sign in, or None: the one
        sign-in (``SignIns.sign_in``), where a right password opens the account itself."""
        return await self._sign_ins.sign_in(
            email, password, context, org_id=org_id, accounts=True, data=data
        )

    async def set_disabled(self, email: str, disabled: bool, context: RequestContext) -> Account:
        """Disable an account (every session and refresh token of it ends, and it can no
        longer sign in), or enable it again. The operator's, from the CLI."""
        account = await self.account_of_email(email)
        now = self._clock.now()
        async with self._store.begin() as tx:
            account = replace(account, disabled_at=now if disabled else None)
            await tx.update_account(account)
            if disabled:
                await tx.revoke_sessions(account_id=account.id, user_id=None, at=now)
            # Keys, clients and tokens acting for the account's users are re-checked in
            # every process (the invalidation log), within a poll interval.
            for org, _ in await tx.account_projects(account.id):
                await tx.insert_invalidation("org", org.id, now)
            kind = "account.disabled" if disabled else "account.enabled"
            await tx.insert_audit(self._event(kind, context, account_id=account.id))
        if disabled:
            await self._end_token_sessions(account)
        return account

    async def list_accounts(self, page: PageRequest) -> Page[Account]:
        async with self._store.begin() as tx:
            return await tx.list_accounts(page)

    # passwords -------------------------------------------------------------------

    async def request_reset(self, email: str, context: RequestContext) -> None:
        """Email a reset link if the address has an account; answer the same, at the same
        speed, if not (the look-up and the link happen after the answer)."""
        email = check_email(email)
        await self._throttle.spend("reset", email, context.ip)
        self._background.later(self._issue_reset(email, context), "reset request")

    async def _issue_reset(self, email: str, context: RequestContext) -> None:
        now = self._clock.now()
        async with self._store.begin() as tx:
            account = await tx.find_account_by_email(email)
            if account is None or account.disabled_at is not None:
                await tx.insert_audit(
                    self._event(
                        "password.reset_requested",
                        context,
                        account_id=None,
                        data={"email": email, "account": False},
                    )
                )
                return
            await tx.revoke_links(LinkPurpose.RESET, now, email=email)
            token, link = self._new_link(
                LinkPurpose.RESET, email, self.policy.reset_ttl, account_id=account.id
            )
            await tx.insert_link(link)
            await tx.insert_audit(
                self._event(
                    "password.reset_requested",
                    context,
                    account_id=account.id,
                    data={"email": email, "account": True},
                )
            )
        self.mailer.post(
            Notice(
                "reset",
                email,
                {
                    "name": account.name,
                    "link": self._url(LinkPurpose.RESET, token),
                    "valid_for": _ttl_text(self.policy.reset_ttl),
                },
            )
        )

    async def reset_password(self, token: str, password: str, context: RequestContext) -> Account:
        """Set a new password through a reset link; every session of the account ends."""
        link = await self.link(token, LinkPurpose.RESET)
        async with self._store.begin() as tx:
            account = await tx.get_account(link.account_id or "")
        if account is None or account.email != link.email or account.disabled_at is not None:
            raise LinkInvalid()
        password_hash = await self._tenancy.hash_password(password, account.email)
        now = self._clock.now()
        async with self._store.begin() as tx:
            await self._use(tx, link, now)
            # The link proves the address as well as a confirmation link does.
            account = replace(
                account,
                password_hash=password_hash,
                password_changed_at=now,
                confirmed_at=account.confirmed_at or now,
            )
            await self._new_password(tx, account, now)
            await tx.insert_audit(self._event("password.reset", context, account_id=account.id))
        await self._end_token_sessions(account)
        self._password_changed_notice(account)
        return account

    async def change_password(
        self, account: Account, current: str, new: str, context: RequestContext
    ) -> Account:
        """Change a signed-in account's password; every session of it ends (the caller
        opens a new one for the browser that asked)."""
        if not await self._sign_ins.confirm(account.email, account.password_hash, current, context):
            raise WrongPassword()
        password_hash = await self._tenancy.hash_password(new, account.email)
        now = self._clock.now()
        async with self._store.begin() as tx:
            account = replace(account, password_hash=password_hash, password_changed_at=now)
            await self._new_password(tx, account, now)
            await tx.insert_audit(self._event("password.changed", context, account_id=account.id))
        await self._end_token_sessions(account)
        self._password_changed_notice(account)
        return account

    async def change_user_password(
        self, user: User, current: str, new: str, context: RequestContext
    ) -> User:
        """The same for a user an organisation created (no account): its own password."""
        if not await self._sign_ins.confirm(user.email, user.password_hash, current, context):
            raise WrongPassword()
        password_hash = await self._tenancy.hash_password(new, user.email)
        now = self._clock.now()
        user = replace(user, password_hash=password_hash)
        async with self._store.begin() as tx:
            await tx.update_user(user)
            await tx.revoke_sessions(account_id=None, user_id=user.id, at=now)
            await tx.insert_audit(
                self._event(
                    "password.changed",
                    context,
                    account_id=None,
                    org_id=user.org_id,
                    actor_user_id=user.id,
                    data={"user_id": user.id},
                )
            )
        await self._tokens.end_sessions(user.org_id, user.id)
        return user

    async def _new_password(self, tx: PortalServiceTx, account: Account, now: datetime) -> None:
        await tx.update_account(account)
        await tx.revoke_links(LinkPurpose.RESET, now, email=account.email)
        await tx.revoke_sessions(account_id=account.id, user_id=None, at=now)

    async def _end_token_sessions(self, account: Account) -> None:
        """Refresh tokens of the account's users (password grant) stop working too."""
        async with self._store.begin() as tx:
            projects = await tx.account_projects(account.id)
        for org, user in projects:
            await self._tokens.end_sessions(org.id, user.id)

    def _password_changed_notice(self, account: Account) -> None:
        self.mailer.post(
            Notice(
                "password_changed",
                account.email,
                {"name": account.name, "forgot": self.policy.forgot_url},
            )
        )

    # projects --------------------------------------------------------------------

    async def projects(self, account: Account) -> list[Project]:
        """The projects the account may open (its user there is not disabled)."""
        async with self._store.begin() as tx:
            pairs = await tx.account_projects(account.id)
            projects = []
            for org, user in pairs:
                if user.disabled_at is not None:
                    continue
                memberships = await tx.list_memberships(org.id, user.id)
                role = next((m.role for m in memberships if m.space_id is None), None)
                if role is None and memberships:
                    role = memberships[0].role
                projects.append(Project(org, user, role))
        return projects

    async def project(self, account: Account, org_id: str) -> Project:
        for project in await self.projects(account):
            if project.org.id == org_id:
                return project
        raise NotFound("project", org_id)

    async def create_project(self, account: Account, name: str, context: RequestContext) -> Project:
        if not account.confirmed:
            raise EmailNotConfirmed()
        limit = self.policy.projects_per_account
        if len(await self.projects(account)) >= limit:
            raise Conflict(f"An account may belong to at most {limit} projects.")
        founded = await self._tenancy.create_project(name, account, context)
        return Project(founded.org, founded.owner, "owner")

    async def account_of_email(self, email: str) -> Account:
        async with self._store.begin() as tx:
            account = await tx.find_account_by_email(email.strip().lower())
        if account is None:
            raise InvalidInput(
                f"No account has the address {email}: the person signs up first, or is "
                "invited to a project."
            )
        return account

    async def account_of(self, principal: Principal) -> Account:
        """The portal account behind a credential (its acting user's), or 403; only a
        credential of that person's own acts on it (``require_own_account``)."""
        async with self._store.begin() as tx:
            user = await tx.get_user(principal.org_id, principal.user_id)
            account = await tx.get_account(user.account_id) if user and user.account_id else None
            if account is None or account.disabled_at is not None:
                raise PermissionDenied(
                    "This credential acts for a user with no portal account: projects belong "
                    "to accounts (sign up in the dashboard)."
                )
            await require_own_account(tx, principal, "Acting on a portal account's projects")
        return account

    # invitations -----------------------------------------------------------------

    async def invite(self, principal: Principal, email: str, role: str) -> EmailLink:
        """Email an invitation to join the principal's project with a role."""
        if not principal.grants("users:manage"):
            raise InsufficientScope("users:manage", subject="Your credential")
        email = check_email(email)
        await self._throttle.spend("invite", email, principal.context.ip)
        now = self._clock.now()
        async with self._store.begin() as tx:
            await self._tenancy.grantable_role(tx, principal, role, None)
            org = await tx.get_org(principal.org_id)
            inviter = await tx.get_user(principal.org_id, principal.user_id)
            if org is None:
                raise NotFound("organisation", principal.org_id)
            if await tx.find_user_by_email(org.id, email):
                raise Conflict(f"{email} is already a member of this project.")
            # A new invitation replaces any earlier one to the same address.
            await tx.revoke_links(LinkPurpose.INVITE, now, email=email, org_id=org.id)
            token, link = self._new_link(
                LinkPurpose.INVITE,
                email,
                self.policy.invite_ttl,
                org_id=org.id,
                role=role,
                created_by=principal.user_id,
            )
            await tx.insert_link(link)
            await tx.insert_audit(
                audit_event(
                    principal,
                    "invitation.created",
                    now,
                    target_type="invitation",
                    target_id=link.id,
                    data={"email": email, "role": role},
                )
            )
        self.mailer.post(
            Notice(
                "invite",
                email,
                {
                    "project": org.name,
                    "role": role,
                    "inviter": _person(inviter),
                    "link": self._url(LinkPurpose.INVITE, token),
                    "valid_for": _ttl_text(self.policy.invite_ttl),
                },
            )
        )
        return link

    async def invitations(self, principal: Principal) -> list[EmailLink]:
        """The project's invitations not yet accepted, revoked or expired."""
        if not principal.grants("users:read"):
            raise InsufficientScope("users:read", subject="Your credential")
        async with self._store.begin() as tx:
            return await tx.pending_links(LinkPurpose.INVITE, principal.org_id, self._clock.now())

    async def revoke_invitation(self, principal: Principal, invitation_id: str) -> None:
        if not principal.grants("users:manage"):
            raise InsufficientScope("users:manage", subject="Your credential")
        now = self._clock.now()
        async with self._store.begin() as tx:
            revoked = await tx.revoke_links(
                LinkPurpose.INVITE, now, org_id=principal.org_id, link_id=invitation_id
            )
            if not revoked:
                raise NotFound("invitation", invitation_id)
            await tx.insert_audit(
                audit_event(
                    principal,
                    "invitation.revoked",
                    now,
                    target_type="invitation",
                    target_id=invitation_id,
                )
            )

    async def invitation(self, token: str) -> Invitation:
        """What an invitation link offers, for the page that accepts it."""
        link = await self.link(token, LinkPurpose.INVITE)
        async with self._store.begin() as tx:
            org = await tx.get_org(link.org_id or "")
            inviter = await tx.get_user(link.org_id or "", link.created_by or "")
            account = await tx.find_account_by_email(link.email)
        if org is None:
            raise LinkInvalid()
        return Invitation(link, org, _person(inviter), account is not None)

    async def accept(
        self,
        token: str,
        context: RequestContext,
        *,
        account: Account | None = None,
        name: str = "",
        password: str = "",
    ) -> tuple[Account, Project]:
        """Join the invitation's project: as the signed-in ``account`` (whose address the
        invitation was sent to), or as a new account opened with ``name`` and ``password``
        (confirmed: the link proves the address)."""
        link = await self.link(token, LinkPurpose.INVITE)
        async with self._store.begin() as tx:
            existing = await tx.find_account_by_email(link.email)
        new_account = None
        if account is not None:
            if account.email != link.email:
                raise PermissionDenied(
                    f"This invitation is for {link.email}; sign in with that address to accept it."
                )
        elif existing is not None:
            raise PermissionDenied(f"Sign in as {link.email} to accept this invitation.")
        else:
            password_hash = await self._tenancy.hash_password(password, link.email)
            now = self._clock.now()
            account = new_account = Account(
                new_id("acc"),
                link.email,
                check_name(name or link.email.split("@")[0], "account"),
                password_hash,
                now,
                confirmed_at=now,
            )
        now = self._clock.now()
        async with self._store.begin() as tx:
            await self._use(tx, link, now)
            org = await tx.get_org(link.org_id or "")
            if org is None or link.role is None:
                raise LinkInvalid()
            role = BUILTIN_ROLES.get(link.role) or await tx.get_role(org.id, link.role)
            if role is None:
                raise LinkInvalid(
                    f"The role {link.role!r} of this invitation no longer exists. Ask for a "
                    "new invitation."
                )
            await check_still_offered(tx, org.id, link.created_by, ScopeSet(role.scopes))
            if new_account is not None:
                await tx.insert_account(new_account)
                await tx.insert_audit(
                    self._event(
                        "account.signed_up",
                        context,
                        account_id=account.id,
                        data={"email": account.email, "invitation": link.id},
                    )
                )
            elif not account.confirmed:
                account = replace(account, confirmed_at=now)
                await tx.update_account(account)
            if await tx.find_user_by_email(org.id, link.email):
                raise Conflict(f"{link.email} is already a member of this project.")
            user = User(
                new_id("usr"), org.id, account.email, account.name, None, now, account_id=account.id
            )
            await tx.insert_user(user)
            await tx.put_membership(Membership(org.id, user.id, None, link.role, now))
            await tx.insert_audit(
                self._event(
                    "invitation.accepted",
                    context,
                    account_id=account.id,
                    org_id=org.id,
                    actor_user_id=user.id,
                    data={"email": account.email, "role": link.role, "invitation": link.id},
                )
            )
            await tx.insert_invalidation("org", org.id, now)
        return account, Project(org, user, link.role)


def _person(user: User | None) -> str:
    """How a message names a person: "Ada Lovelace (ada@acme.test)", or the address alone
    when the name is only its local part (a name nobody chose)."""
    if user is None:
        return ""
    if not user.name or user.name == user.email.split("@")[0]:
        return user.email
    return f"{user.name} ({user.email})"
