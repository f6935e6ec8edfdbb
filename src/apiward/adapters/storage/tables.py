"""The relational schema, shared by SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every back-end (SQLite keeps no time zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = 32

orgs = Table(
    "orgs",
    metadata,
    Column("id", String(ID), primary_key=True),
    # Not unique: projects of different accounts may share a name.
    Column("name", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("rate_tier", String(64)),
    # The organisation's own key hygiene policy (core/hygiene.py); NULL: the operator's.
    Column("key_hygiene", JSON(none_as_null=True)),
    # Owners and admins sign in to the dashboard with a second factor (services/mfa.py).
    Column("require_mfa", Boolean, nullable=False, server_default=false()),
)

environments = Table(
    "environments",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("org_id", String(ID), ForeignKey("orgs.id"), nullable=False),
    Column("name", String(32), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("org_id", "name", name="uq_environments_org_name"),
)

spaces = Table(
    "spaces",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("org_id", String(ID), ForeignKey("orgs.id"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("is_default", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("archived_at", UTCDateTime()),
    Column("archived_by", String(ID)),
)

users = Table(
    "users",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("org_id", String(ID), ForeignKey("orgs.id"), nullable=False),
    Column("email", String(254), nullable=False),
    Column("name", String(200), nullable=False),
    Column("password_hash", Text),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("disabled_at", UTCDateTime()),
    Column("account_id", String(ID), ForeignKey("accounts.id"), index=True),
    UniqueConstraint("org_id", "email", name="uq_users_org_email"),
)

# People who sign in to the dashboard (the developer portal); one user row per project.
accounts = Table(
    "accounts",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("email", String(254), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("confirmed_at", UTCDateTime()),
    Column("disabled_at", UTCDateTime()),
    Column("password_changed_at", UTCDateTime()),
)

# Links sent by email (confirmation, password reset, invitation): SHA-256 of the token.
email_links = Table(
    "email_links",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("purpose", String(16), nullable=False),
    Column("digest", String(64), nullable=False, unique=True),
    Column("email", String(254), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False, index=True),
    Column("account_id", String(ID), ForeignKey("accounts.id")),
    Column("org_id", String(ID), ForeignKey("orgs.id")),
    Column("role", String(40)),
    Column("created_by", String(ID)),
    Column("used_at", UTCDateTime()),
    Column("revoked_at", UTCDateTime()),
    Index("ix_email_links_org_purpose", "org_id", "purpose"),
)

roles = Table(
    "roles",
    metadata,
    Column("org_id", String(ID), ForeignKey("orgs.id"), primary_key=True),
    Column("name", String(40), primary_key=True),
    Column("scopes", JSON, nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", UTCDateTime(), nullable=False),
)

memberships = Table(
    "memberships",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("org_id", String(ID), ForeignKey("orgs.id"), nullable=False),
    Column("user_id", String(ID), ForeignKey("users.id"), nullable=False),
    # An empty string, not NULL, means "every space": NULLs never collide in a
    # unique constraint.
    Column("space_id", String(ID), nullable=False, default=""),
    Column("role", String(40), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("user_id", "space_id", name="uq_memberships_user_space"),
    Index("ix_memberships_org_role", "org_id", "role"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("org_id", String(ID), ForeignKey("orgs.id"), nullable=False),
    Column("environment", String(32), nullable=False),
    Column("name", String(200), nullable=False),
    Column("digest", String(64), nullable=False, unique=True),
    Column("prefix", String(64), nullable=False),
    Column("last4", String(4), nullable=False),
    Column("scopes", JSON, nullable=False),
    Column("user_id", String(ID), ForeignKey("users.id")),
    Column("created_by", String(ID), ForeignKey("users.id"), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime()),
    Column("ip_allow", JSON, nullable=False),
    Column("space_allow", JSON, nullable=False),
    Column("disabled_at", UTCDateTime()),
    Column("revoked_at", UTCDateTime()),
    Column("last_used_at", UTCDateTime()),
    Column("last_used_ip", String(64)),
    Column("rolled_to", String(ID)),
    Column("api_version", String(64)),
    Column("rate_limits", JSON),
    Column("credits_remaining", BigInteger),
    Column("refill_amount", BigInteger),
    Column("refill_interval", String(16)),
    Column("refill_day", Integer),
    Column("credits_refilled", Integer),
    # The expiry and allow-lists as the operator set them (NULL: not the operator's).
    Column("operator_expires_at", UTCDateTime()),
    Column("operator_ip_allow", JSON(none_as_null=True)),
    Column("operator_space_allow", JSON(none_as_null=True)),
    # Who the key belongs to in the vendor's systems (apiward.core.owners).
    Column("external_id", String(255)),
    Column("meta", JSON(none_as_null=True)),
    Index("ix_api_keys_org_env_created", "org_id", "environment", "created_at"),
    Index("ix_api_keys_org_external_id", "org_id", "external_id"),
)

key_notices = Table(
    "key_notices",
    metadata,
    # One row per hygiene notice sent (core/hygiene.py): the unique constraint is what
    # makes a reminder go out once, whichever process tries first.
    Column("key_id", String(ID), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("mark", String(128), nullable=False),
    Column("org_id", String(ID), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("key_id", "kind", "mark"),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("org_id", String(ID)),
    Column("environment", String(32)),
    Column("type", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("actor_user_id", String(ID)),
    Column("actor_credential_id", String(ID)),
    Column("target_type", String(32)),
    Column("target_id", String(64)),
    Column("space_id", String(ID)),
    Column("ip", String(64)),
    Column("user_agent", String(512)),
    Column("request_id", String(128)),
    Column("data", JSON, nullable=False),
    Index("ix_audit_events_org_created", "org_id", "created_at"),
)

invalidations = Table(
    "invalidations",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("kind", String(16), nullable=False),
    Column("target", String(128), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False, index=True),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("alg", String(16), nullable=False),
    Column("jwk", JSON, nullable=False),
    Column("private_sealed", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("retired_at", UTCDateTime()),
    Column("expires_at", UTCDateTime()),
)

oauth_clients = Table(
    "oauth_clients",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("org_id", String(ID), ForeignKey("orgs.id"), nullable=False),
    Column("environment", String(32), nullable=False),
    Column("name", String(200), nullable=False),
    Column("secret_digest", String(64), nullable=False, unique=True),
    Column("secret_last4", String(4), nullable=False),
    Column("scopes", JSON, nullable=False),
    Column("user_id", String(ID), ForeignKey("users.id")),
    Column("created_by", String(ID), ForeignKey("users.id"), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime()),
    Column("revoked_at", UTCDateTime()),
    Column("last_used_at", UTCDateTime()),
    Column("last_used_ip", String(64)),
    Column("external_id", String(255)),
    Column("meta", JSON(none_as_null=True)),
    Index("ix_oauth_clients_org_env_created", "org_id", "environment", "created_at"),
    Index("ix_oauth_clients_org_external_id", "org_id", "external_id"),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("family_id", String(ID), nullable=False, index=True),
    Column("digest", String(64), nullable=False, unique=True),
    Column("org_id", String(ID), ForeignKey("orgs.id"), nullable=False),
    Column("environment", String(32), nullable=False),
    Column("user_id", String(ID), ForeignKey("users.id"), nullable=False, index=True),
    Column("client_id", String(ID)),
    Column("scope", Text, nullable=False),
    Column("space_id", String(ID)),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("used_at", UTCDateTime()),
    Column("successor_id", String(ID)),
    Column("answer_sealed", Text),
    Column("revoked_at", UTCDateTime()),
)

revocations = Table(
    "revocations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("value", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False, index=True),
    UniqueConstraint("kind", "value", name="uq_revocations_kind_value"),
)

dashboard_sessions = Table(
    "dashboard_sessions",
    metadata,
    Column("id", String(ID), primary_key=True),
    # SHA-256 of the cookie value: a copy of the table signs nobody in.
    Column("digest", String(64), nullable=False, unique=True),
    # The project being looked at; None for an account that has none yet.
    Column("org_id", String(ID), ForeignKey("orgs.id")),
    Column("user_id", String(ID), ForeignKey("users.id"), index=True),
    Column("account_id", String(ID), ForeignKey("accounts.id"), index=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False, index=True),
    Column("revoked_at", UTCDateTime()),
    Column("ip", String(64)),
    Column("user_agent", String(512)),
)

# Second factors for dashboard sign-in (services/mfa.py). The owner is a portal
# account or a user with a password of its own (ids carry their kind's prefix).
mfa_factors = Table(
    "mfa_factors",
    metadata,
    Column("owner_id", String(ID), primary_key=True),
    # AES-GCM with the deployment's secret: a copy of the table computes no code.
    Column("secret_sealed", String(255), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("enabled_at", UTCDateTime()),
    Column("last_step", BigInteger),
)

# One-time recovery codes, as their SHA-256: a copy of the table signs nobody in.
mfa_recovery_codes = Table(
    "mfa_recovery_codes",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("owner_id", String(ID), nullable=False, index=True),
    Column("used_at", UTCDateTime()),
)

# Every audit event is also queued here, in the same transaction, until the webhook
# dispatcher fans it out to the endpoints subscribed to it (a transactional outbox).
webhook_outbox = Table(
    "webhook_outbox",
    metadata,
    Column("event_id", String(ID), primary_key=True),
    Column("created_at", UTCDateTime(), nullable=False, index=True),
)

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("org_id", String(ID), ForeignKey("orgs.id"), nullable=False, index=True),
    Column("environment", String(32), nullable=False),
    Column("url", String(2048), nullable=False),
    Column("description", String(500), nullable=False, default=""),
    Column("events", JSON, nullable=False),
    # AES-GCM sealed (core/crypto.py): signing needs the secret itself, not a hash.
    Column("secret_sealed", Text, nullable=False),
    Column("created_by", String(ID), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("disabled_at", UTCDateTime()),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column(
        "endpoint_id", String(ID), ForeignKey("webhook_endpoints.id"), nullable=False, index=True
    ),
    Column("org_id", String(ID), nullable=False),
    Column("event_id", String(ID), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("next_attempt_at", UTCDateTime()),
    Column("last_attempt_at", UTCDateTime()),
    Column("response_status", Integer),
    Column("error", String(500)),
    Column("completed_at", UTCDateTime()),
    Column("locked_until", UTCDateTime()),
    Column("attempt_log", JSON, nullable=False),
    UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_deliveries_endpoint_event"),
    Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),
)

# Retention deletes audit events by age across every organisation.
Index("ix_audit_events_created_at", audit_events.c.created_at)


key_formats = Table(
    "key_formats",
    metadata,
    # Every format (core.keys.KeyFormat.spec) this deployment has issued keys in: the
    # earlier ones keep working after a change (docs/operations.md).
    Column("spec", Text, primary_key=True),
    Column("first_seen_at", UTCDateTime(), nullable=False),
    Column("last_seen_at", UTCDateTime(), nullable=False),
)


verification_counts = Table(
    "verification_counts",
    metadata,
    # One row per granularity, bucket and kind of decision; "" stands for "none".
    Column("granularity", String(8), nullable=False),
    Column("bucket", BigInteger, nullable=False),
    Column("org_id", String(ID), nullable=False),
    Column("environment", String(32), nullable=False),
    Column("key_id", String(ID), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("route", String(256), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("count", BigInteger, nullable=False),
    PrimaryKeyConstraint(
        "org_id",
        "environment",
        "granularity",
        "bucket",
        "key_id",
        "client_id",
        "route",
        "outcome",
        name="pk_verification_counts",
    ),
    Index("ix_verification_counts_granularity_bucket", "granularity", "bucket"),
)

scope_uses = Table(
    "scope_uses",
    metadata,
    # One row per credential (key or OAuth client), UTC day and scope its allowed
    # requests used: what ``GET /v1/keys/{id}/scope-usage`` compares with its scopes.
    Column("org_id", String(ID), nullable=False),
    Column("credential_id", String(64), nullable=False),
    Column("day", Integer, nullable=False),  # days since 1970-01-01, UTC
    Column("scope", String(160), nullable=False),
    Column("environment", String(32), nullable=False),
    Column("count", BigInteger, nullable=False),
    PrimaryKeyConstraint("org_id", "credential_id", "day", "scope", name="pk_scope_uses"),
    Index("ix_scope_uses_day", "day"),
)

address_uses = Table(
    "address_uses",
    metadata,
    # One row per credential, UTC day and network (/24 of IPv4, /48 of IPv6) its allowed
    # requests came from, up to core.addresses.EXACT_CAP a day per process: never a full
    # address (personal data). What GET /v1/keys/{id}/addresses and /impact read.
    Column("org_id", String(ID), nullable=False),
    Column("credential_id", String(64), nullable=False),
    Column("day", Integer, nullable=False),
    Column("prefix", String(48), nullable=False),
    Column("environment", String(32), nullable=False),
    Column("country", String(2)),
    Column("count", BigInteger, nullable=False),
    PrimaryKeyConstraint("org_id", "credential_id", "day", "prefix", name="pk_address_uses"),
    Index("ix_address_uses_day", "day"),
)

address_overflows = Table(
    "address_overflows",
    metadata,
    # The requests of a credential's day from networks beyond the exact ones: their count,
    # a HyperLogLog of their prefixes (merged by register maximum) and their countries.
    Column("org_id", String(ID), nullable=False),
    Column("credential_id", String(64), nullable=False),
    Column("day", Integer, nullable=False),
    Column("environment", String(32), nullable=False),
    Column("requests", BigInteger, nullable=False),
    Column("registers", LargeBinary(1024), nullable=False),
    Column("countries", String(1024), nullable=False),
    PrimaryKeyConstraint("org_id", "credential_id", "day", name="pk_address_overflows"),
    Index("ix_address_overflows_day", "day"),
)
