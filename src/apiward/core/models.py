"""Domain records. Plain frozen dataclasses: the services build them, the stores keep them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Generic, TypeVar

from apiward.core.authority import UNBOUNDED, Bounds, Grant
from apiward.core.authority import IPNetwork as IPNetwork
from apiward.core.hygiene import HygienePolicy
from apiward.core.limits import Credits, Spent
from apiward.core.owners import Meta, MetaValue, empty
from apiward.core.scopes import ScopeSet

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RateOverride:
    """A rate limit set on one credential: ``name``, ``rate`` ("1000/hour"), ``key`` kind."""

    name: str
    rate: str
    key: str = "credential"
    replaces_plan: bool = False
    """Set by the operator: replaces the plan's limit of the same name (which may loosen
    it). A tenant's own limit is added beside the plan's instead, so it only restricts."""
    mode: str = "enforce"
    """``report``: counted as what it would refuse, never enforced (``Policy.mode``)."""


@dataclass(frozen=True, slots=True)
class Organisation:
    id: str
    name: str
    created_at: datetime
    rate_tier: str | None = None
    key_hygiene: HygienePolicy | None = None
    """The organisation's own key hygiene policy, tightening the operator's (None: the
    operator's alone)."""
    require_mfa: bool = False
    """Whether every member must sign in to the dashboard with a second factor."""


@dataclass(frozen=True, slots=True)
class Environment:
    id: str
    org_id: str
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Space:
    id: str
    org_id: str
    name: str
    is_default: bool
    created_at: datetime
    archived_at: datetime | None = None
    archived_by: str | None = None
    """The user whose credential archived the space (None while it is not archived,
    and for spaces archived before apiward recorded it): bringing it back needs covering
    that user's authority (docs/authority.md)."""


@dataclass(frozen=True, slots=True)
class User:
    id: str
    org_id: str
    email: str
    name: str
    password_hash: str | None
    created_at: datetime
    disabled_at: datetime | None = None
    account_id: str | None = None
    """The portal account this user stands for in its organisation (its password is the
    account's); None for a user the organisation created itself."""


@dataclass(frozen=True, slots=True)
class Account:
    """A person who signs in to the dashboard, the developer portal, by email and password.

    An account owns or belongs to any number of projects (organisations) through one
    ``User`` per project, linked by ``User.account_id``.
    """

    id: str
    email: str
    name: str
    password_hash: str
    created_at: datetime
    confirmed_at: datetime | None = None
    disabled_at: datetime | None = None
    password_changed_at: datetime | None = None

    @property
    def confirmed(self) -> bool:
        return self.confirmed_at is not None


class LinkPurpose(StrEnum):
    """What an emailed link does."""

    CONFIRM = "confirm"
    RESET = "reset"
    INVITE = "invite"


@dataclass(frozen=True, slots=True)
class EmailLink:
    """A single-use, expiring link sent by email; only the SHA-256 of its token is kept."""

    id: str
    purpose: LinkPurpose
    digest: str
    email: str
    created_at: datetime
    expires_at: datetime
    account_id: str | None = None
    org_id: str | None = None
    role: str | None = None
    created_by: str | None = None
    used_at: datetime | None = None
    revoked_at: datetime | None = None

    def usable(self, now: datetime) -> bool:
        return self.used_at is None and self.revoked_at is None and now < self.expires_at


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    scopes: tuple[str, ...]
    description: str
    builtin: bool
    org_id: str | None = None
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Membership:
    """A user's role in one space, or in every space of the org when ``space_id`` is None."""

    org_id: str
    user_id: str
    space_id: str | None
    role: str
    created_at: datetime


class KeyState(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"
    REVOKED = "revoked"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    org_id: str
    environment: str
    name: str
    digest: str
    prefix: str
    last4: str
    scopes: tuple[str, ...]
    created_by: str
    created_at: datetime
    updated_at: datetime
    user_id: str | None = None
    expires_at: datetime | None = None
    ip_allow: tuple[str, ...] = ()
    space_allow: tuple[str, ...] = ()
    disabled_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    last_used_ip: str | None = None
    rolled_to: str | None = None
    api_version: str | None = None
    rate_limits: tuple[RateOverride, ...] = ()
    """Limits of this key replacing (by name) or adding to its org's plan."""
    credits: Credits | None = None
    """Usage credits (None: unlimited)."""
    operator_expires_at: datetime | None = None
    operator_ip_allow: tuple[str, ...] | None = None
    operator_space_allow: tuple[str, ...] | None = None
    """The expiry and allow-lists as the operator set them (None: not the operator's),
    which the key's own stay within: its ``bounds``."""
    external_id: str | None = None
    """The vendor's own id of the customer or account the key is for (``core.owners``)."""
    meta: dict[str, MetaValue] = field(default_factory=dict)
    """The vendor's own data about the key, a flat JSON object (``core.owners``)."""

    @property
    def bounds(self) -> Bounds:
        """What the operator set on this key, which its tenant may only tighten."""
        return Bounds(self.operator_expires_at, self.operator_ip_allow, self.operator_space_allow)

    def state(self, now: datetime) -> KeyState:
        if self.revoked_at is not None:
            return KeyState.REVOKED
        if self.expires_at is not None and self.expires_at <= now:
            return KeyState.EXPIRED
        if self.disabled_at is not None:
            return KeyState.DISABLED
        return KeyState.ACTIVE

    @property
    def acting_user_id(self) -> str:
        """A key tied to no user acts as its creator (docs/compatibility.md)."""
        return self.user_id or self.created_by


@dataclass(frozen=True, slots=True)
class AuditEvent:
    id: str
    org_id: str | None
    """None for an event about a portal account outside any organisation (sign-up, say)."""
    environment: str | None
    type: str
    created_at: datetime
    actor_user_id: str | None = None
    actor_credential_id: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    space_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    data: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    page: int
    page_size: int


@dataclass(frozen=True, slots=True)
class PageRequest:
    page: int = 1
    page_size: int = 20

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Where a request came from: what the audit log records next to the actor."""

    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    space_id: str | None = None
    api_version: str | None = None
    route: str | None = None
    method: str = "GET"
    counted_route: str | None = None
    """What analytics count the request under, when ``route`` is a raw path (forward
    auth): the route rule it falls under, so that clients cannot mint new rows."""
    acts_in_space: bool = True
    """False for a request that touches no space's data (the root echo): it is
    authenticated without the space header even where the deployment requires one."""
    country: str | None = None
    """The ISO 3166-1 country a trusted proxy's header placed the request in (else None:
    ``apiward.adapters.geo`` may still place ``ip``)."""
    asserted: bool = False
    """``ip`` and ``route`` are the caller's word about another request (the verify
    API), not the connection's or the declared proxy's: limits keyed on them count
    within the caller's organisation only (``services.limiting``)."""


def visible_in(record: str | None, viewer: str | None) -> bool:
    """Whether a record of environment ``record`` may be seen from environment
    ``viewer``: one of no environment (an organisation's own events) from anywhere, one
    of an environment from that environment only, and every one from ``viewer`` None
    (a viewer that spans environments). Data never crosses environments otherwise: a
    ``test`` credential sees nothing of ``live``."""
    return record is None or viewer is None or record == viewer


class CredentialKind(StrEnum):
    API_KEY = "api_key"
    ACCESS_TOKEN = "access_token"
    OPERATOR = "operator"
    SESSION = "session"
    """A person signed in to the dashboard."""

    @property
    def spans_environments(self) -> bool:
        """The CLI's operator and a dashboard session act on every environment."""
        return self in (CredentialKind.OPERATOR, CredentialKind.SESSION)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, and what they may do: what a protected route receives."""

    org_id: str
    environment: str
    space_id: str
    user_id: str
    scopes: ScopeSet
    credential_id: str
    credential_kind: CredentialKind
    context: RequestContext = field(default_factory=RequestContext)
    client_id: str | None = None
    api_version: str | None = None
    rate_limit: dict[str, str] = field(default_factory=dict)
    """The rate-limit header fields of this request (empty when no limit applies)."""
    credits_remaining: int | None = None
    spent: Spent | None = None
    """What this request spent of its limits and credits (to give back on a refusal)."""
    would_refuse: tuple[str, ...] = ()
    """The rules in report mode that would have refused this admitted request: limits
    by name, scopes as ``scope:{scope}`` (counted ``WOULD_REFUSE``, never enforced)."""
    grant: Grant = UNBOUNDED
    """What the credential allows by itself, before its user's roles: what delegation
    checks weigh (``apiward.core.authority``). Unbounded for a dashboard session."""
    external_id: str | None = None
    """The vendor's own id of whom the credential belongs to: the API key's, or the OAuth
    client's behind an access token (None for a token of no client)."""
    meta: Meta = field(default_factory=empty)
    """The vendor's own data of that key or client, read-only."""

    def grants(self, scope: str) -> bool:
        return self.scopes.grants(scope)

    @property
    def viewed_environment(self) -> str | None:
        """The environment this principal sees records of (beside those of none), or
        None for every one: the CLI's operator and a dashboard session span them."""
        return None if self.credential_kind.spans_environments else self.environment

    def sees(self, environment: str | None) -> bool:
        """Whether a record of ``environment`` is this principal's to see (``visible_in``)."""
        return visible_in(environment, self.viewed_environment)


@dataclass(frozen=True, slots=True)
class OAuthClient:
    """A ``client_id``/``client_secret`` pair (docs/compatibility.md)."""

    id: str
    org_id: str
    environment: str
    name: str
    secret_digest: str
    secret_last4: str
    scopes: tuple[str, ...]
    created_by: str
    created_at: datetime
    updated_at: datetime
    user_id: str | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    last_used_ip: str | None = None
    external_id: str | None = None
    """The vendor's own id of the customer or account the client is for (``core.owners``)."""
    meta: dict[str, MetaValue] = field(default_factory=dict)
    """The vendor's own data about the client, a flat JSON object (``core.owners``)."""

    @property
    def acting_user_id(self) -> str:
        return self.user_id or self.created_by


@dataclass(frozen=True, slots=True)
class RefreshToken:
    """One link of a rotation chain; ``family_id`` groups the chain (RFC 6819 5.2.2.3)."""

    id: str
    family_id: str
    digest: str
    org_id: str
    environment: str
    user_id: str
    scope: str
    created_at: datetime
    expires_at: datetime
    client_id: str | None = None
    space_id: str | None = None
    used_at: datetime | None = None
    successor_id: str | None = None
    answer_sealed: str | None = None
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class StoredSigningKey:
    kid: str
    alg: str
    jwk: dict[str, object]
    private_sealed: str
    created_at: datetime
    retired_at: datetime | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class KeyFilter:
    environment: str | None
    """None: every environment (for principals that span them)."""
    user_id: str | None = None
    include_revoked: bool = True
    external_id: str | None = None
    """Only the keys of this ``external_id``."""
    search: str | None = None
    """Only the keys whose name contains it (any case), or whose id, last four
    characters or shown hint (``prefix…last4``) it is."""
    state: KeyState | None = None
    """Only the keys in this state at ``now`` (``ApiKey.state``)."""
    now: datetime | None = None
    expires_before: datetime | None = None
    """Only the keys with an expiry at or before it."""
    unused_before: datetime | None = None
    """Only the keys last used (or, never used, created) at or before it."""


@dataclass(frozen=True, slots=True)
class AuditFilter:
    type: str | None = None
    actor_user_id: str | None = None
    target_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    environment: str | None = None
    credential_id: str | None = None
    """Events by this credential (the actor's) or about it (the target)."""


@dataclass(frozen=True, slots=True)
class Invalidation:
    seq: int
    kind: str
    target: str
    created_at: datetime
    """When the change was made (the writing transaction's clock)."""


@dataclass(frozen=True, slots=True)
class DashboardSession:
    """A dashboard sign-in; the cookie holds the secret, the store only its SHA-256."""

    id: str
    digest: str
    org_id: str | None
    """The project being looked at; None for an account with no project yet."""
    user_id: str | None
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None
    ip: str | None = None
    user_agent: str | None = None
    account_id: str | None = None
    """The portal account signed in; None for a user an organisation created itself."""


@dataclass(frozen=True, slots=True)
class MfaFactor:
    """A person's authenticator (TOTP) for dashboard sign-in: a portal account's, or that
    of a user an organisation created with a password of its own."""

    owner_id: str
    """The account's id, or the user's."""
    secret_sealed: str
    """The TOTP secret, sealed (AES-GCM) with the deployment's secret."""
    created_at: datetime
    enabled_at: datetime | None = None
    """None while enrolment waits for its first code."""
    last_step: int | None = None
    """The last time step a code was accepted for: no code of it or before is again."""


@dataclass(frozen=True, slots=True)
class Notice:
    """An email to send: its template (``confirm``, ``reset``...), to whom, and the values
    the template shows (links included)."""

    template: str
    to: str
    values: dict[str, str]
