"""The interfaces the services need from the outside world, in one place.

A store transaction is split by aggregate (``TenancyTx``, ``CredentialsTx``, ``TokensTx``,
``InvalidationsTx``, ``PortalTx``, ``AuditTx``, ``WebhooksTx``, ``AnalyticsTx``);
``Transaction`` combines them all, for the SQL store and the wiring. Each service
composes, next to it, the ones it uses (``KeysTx`` in ``services.keys``) and asks for a
``Store`` of that; a service named like an aggregate names its own ``...ServiceTx``.

SQLAlchemy and the in-process cache are adapters that satisfy these protocols
(``apiward.adapters``); nothing in the services imports them. The records they exchange
live in ``apiward.core``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Final, Protocol, TypeVar

from apiward.core.addresses import AddressUse, Overflow
from apiward.core.analytics import Bucket, Query
from apiward.core.hygiene import HygienePolicy
from apiward.core.limits import Credits, Decision, Hit
from apiward.core.models import (
    Account,
    ApiKey,
    AuditEvent,
    AuditFilter,
    DashboardSession,
    EmailLink,
    Environment,
    Invalidation,
    KeyFilter,
    LinkPurpose,
    Membership,
    MfaFactor,
    Notice,
    OAuthClient,
    Organisation,
    Page,
    PageRequest,
    RefreshToken,
    Role,
    Space,
    StoredSigningKey,
    User,
)
from apiward.core.scope_usage import ScopeUse
from apiward.core.webhooks import SendOutcome, WebhookDelivery, WebhookEndpoint


class Front(Protocol):
    """A buffer in front of an in-memory tally (``services.allowed.AllowedTally``), which
    the tally spills into itself before it drains for a flush."""

    def spill(self) -> None: ...


class TenancyTx(Protocol):
    """Organisations and their tenancy: environments, spaces, users, roles and memberships."""

    # organisations and environments
    async def insert_org(self, org: Organisation) -> None: ...
    async def get_org(self, org_id: str) -> Organisation | None: ...
    async def list_orgs(self) -> list[Organisation]: ...
    async def update_org(self, org: Organisation) -> None: ...
    async def insert_environment(self, env: Environment) -> None: ...
    async def list_environments(self, org_id: str) -> list[Environment]: ...

    # spaces
    async def insert_space(self, space: Space) -> None: ...
    async def get_space(self, org_id: str, space_id: str) -> Space | None: ...
    async def list_spaces(
        self, org_id: str, page: PageRequest, *, include_archived: bool
    ) -> Page[Space]: ...
    async def active_space_ids(self, org_id: str) -> list[str]: ...
    async def default_space(self, org_id: str) -> Space | None: ...
    async def update_space(self, space: Space) -> None: ...

    # users
    async def insert_user(self, user: User) -> None: ...
    async def get_user(self, org_id: str, user_id: str) -> User | None: ...
    async def find_user_by_email(self, org_id: str, email: str) -> User | None: ...
    async def find_users_by_email(self, email: str) -> list[User]:
        """Every user with this email, across organisations (sign-in)."""
        ...

    async def list_users(self, org_id: str, page: PageRequest) -> Page[User]: ...
    async def update_user(self, user: User) -> None: ...

    # roles and memberships
    async def insert_role(self, role: Role) -> None: ...
    async def get_role(self, org_id: str, name: str) -> Role | None: ...
    async def list_roles(self, org_id: str) -> list[Role]: ...
    async def update_role(self, role: Role) -> None: ...
    async def delete_role(self, org_id: str, name: str) -> None: ...
    async def role_in_use(self, org_id: str, name: str) -> bool: ...
    async def put_membership(self, membership: Membership) -> None: ...
    async def delete_membership(self, org_id: str, user_id: str, space_id: str | None) -> bool: ...
    async def list_memberships(self, org_id: str, user_id: str) -> list[Membership]: ...


class CredentialsTx(Protocol):
    """The credentials an organisation issues: API keys (their credits, bulk imports) and
    OAuth clients."""

    # API keys
    async def insert_key(self, key: ApiKey) -> None: ...
    async def get_key(self, org_id: str, key_id: str) -> ApiKey | None: ...
    async def find_key_by_digest(self, digest: str) -> ApiKey | None: ...
    async def list_keys(self, org_id: str, flt: KeyFilter, page: PageRequest) -> Page[ApiKey]: ...
    async def update_key(self, key: ApiKey) -> None: ...
    async def touch_keys(self, usage: Sequence[tuple[str, datetime, str | None]]) -> None: ...
    async def key_credits_for_update(self, key_id: str) -> Credits | None:
        """The key's credits, its row locked until the transaction ends."""
        ...

    async def set_key_credits(self, key_id: str, credits: Credits | None) -> None: ...
    async def insert_keys_bulk(self, keys: Sequence[ApiKey]) -> None:
        """Insert many keys in one statement (executemany); their digests must be new."""
        ...

    async def existing_key_digests(self, digests: Sequence[str]) -> set[str]:
        """Which of these digests are already stored."""
        ...

    async def record_key_format(self, spec: str, now: datetime) -> None:
        """Record that keys are issued in the format ``spec`` as of ``now``."""
        ...

    async def key_formats(self) -> list[str]:
        """Every key format recorded, the most recently seen first."""
        ...

    async def key_prefix_counts(self) -> dict[str, int]:
        """How many keys not revoked start with each display prefix."""
        ...

    # OAuth clients
    async def insert_client(self, client: OAuthClient) -> None: ...
    async def get_client(self, org_id: str, client_id: str) -> OAuthClient | None: ...
    async def find_client(self, client_id: str) -> OAuthClient | None: ...
    async def find_client_by_secret(self, secret_digest: str) -> OAuthClient | None: ...
    async def list_clients(
        self,
        org_id: str,
        environment: str,
        page: PageRequest,
        *,
        external_id: str | None = None,
    ) -> Page[OAuthClient]:
        """A page of the environment's clients (of this ``external_id`` only, if given)."""
        ...

    async def update_client(self, client: OAuthClient) -> None: ...
    async def touch_clients(self, usage: Sequence[tuple[str, datetime, str | None]]) -> None: ...


class TokensTx(Protocol):
    """Refresh tokens, token revocations, and the signing keys of access tokens."""

    # refresh tokens and revocations
    async def insert_refresh(self, token: RefreshToken) -> None: ...
    async def find_refresh_for_update(self, digest: str) -> RefreshToken | None:
        """The token row, locked until the transaction ends (concurrent refreshes queue)."""
        ...

    async def update_refresh(self, token: RefreshToken) -> None: ...
    async def revoke_family(self, family_id: str, at: datetime) -> int: ...
    async def user_families(self, org_id: str, user_id: str) -> list[str]: ...
    async def prune_refresh(self, expired_before: datetime, answers_before: datetime) -> None:
        """Delete long-expired tokens; wipe sealed answers whose grace window has ended."""
        ...

    async def insert_revocation(
        self, kind: str, value: str, at: datetime, expires_at: datetime
    ) -> None: ...
    async def active_revocations(self, now: datetime) -> list[tuple[str, str]]: ...

    # signing keys
    async def insert_signing_key(self, key: StoredSigningKey) -> None: ...
    async def list_signing_keys(self) -> list[StoredSigningKey]: ...
    async def retire_signing_key(self, kid: str, at: datetime, expires_at: datetime) -> None: ...


class InvalidationsTx(Protocol):
    """The log of cache invalidations that every process polls (a changed credential,
    user or organisation drops out of every cache)."""

    async def insert_invalidation(self, kind: str, target: str, at: datetime) -> None: ...
    async def invalidations_since(self, since: datetime) -> list[Invalidation]: ...
    async def prune_invalidations(self, before: datetime) -> None: ...


class PortalTx(Protocol):
    """Portal accounts, the links emailed to them, and dashboard sessions."""

    # dashboard sessions
    async def insert_session(self, session: DashboardSession) -> None: ...
    async def find_session(self, digest: str) -> DashboardSession | None: ...
    async def revoke_session(self, session_id: str, at: datetime) -> None: ...
    async def prune_sessions(self, expired_before: datetime) -> int: ...
    async def revoke_sessions(
        self, *, account_id: str | None, user_id: str | None, at: datetime
    ) -> int:
        """Revoke every live session of an account (or of a user with no account)."""
        ...

    async def move_session(self, session_id: str, org_id: str, user_id: str) -> None:
        """Point a session at another project of its account."""
        ...

    # portal accounts and the links emailed to them
    async def insert_account(self, account: Account) -> None: ...
    async def get_account(self, account_id: str) -> Account | None: ...
    async def find_account_by_email(self, email: str) -> Account | None: ...
    async def update_account(self, account: Account) -> None: ...
    async def list_accounts(self, page: PageRequest) -> Page[Account]: ...
    async def account_projects(self, account_id: str) -> list[tuple[Organisation, User]]:
        """The organisations the account belongs to, each with its user there, oldest first."""
        ...

    async def insert_link(self, link: EmailLink) -> None: ...
    async def find_link(self, digest: str) -> EmailLink | None: ...
    async def get_link(self, link_id: str) -> EmailLink | None: ...
    async def use_link(self, link_id: str, at: datetime) -> bool:
        """Mark the link used unless it is used, revoked or expired at ``at``; whether this
        call did (of two concurrent uses, exactly one gets True)."""
        ...

    async def revoke_links(
        self,
        purpose: LinkPurpose,
        at: datetime,
        *,
        email: str | None = None,
        org_id: str | None = None,
        link_id: str | None = None,
    ) -> int:
        """Revoke the unused links of this purpose that match every filter given."""
        ...

    async def pending_links(
        self, purpose: LinkPurpose, org_id: str, now: datetime
    ) -> list[EmailLink]:
        """Unused, unrevoked, unexpired links of an organisation (invitations), newest first."""
        ...

    async def prune_links(self, before: datetime) -> int:
        """Delete links that expired before ``before``."""
        ...


class MfaTx(Protocol):
    """Second factors for dashboard sign-in: authenticators and recovery codes."""

    async def get_mfa(self, owner_id: str) -> MfaFactor | None: ...
    async def put_mfa(self, factor: MfaFactor) -> None:
        """Start an enrolment: this factor (not enabled) replaces any not yet enabled."""
        ...

    async def enable_mfa(
        self, owner_id: str, at: datetime, step: int, recovery_digests: Sequence[str]
    ) -> bool:
        """Enable the waiting factor, with ``step`` used and these recovery codes (any
        earlier ones dropped); False when there is none waiting (of two concurrent
        confirmations, exactly one gets True)."""
        ...

    async def delete_mfa(self, owner_id: str) -> bool:
        """Remove the factor and its recovery codes; whether there was one."""
        ...

    async def use_mfa_step(self, owner_id: str, step: int) -> bool:
        """Record ``step`` as used unless it, or a later one, already is (a replay):
        whether this call did."""
        ...

    async def use_recovery_code(self, owner_id: str, digest: str, at: datetime) -> bool:
        """Mark this unused recovery code of the owner used; whether this call did."""
        ...

    async def recovery_codes_left(self, owner_id: str) -> int: ...


class AuditTx(Protocol):
    """The audit log, its retention, and the webhook outbox (every ``insert_audit`` also
    queues the event there)."""

    async def insert_audit(self, event: AuditEvent) -> None: ...
    async def list_audit(
        self, org_id: str | None, flt: AuditFilter, page: PageRequest
    ) -> Page[AuditEvent]:
        """An organisation's events; ``None``: the events about portal accounts."""
        ...

    async def prune_audit(self, before: datetime) -> int:
        """Delete audit events older than ``before``; the number deleted."""
        ...

    async def take_outbox(self, limit: int) -> list[AuditEvent]:
        """Remove up to ``limit`` queued events from the outbox and return them, oldest
        first. Rows another transaction is taking are skipped, not waited for."""
        ...


class WebhooksTx(Protocol):
    """Webhook endpoints and the deliveries queued for them."""

    async def insert_webhook(self, endpoint: WebhookEndpoint) -> None: ...
    async def get_webhook(self, org_id: str, webhook_id: str) -> WebhookEndpoint | None: ...
    async def list_webhooks(
        self, org_id: str, environment: str | None, page: PageRequest
    ) -> Page[WebhookEndpoint]: ...
    async def active_webhooks(self) -> list[WebhookEndpoint]:
        """Every enabled endpoint of every organisation."""
        ...

    async def update_webhook(self, endpoint: WebhookEndpoint) -> None: ...
    async def delete_webhook(self, org_id: str, webhook_id: str) -> bool:
        """Delete the endpoint and its deliveries; whether it existed."""
        ...

    async def insert_deliveries(self, deliveries: Sequence[WebhookDelivery]) -> int:
        """Queue deliveries, skipping any (endpoint, event) pair already queued."""
        ...

    async def claim_deliveries(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> list[WebhookDelivery]:
        """Pending deliveries due at ``now`` whose endpoint is enabled, leased to the
        caller until ``lease_until`` (no other process takes them meanwhile)."""
        ...

    async def finish_attempt(self, delivery: WebhookDelivery) -> None:
        """Write an attempt's outcome (status, attempts, next attempt) and drop the lease."""
        ...

    async def list_deliveries(
        self, org_id: str, webhook_id: str, page: PageRequest
    ) -> Page[WebhookDelivery]: ...
    async def get_delivery(
        self, org_id: str, webhook_id: str, delivery_id: str
    ) -> WebhookDelivery | None: ...
    async def requeue_delivery(
        self, org_id: str, webhook_id: str, delivery_id: str, now: datetime
    ) -> bool:
        """Make a failed delivery pending again, due at ``now``, its attempts counted
        afresh (their log kept); whether it was a failed delivery of that endpoint."""
        ...

    async def prune_deliveries(self, before: datetime) -> int:
        """Delete finished deliveries created before ``before``."""
        ...


class AnalyticsTx(Protocol):
    """Verification counts (the default sink: see README, "Usage analytics")."""

    async def add_verifications(self, rows: Sequence[Bucket]) -> None:
        """Add these counts to the stored ones (an upsert that adds, never overwrites)."""
        ...

    async def verification_counts(
        self, org_id: str, environment: str, query: Query
    ) -> list[Bucket]:
        """Counts of one organisation and environment, grouped as ``query`` asks."""
        ...

    async def prune_verifications(self, granularity: str, before: datetime) -> int:
        """Delete one granularity's buckets that start before ``before``."""
        ...

    async def add_scope_uses(self, rows: Sequence[ScopeUse]) -> None:
        """Add these uses to the stored counts (an upsert that adds)."""
        ...

    async def scope_uses(
        self, org_id: str, environment: str, credential_id: str, first_day: int, last_day: int
    ) -> list[ScopeUse]:
        """The uses of one credential of one organisation and environment, by day."""
        ...

    async def prune_scope_uses(self, before_day: int) -> int:
        """Delete the uses counted on days before ``before_day``."""
        ...

    async def add_address_uses(self, rows: Sequence[AddressUse]) -> None:
        """Add these per-network counts to the stored ones (an upsert that adds)."""
        ...

    async def merge_address_overflows(self, rows: Sequence[Overflow]) -> None:
        """Merge these overflows into the stored ones (requests add, sketches take each
        register's maximum, countries unite), whichever process wrote before."""
        ...

    async def address_uses(
        self, org_id: str, environment: str, credential_id: str, first_day: int, last_day: int
    ) -> list[AddressUse]:
        """The per-network counts of one credential of one organisation and environment."""
        ...

    async def address_overflows(
        self, org_id: str, environment: str, credential_id: str, first_day: int, last_day: int
    ) -> list[Overflow]:
        """The overflows of one credential of one organisation and environment, by day."""
        ...

    async def address_candidates(
        self, day: int, networks: int | None, countries: int | None
    ) -> list[tuple[str, str, str]]:
        """(organisation, environment, credential) of every credential whose stored rows
        of ``day`` reach ``networks`` prefixes or ``countries`` countries, or that
        overflowed that day (when either threshold is set)."""
        ...

    async def prune_addresses(self, before_day: int) -> int:
        """Delete the per-network counts and overflows of days before ``before_day``."""
        ...


class HygieneTx(Protocol):
    """The keys hygiene policies concern, and the notices already sent (one each)."""

    async def hygiene_candidates(
        self,
        after_id: str,
        limit: int,
        *,
        expiring_before: datetime | None,
        unused_before: datetime | None,
        refilling: bool,
    ) -> list[ApiKey]:
        """Up to ``limit`` keys not revoked, ids after ``after_id`` in order, that expire
        by ``expiring_before``, were last used (else created) by ``unused_before`` and are
        not disabled, or whose credits refill (``refilling``)."""
        ...

    async def org_hygiene_policies(self) -> dict[str, HygienePolicy]:
        """The organisations that set a hygiene policy of their own, and that policy."""
        ...

    async def key_notices(self, key_ids: Sequence[str]) -> set[tuple[str, str, str]]:
        """The (key id, kind, mark) of the notices already sent to these keys."""
        ...

    async def claim_key_notice(
        self, key_id: str, org_id: str, kind: str, mark: str, at: datetime
    ) -> bool:
        """Record this notice as sent; False when it already was (by any process)."""
        ...


class Transaction(
    TenancyTx,
    CredentialsTx,
    TokensTx,
    InvalidationsTx,
    PortalTx,
    MfaTx,
    AuditTx,
    WebhooksTx,
    AnalyticsTx,
    HygieneTx,
    Protocol,
):
    """One atomic unit of work against the store, over every aggregate: what the SQL
    store hands out and the wiring holds. Services ask for the narrower protocols."""


TxT_co = TypeVar("TxT_co", covariant=True)


class Store(Protocol[TxT_co]):
    """Hands out transactions of type ``TxT_co``: a service declares the aggregates it
    works on (``Store[KeysTx]``), and any store whose transactions cover them will do."""

    def begin(self) -> AbstractAsyncContextManager[TxT_co]:
        """A transaction, committed when the block exits without an error."""
        ...

    async def ping(self) -> None:
        """Raise ``ServiceUnavailable`` when the store cannot be reached."""
        ...

    async def close(self) -> None: ...


class _Unknown:
    """What the cache answers for a credential looked up and not found."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Final = _Unknown()
"""``Cache.get``'s answer for a key recorded with ``Cache.set_unknown``."""


class Cache(Protocol):
    """A bounded, expiring map from credential digests to verified records.

    A verified record belongs to one organisation (``set``'s ``org``), so that a change
    to an organisation drops that organisation's records only (``invalidate_org``).
    Credentials looked up and not found are kept apart (``set_unknown``), in an area
    of their own bound: however many unknown credentials are presented, they never
    evict a verified record.
    """

    @property
    def epoch(self) -> int:
        """Moves on at every invalidation: taken before a record is read from the store
        and handed to ``set`` as ``since``, it keeps a record read before an
        invalidation (of it, its org or everything) from being cached after it."""
        ...

    def get(self, key: str) -> Any | None:
        """The record under ``key``, ``UNKNOWN``, or None when nothing (live) is held."""
        ...

    def set(self, key: str, value: Any, *, org: str, since: int | None = None) -> None:
        """Hold ``value``, unless the cache was invalidated after ``since`` (an epoch)."""
        ...

    def stale(self, key: str) -> Any | None:
        """The verified record under ``key`` past its TTL by at most the deployment's
        serve-stale bound (None beyond, or when none is held): relied on only while the
        store cannot be read."""
        ...

    def set_unknown(self, key: str, *, since: int | None = None) -> None: ...
    def invalidate(self, key: str) -> None: ...
    def invalidate_org(self, org: str) -> None:
        """Drop every verified record of the organisation."""
        ...

    def forget_unknown(self) -> None:
        """Drop every ``UNKNOWN`` (keys were imported: one of them may be known now)."""
        ...

    def clear(self) -> None: ...


class Limiter(Protocol):
    """Limiter state: the memory, Redis and fallback adapters satisfy it."""

    async def hit(self, key: str, limit: int, period: float, cost: int = 1) -> Decision:
        """Decide one request on ``key`` and spend ``cost`` when admitted."""
        ...

    async def hit_all(self, hits: Sequence[Hit], report: Sequence[Hit] = ()) -> list[Decision]:
        """Decide several limits at once; spend on all of them or on none. Then each of
        ``report`` (limits in report mode) on its own, spent only where it admits a
        request ``hits`` admitted; their decisions follow those of ``hits``."""
        ...

    async def peek(self, key: str, limit: int, period: float, cost: int = 1) -> Decision:
        """The decision ``hit`` would take, without spending (cost 0 reads the state)."""
        ...

    async def reset(self, key: str) -> None:
        """Forget ``key``: its bucket is full again."""
        ...

    async def refund(self, hits: Sequence[Hit]) -> None:
        """Give back what these admitted hits spent (never more than a full bucket)."""
        ...

    async def aclose(self) -> None: ...


class WebhookSender(Protocol):
    """Posts a signed body to an endpoint; the httpx adapter satisfies it."""

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> SendOutcome:
        """Never raises for network failures: they come back as ``error``."""
        ...


class Mailer(Protocol):
    """Sends emails; the SMTP and log adapters satisfy it."""

    def post(self, notice: Notice) -> None:
        """Queue the email and return at once: it goes out in the background, so that no
        answer waits for (or, by its timing, tells of) an email being sent."""
        ...
