"""Settings: environment variables ``APIWARD_*``, or a TOML file (``APIWARD_CONFIG_FILE``)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from email.utils import formatdate
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from apiward.core.errors import InvalidInput, known_reasons
from apiward.core.keys import ALPHABETS, KeyFormat
from apiward.core.limits import MAX_PERIOD, Policy, parse_rate
from apiward.core.owners import MAX_META_PROPERTIES, forwarded_header
from apiward.core.passwords import PasswordPolicy
from apiward.core.times import LONGEST
from apiward.services.limiting import RatePlan, RouteRule

LONGEST_DAYS = LONGEST.days
"""The longest retention or rotation period a setting may name (``times.LONGEST``)."""


class ApiVersion(BaseModel):
    """A date-named API version (``2024-01-31``, ``caph.2025-06-20``)."""

    id: str
    name: str = ""
    date: dt.date
    deprecated: bool = False
    deprecated_on: dt.date | None = None
    sunset: dt.date | None = None
    openapi_url: str | None = None


class LimitSetting(BaseModel):
    """One rate limit: ``{"name": "org-hourly", "rate": "1000/hour", "key": "org"}``."""

    name: str
    rate: str
    key: Literal["org", "credential", "ip", "user", "route"] = "credential"
    cost: int = 1
    algorithm: Literal["gcra", "fixed_window", "sliding_window"] = "gcra"
    mode: Literal["enforce", "report"] = "enforce"
    """``report``: only counted as what it would refuse (``WOULD_REFUSE``), never enforced."""

    def policy(self) -> Policy:
        return Policy.parse(
            self.name,
            self.rate,
            key=self.key,
            cost=self.cost,
            algorithm=self.algorithm,
            mode=self.mode,
        )

    @model_validator(mode="after")
    def _valid(self) -> LimitSetting:
        self.policy()
        return self


class RouteLimitSetting(BaseModel):
    """Limits of a route or route group (``/v1/events``, ``/v1/keys*``)."""

    route: str
    methods: list[str] = Field(default_factory=list)
    exempt: bool = False
    limits: list[LimitSetting] = Field(default_factory=list)
    replace: bool = False
    cost: int | None = None

    def rule(self) -> RouteRule:
        return RouteRule(
            self.route,
            frozenset(self.methods),
            self.exempt,
            tuple(limit.policy() for limit in self.limits),
            self.replace,
            self.cost,
        )

    @model_validator(mode="after")
    def _valid(self) -> RouteLimitSetting:
        self.rule()
        return self


class TierSetting(BaseModel):
    """A plan tier: its own limits and route rules, chosen per organisation."""

    limits: list[LimitSetting] = Field(default_factory=list)
    routes: list[RouteLimitSetting] = Field(default_factory=list)

    def plan(self) -> RatePlan:
        return RatePlan(
            tuple(limit.policy() for limit in self.limits),
            tuple(route.rule() for route in self.routes),
        )


def _default_versions() -> list[ApiVersion]:
    return [ApiVersion(id="2026-11-01", name="first", date=dt.date(2026, 11, 1))]


class ConfigError(ValueError):
    """The configuration cannot be used: one line per problem, each naming the setting,
    where its value came from, the value and what is expected."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="APIWARD_", extra="ignore")

    def __init__(self, **values: Any) -> None:
        problems: list[str] = []
        try:
            super().__init__(**values)
        except ValidationError as exc:
            problems = _problems(exc, values)
        problems[:0] = _unknown_file_keys()
        if problems:
            raise ConfigError(problems)

    # where things live
    database_url: str = "sqlite+aiosqlite:///./apiward.db"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    migrate_on_start: bool = True
    database_timeout_seconds: float = Field(
        5.0,
        gt=0,
        le=300,
        description="PostgreSQL: the longest a request waits to connect, for a pooled "
        "connection, or for one statement's answer; past it the request is a 503 (a hung "
        "database costs each request at most this). Migrations have no such bound.",
    )

    # presentation
    platform_name: str = "apiward"
    tagline: str = "Authentication for public APIs"
    error_style: Literal["default", "nested", "detail", "problem"] = "default"
    token_error_style: Literal["oauth", "deployment"] = Field(
        "oauth",
        description="Errors of the token endpoints: RFC 6749's {error, error_description}, or "
        "the envelope of APIWARD_ERROR_STYLE (a flat shape, say).",
    )
    error_fields: (
        list[Literal["status_code", "code", "reason", "message", "request_id", "required_scope"]]
        | None
    ) = Field(
        None,
        description="Keep only these fields in error bodies (default: all): a contract "
        'that names its fields exactly, e.g. ["message", "code"].',
    )
    error_messages: dict[str, str] = Field(
        default_factory=dict,
        description="Messages by error reason (INVALID_KEY, RATE_LIMITED, ...), replacing "
        "apiward's own; $message, $scope and $retry_after are filled in.",
    )
    space_header: str = "Apiward-Space-Id"
    require_space_header: bool = Field(
        False,
        description="Refuse (400) a request without the space header instead of using the "
        "default space (docs/compatibility.md).",
    )
    version_header: str = "Apiward-Version"
    api_versions: list[ApiVersion] = Field(default_factory=_default_versions)
    docs_enabled: bool = True

    # key format
    key_prefix: str = "aw"
    key_env_tags: dict[str, str] = Field(default_factory=lambda: {"live": "live", "test": "test"})
    key_random_length: int = Field(32, ge=16, le=128)
    key_alphabet: str = "base62"

    # tokens (RFC 9068 access tokens, rotating refresh tokens)
    secret_key: SecretStr | None = Field(
        None, description="Seals signing keys at rest; the same on every machine."
    )
    issuer: str | None = None
    audience: str | None = None
    token_algorithm: Literal["ES256", "EdDSA", "RS256"] = "ES256"
    access_token_ttl_seconds: int = Field(1800, ge=30, le=7 * 86400)
    refresh_token_ttl_seconds: int = Field(86400, ge=60, le=365 * 86400)
    refresh_grace_seconds: float = Field(10.0, ge=0, le=300)
    refresh_retry_seconds: float = Field(
        300.0,
        ge=0,
        le=86_400,
        description="After the grace window, for this long after its first use, a used "
        "refresh token whose successor was never used rotates the family again (a refresh "
        "whose answer was lost), and that successor becomes a tripwire that revokes the "
        "family if anyone presents it; 0: a used token is reuse at once after the grace "
        "window.",
    )
    signing_key_rotation_days: float = Field(0, ge=0, le=LONGEST_DAYS)
    login_max_failures: int = Field(5, ge=1)
    login_ip_max_failures: int = Field(50, ge=1)
    login_failure_window_seconds: int = Field(900, ge=1, le=MAX_PERIOD)

    # rate limits (policies for every org; tiers an org can be moved to)
    redis_url: str | None = None
    redis_cluster: bool = Field(
        False,
        description="APIWARD_REDIS_URL names one node of a Redis Cluster (redis:// or "
        "rediss://, database 0); the others are discovered. Limits stay exact: a "
        "decision whose keys span hash slots reserves slot by slot and gives back what "
        "a refusal left reserved (docs/architecture.md).",
    )
    rate_limit_failure_mode: Literal["open", "closed"] = "open"
    redis_timeout_seconds: float = Field(
        0.5,
        gt=0,
        le=30,
        description="The longest a request waits on Redis (a pooled connection, the "
        "script, a retry); past it Redis is handled as down, and while it stays down no "
        "request waits on it (adapters/limiter/fallback.py).",
    )
    rate_limit_max_keys: int = Field(
        1_000_000,
        ge=100,
        description="Buckets the in-process limiter keeps (per process); past it, idle "
        "ones go first, then live ones fairly by owner (adapters/limiter/memory.py).",
    )
    rate_limits: list[LimitSetting] = Field(default_factory=list)
    rate_limit_routes: list[RouteLimitSetting] = Field(default_factory=list)
    rate_limit_tiers: dict[str, TierSetting] = Field(default_factory=dict)
    auth_failure_limit: str = Field("100/minute", description="Failed authentications per IP.")

    # verification cache and cross-process invalidation
    cache_max_entries: int = Field(100_000, ge=1)
    cache_max_unknown: int = Field(
        10_000,
        ge=1,
        le=10_000_000,
        description="Credentials held as unknown (a separate area: they never evict "
        "verified ones).",
    )
    cache_ttl_seconds: float = Field(60.0, gt=0)
    cache_serve_stale_seconds: float = Field(
        600.0,
        ge=0,
        le=86_400,
        description="While the database is unreachable, a credential verified before the "
        "outage keeps working this long past its cache TTL (0: 503 once the TTL passes). "
        "A revocation made during the outage cannot be seen either way.",
    )
    invalidation_poll_seconds: float = Field(
        0.5,
        gt=0,
        description="How often each process reads the invalidation log, without Redis or "
        "while its subscription to pushed invalidations is lost.",
    )
    invalidation_backstop_seconds: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="With Redis, how often each process reads the invalidation log while "
        "invalidations are pushed to it (the backstop for a message lost in transit).",
    )
    last_used_flush_seconds: float = Field(10.0, gt=0)

    # verification analytics
    analytics_flush_seconds: float = Field(
        10.0,
        gt=0,
        le=60,
        description="How often counted decisions are written (a crash loses at most this much).",
    )
    analytics_minute_retention_hours: int = Field(48, ge=1, le=LONGEST_DAYS * 24)
    analytics_hour_retention_days: int = Field(90, ge=1, le=LONGEST_DAYS)
    analytics_day_retention_days: int = Field(730, ge=1, le=LONGEST_DAYS)

    # requests
    max_body_bytes: int = Field(1_048_576, ge=1024)
    max_header_bytes: int = Field(
        32_768,
        ge=1024,
        description="apiward serve: the most a request line and its headers may take (431 beyond).",
    )
    max_headers: int = Field(
        100, ge=10, description="apiward serve: the most header fields a request may have."
    )
    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="apiward serve: the time a request line and its headers have to arrive, "
        "from their first byte (408 and the connection closed after), and the longest a "
        "request body may pause (the connection closed after).",
    )
    max_connections: int | None = Field(
        None,
        ge=16,
        description="apiward serve: the most connections a process holds open; beyond, the "
        "one whose last byte is oldest among those waiting for a request head or stalled in "
        "a body is closed (else the new one gets a 503). Default: the process's open-file "
        "limit less 128 for the database, Redis and files (at most 65,536).",
    )
    trusted_proxies: list[str] = Field(default_factory=list)
    country_header: str | None = Field(
        None,
        description="A header with the client's country that the CDN or load balancer in "
        "front sets (CF-IPCountry, CloudFront-Viewer-Country); believed from trusted "
        "proxies only.",
    )
    geoip_database: str | None = Field(
        None, description="A MaxMind DB file (GeoLite2-Country) to find countries in."
    )
    forward_auth_proxy: Literal["nginx", "traefik", "envoy"] = Field(
        "nginx",
        description="The proxy asking /v1/auth/check: the original request's path and "
        "method are read from the headers it sets (nginx: X-Original-URI and "
        "X-Original-Method, Traefik: X-Forwarded-Uri and X-Forwarded-Method) and no other, "
        "since the client may send the others. Envoy sets none: its ext_authz asks at "
        "/v1/auth/check followed by the original path (path_prefix), with the original "
        "method, and that route exists only under envoy (docs/forward-auth.md).",
    )

    forward_meta: list[str] = Field(
        default_factory=list,
        description="The meta fields of a key or client that forward auth sends upstream, "
        "one header each: plan in X-Apiward-Meta-Plan, billing_tier in "
        "X-Apiward-Meta-Billing-Tier (the value percent-encoded, empty when the credential "
        "has none; docs/forward-auth.md).",
    )

    @field_validator("forward_meta")
    @classmethod
    def _forward_meta(cls, value: list[str]) -> list[str]:
        if len(value) > MAX_META_PROPERTIES:
            raise ValueError(f"at most {MAX_META_PROPERTIES} meta fields are forwarded")
        headers: dict[str, str] = {}
        for name in value:
            header = forwarded_header(name).lower()
            if header in headers:
                raise ValueError(
                    f"meta fields {headers[header]!r} and {name!r} would both be sent in "
                    f"{forwarded_header(name)}"
                )
            headers[header] = name
        return value

    @cached_property
    def forward_meta_headers(self) -> tuple[tuple[str, str], ...]:
        """Each forwarded meta field and the header it is sent in (``forward_meta``)."""
        return tuple((name, forwarded_header(name)) for name in self.forward_meta)

    # passwords (RFC 9106, second recommended option)
    argon2_time_cost: int = Field(3, ge=1)
    argon2_memory_kib: int = Field(65536, ge=8)
    argon2_parallelism: int = Field(4, ge=1)

    # logs
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"
    access_log: Literal["all", "errors", "sampled", "off"] = Field(
        "errors",
        description="Which requests get an access log line: all; errors (answers of 400 "
        "and up, and requests that failed); sampled (errors, and a share of the others: "
        "access_log_sample); off. Metrics count every request whatever this says.",
    )
    access_log_sample: float = Field(
        0.01, ge=0.0, le=1.0, description="The share of successful requests logged (sampled)."
    )

    # traces (OpenTelemetry, the `otel` extra; docs/operations.md, "Tracing")
    tracing: bool | None = Field(
        None,
        validate_default=True,
        description="Trace every request. Unset: on when an exporter is configured by the "
        "standard variables (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT, "
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT); OTEL_SDK_DISABLED=true turns it off whatever "
        "this says.",
    )

    @field_validator("tracing")
    @classmethod
    def _tracing(cls, value: bool | None) -> bool | None:
        problem = tracing_problem(tracing_reason(value, os.environ), os.environ)
        if problem:
            raise ValueError(problem)
        return value

    # the dashboard (/dashboard)
    dashboard_enabled: bool = True
    session_ttl_seconds: int = Field(8 * 3600, ge=60, le=30 * 86400)
    session_cookie_secure: bool | None = Field(
        None,
        description="Send the session cookie over HTTPS only. Unset: yes, except for plain "
        "HTTP to a loopback address (http://127.0.0.1:8000 in development).",
    )

    # the developer portal: sign-up, email confirmation, projects, invitations, resets
    public_url: str | None = Field(
        None,
        description="Where people reach apiward (https://auth.example.com): links in emails "
        "start with it, never with a request's Host header. Unset: http://HOST:PORT.",
    )
    signup_enabled: bool = Field(
        True, description="Anyone may open an account; false: by invitation only."
    )
    signup_email_domains: list[str] = Field(
        default_factory=list,
        description="Sign-up is open to these email domains only (example.com); empty: any.",
    )
    confirm_link_ttl_seconds: int = Field(86400, ge=300, le=30 * 86400)
    reset_link_ttl_seconds: int = Field(3600, ge=300, le=86400)
    invite_link_ttl_seconds: int = Field(7 * 86400, ge=3600, le=90 * 86400)
    projects_per_account: int = Field(20, ge=1, le=10_000)
    portal_email_limit: str = Field(
        "5/hour", description="Sign-ups, resets and resent links per email address."
    )
    portal_ip_limit: str = Field("30/hour", description="The same, per client IP.")

    # outgoing email; with no SMTP host, emails are written to the log instead
    smtp_host: str | None = None
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        "starttls", description="starttls (port 587), tls (implicit TLS, port 465) or none."
    )
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout_seconds: float = Field(10.0, gt=0, le=120)
    mail_from: str = Field(
        "apiward <no-reply@localhost>", description="The sender of every email apiward sends."
    )

    @field_validator("signup_email_domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        cleaned = [d.strip().lower().lstrip("@") for d in value if d.strip()]
        for domain in cleaned:
            if "." not in domain or "@" in domain or " " in domain:
                raise ValueError(f"{domain!r} is not an email domain (example.com)")
        return cleaned

    @field_validator("portal_email_limit", "portal_ip_limit")
    @classmethod
    def _portal_limit(cls, value: str) -> str:
        parse_rate(value)
        return value

    @field_validator("error_messages")
    @classmethod
    def _error_messages(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - known_reasons())
        if unknown:
            raise ValueError(
                f"unknown error reasons {unknown}; use any of: {', '.join(sorted(known_reasons()))}"
            )
        too_long = [reason for reason, text in value.items() if not 0 < len(text) <= 500]
        if too_long:
            raise ValueError(f"messages must be 1 to 500 characters: {too_long}")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value:
            from apiward.adapters import redis_url

            redis_url.check(value)  # its messages never repeat the URL: it may hold a password
        return value or None

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.rstrip("/")
        if not value.startswith(("http://", "https://")) or "?" in value or "#" in value:
            raise ValueError(f"{value!r}: an http:// or https:// address, without query")
        return value

    @property
    def base_url(self) -> str:
        """Where people and clients reach apiward: links in emails, the OAuth metadata's
        endpoints, the default issuer. A wildcard bind address is no address to reach:
        the loopback one stands in (set APIWARD_PUBLIC_URL for anything else)."""
        if self.public_url:
            return self.public_url
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    # keys brought from another system by `apiward keys import`
    imported_key_prefixes: list[str] = Field(
        default_factory=list,
        description="A key starting with one of these (e.g. sk_live_) skips the offline "
        "format and checksum check and is looked up by its digest alone.",
    )

    @model_validator(mode="after")
    def _redis_cluster_ok(self) -> Settings:
        if not self.redis_cluster:
            return self
        if not self.redis_url:
            raise ValueError(
                "redis_cluster is set but redis_url is not: set APIWARD_REDIS_URL to one "
                "node of the cluster, e.g. redis://10.0.0.5:6379"
            )
        from urllib.parse import urlsplit

        parts = urlsplit(self.redis_url)
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ValueError(
                "a Redis Cluster is reached over TCP: APIWARD_REDIS_URL must be "
                "redis://host:port or rediss://host:port (not a unix socket)"
            )
        if parts.path.strip("/") not in ("", "0"):
            raise ValueError(
                "a Redis Cluster has only database 0: drop the database number from "
                "APIWARD_REDIS_URL (redis://host:port)"
            )
        return self

    @model_validator(mode="after")
    def _imported_prefixes_ok(self) -> Settings:
        own = f"{self.key_prefix}_"
        for prefix in self.imported_key_prefixes:
            if not (0 < len(prefix) <= 64 and prefix.isascii() and prefix.isprintable()):
                raise ValueError(f"imported key prefix {prefix!r}: 1 to 64 printable ASCII")
            if " " in prefix:
                raise ValueError(f"imported key prefix {prefix!r} contains a space")
            if own.startswith(prefix) or prefix.startswith(own):
                raise ValueError(
                    f"imported key prefix {prefix!r} would also match this instance's own "
                    f"keys ({own}...), which must keep their checksum check"
                )
        return self

    # audit log, leaked-key reports, webhooks, metrics
    audit_retention_days: int = Field(
        365,
        ge=0,
        le=LONGEST_DAYS,
        description="Audit events older than this are deleted; 0 keeps them all.",
    )
    leak_report_public_keys: dict[str, str] = Field(
        default_factory=dict,
        description="GitHub secret scanning's public keys (key_identifier -> PEM), from "
        "https://api.github.com/meta/public_keys/secret_scanning; empty refuses reports.",
    )
    credits_low_threshold: int = Field(
        100, ge=0, description="A key's credits falling below this send credits.low; 0: never."
    )
    key_unused_disable_days: int | None = Field(
        None,
        ge=1,
        le=LONGEST_DAYS,
        description="Keys not used for this many days (since their creation when never "
        "used) are disabled, with a key.disabled_unused event and email; unset: never.",
    )
    key_expiry_reminder_days: list[int] = Field(
        default_factory=lambda: [30, 7, 1],
        description="Days before a key's expiry at which key.expiring is sent (and its "
        "creator emailed); empty: no reminders.",
    )
    key_credit_thresholds: list[int] = Field(
        default_factory=lambda: [50, 80, 100],
        description="Percentages of a refilling key's credits spent at which "
        "key.credits_low is sent, once per refill period; empty: none.",
    )
    key_shared_networks: int | None = Field(
        None,
        ge=2,
        le=1_000_000,
        description="A key's requests of one UTC day from this many networks (/24 of "
        "IPv4, /48 of IPv6) send key.anomaly, once a day; unset: never.",
    )
    key_shared_countries: int | None = Field(
        None,
        ge=2,
        le=300,
        description="A key's requests of one UTC day from this many countries send "
        "key.anomaly (needs a country source); unset: never.",
    )
    key_shared_disable: bool = Field(
        False, description="key.anomaly also disables the key (audited)."
    )
    key_hygiene_seconds: float = Field(
        300.0, gt=0, le=86_400, description="How often each process looks for these notices."
    )
    webhook_poll_seconds: float = Field(1.0, gt=0, le=60)
    webhook_max_attempts: int = Field(8, ge=1, le=30)
    webhook_retry_base_seconds: float = Field(30.0, gt=0)
    webhook_timeout_seconds: float = Field(10.0, gt=0, le=60)
    webhook_retention_days: int = Field(30, ge=1, le=LONGEST_DAYS)
    webhook_allowed_networks: list[str] = Field(
        default_factory=list,
        description="Networks webhook deliveries may reach although not public (CIDR, e.g. "
        "10.20.0.0/16 or 127.0.0.0/8 for a receiver on this machine); empty: public only.",
    )
    metrics_token: SecretStr | None = Field(
        None, description="When set, GET /metrics needs Authorization: Bearer <token>."
    )
    api_scopes: dict[str, str] = Field(
        default_factory=dict,
        description="The scopes of the API apiward protects, each with what it allows "
        '(TOML: [api_scopes] "invoices:read" = "Read invoices"; JSON in the variable). The '
        "dashboard offers them first and checks scopes typed into its forms against them.",
    )
    api_scope_groups: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Groups of APIWARD_API_SCOPES, each a name and its scopes (TOML: "
        '[api_scope_groups] Billing = ["invoices:read", "invoices:write"]): the dashboard '
        "shows the API's scopes under them, in this order.",
    )

    def connections_bound(self) -> int:
        """``max_connections``, or what the process's open-file limit leaves room for."""
        if self.max_connections is not None:
            return self.max_connections
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return 65_536
        return max(16, min(soft - 128, 65_536))

    @field_validator("key_expiry_reminder_days")
    @classmethod
    def _reminder_days(cls, value: list[int]) -> list[int]:
        if any(not 1 <= d <= LONGEST_DAYS for d in value):
            raise ValueError(f"reminder days are whole days before expiry, 1 to {LONGEST_DAYS}")
        return sorted(set(value), reverse=True)

    @field_validator("key_credit_thresholds")
    @classmethod
    def _credit_thresholds(cls, value: list[int]) -> list[int]:
        if any(not 1 <= p <= 100 for p in value):
            raise ValueError("credit thresholds are percentages spent, 1 to 100")
        return sorted(set(value))

    @field_validator("api_scopes")
    @classmethod
    def _api_scopes(cls, value: dict[str, str]) -> dict[str, str]:
        from apiward.core.errors import InvalidInput
        from apiward.core.scopes import parse

        for scope, description in value.items():
            try:
                resource, action = parse(scope)
            except InvalidInput as exc:
                raise ValueError(exc.message) from None
            if "*" in (resource, action):
                raise ValueError(f"{scope!r}: list the API's scopes themselves, not patterns")
            if not 1 <= len(description.strip()) <= 200 or not description.isprintable():
                raise ValueError(f"{scope!r}: describe it in 1 to 200 printable characters")
        return value

    @model_validator(mode="after")
    def _scope_groups(self) -> Settings:
        for group, scopes in self.api_scope_groups.items():
            if not 1 <= len(group.strip()) <= 100 or not group.isprintable():
                raise ValueError(
                    f"api_scope_groups: name {group!r} in 1 to 100 printable characters"
                )
            unknown = [s for s in scopes if s not in self.api_scopes]
            if unknown:
                raise ValueError(
                    f"api_scope_groups: {group!r} names {unknown[0]!r}, which api_scopes does not"
                )
        return self

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        from apiward.core.destinations import Destinations

        Destinations.parse(value)  # a bad CIDR fails at start
        return value

    @field_validator("leak_report_public_keys")
    @classmethod
    def _leak_keys(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:  # the default: nothing to check, and the leaks module stays unloaded
            return value
        from apiward.services.leaks import load_public_keys

        load_public_keys(value)  # a wrong key fails at start, not at the first report
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            env_settings,
            _SecretFiles(settings_cls),
        ]
        config_file = os.environ.get("APIWARD_CONFIG_FILE")
        if config_file:
            _check_file(config_file)
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @field_validator("key_alphabet")
    @classmethod
    def _alphabet(cls, value: str) -> str:
        return ALPHABETS.get(value, value)

    @field_validator("api_versions")
    @classmethod
    def _versions(cls, value: list[ApiVersion]) -> list[ApiVersion]:
        if not value:
            raise ValueError("at least one API version is needed")
        ids = [v.id for v in value]
        if len(set(ids)) != len(ids):
            raise ValueError("API version ids must be distinct")
        return sorted(value, key=lambda v: v.date)

    @model_validator(mode="after")
    def _key_format_ok(self) -> Settings:
        self.key_format  # noqa: B018 - raises ValueError on a bad combination
        return self

    @cached_property
    def key_format(self) -> KeyFormat:
        return KeyFormat(
            prefix=self.key_prefix,
            env_tags=tuple(self.key_env_tags.items()),
            random_length=self.key_random_length,
            alphabet=self.key_alphabet,
        )

    def rate_plans(self) -> dict[str | None, RatePlan]:
        """The default plan (key None) and one per tier."""
        plans: dict[str | None, RatePlan] = {
            None: TierSetting(limits=self.rate_limits, routes=self.rate_limit_routes).plan()
        }
        for name, tier in self.rate_limit_tiers.items():
            # A tier changes the default plan: its limits replace those of the same name
            # (others are kept), and its route rules are matched before the default ones.
            own = {limit.name for limit in tier.limits}
            plans[name] = TierSetting(
                limits=[*(x for x in self.rate_limits if x.name not in own), *tier.limits],
                routes=[*tier.routes, *self.rate_limit_routes],
            ).plan()
        return plans

    @field_validator("auth_failure_limit")
    @classmethod
    def _auth_limit(cls, value: str) -> str:
        parse_rate(value)
        return value

    @property
    def analytics_retention(self) -> dict[str, dt.timedelta]:
        return {
            "minute": dt.timedelta(hours=self.analytics_minute_retention_hours),
            "hour": dt.timedelta(days=self.analytics_hour_retention_days),
            "day": dt.timedelta(days=self.analytics_day_retention_days),
        }

    @property
    def token_issuer(self) -> str:
        return self.issuer or self.base_url

    @property
    def token_audience(self) -> str:
        return self.audience or self.token_issuer

    @property
    def environments(self) -> tuple[str, ...]:
        return tuple(self.key_env_tags)

    @property
    def password_policy(self) -> PasswordPolicy:
        return PasswordPolicy(
            self.argon2_time_cost, self.argon2_memory_kib, self.argon2_parallelism
        )

    def version(self, requested: str | None) -> ApiVersion:
        """The version a request asked for in the version header, or the current one."""
        if not requested:
            return self.current_version
        for version in self.api_versions:
            if version.id == requested:
                return version
        supported = ", ".join(v.id for v in self.api_versions)
        raise InvalidInput(
            f"Unknown API version {requested[:64]!r} in the {self.version_header} header. "
            f"Supported versions: {supported}."
        )

    def deprecation_headers(self) -> dict[str, dict[str, str]]:
        """``Deprecation`` (RFC 9745) and ``Sunset`` (RFC 8594) headers per deprecated version.

        A version without ``deprecated_on`` counts as deprecated since the next release.
        """
        out: dict[str, dict[str, str]] = {}
        ordered = self.api_versions
        for i, version in enumerate(ordered):
            if not version.deprecated:
                continue
            since = version.deprecated_on or (
                ordered[i + 1].date if i + 1 < len(ordered) else version.date
            )
            headers = {"Deprecation": f"@{_epoch(since)}"}
            if version.sunset is not None:
                headers["Sunset"] = formatdate(_epoch(version.sunset), usegmt=True)
            out[version.id] = headers
        return out

    @property
    def current_version(self) -> ApiVersion:
        live = [v for v in self.api_versions if not v.deprecated]
        return (live or self.api_versions)[-1]


def _epoch(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())


FILE_SETTINGS = ("secret_key", "smtp_password", "metrics_token", "database_url", "redis_url")
"""Settings that may also be read from a file named by ``APIWARD_<NAME>_FILE`` (a
secret mounted by systemd's ``LoadCredential=``, or any secret store): the file's
content, without its final newline."""


class _SecretFiles(PydanticBaseSettingsSource):
    """``APIWARD_<NAME>_FILE`` for the settings of ``FILE_SETTINGS``; below the variable
    itself, above the config file."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything is read in __call__

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        problems = []
        for name in FILE_SETTINGS:
            path = os.environ.get(variable(name) + "_FILE")
            if not path:
                continue
            if os.environ.get(variable(name)):
                problems.append(f"{variable(name)} and {variable(name)}_FILE are both set")
                continue
            try:
                values[name] = Path(path).read_text().removesuffix("\n")
            except OSError as exc:
                problems.append(f"{variable(name)}_FILE={path}: cannot be read ({exc.strerror})")
        if problems:
            raise ConfigError(problems)
        return values


# --- tracing: the standard OpenTelemetry variables (docs/operations.md, "Tracing") --------

TRACE_EXPORTER_VARIABLES = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)
TRACE_EXPORTERS = ("otlp", "console")


def tracing_reason(setting: bool | None, environ: Mapping[str, str]) -> str | None:
    """Why requests are traced (the variable that asks for it), or None when they are not.

    ``OTEL_SDK_DISABLED=true`` wins over everything; then ``APIWARD_TRACING``; unset, an
    exporter configured by the standard variables turns tracing on, unless
    ``OTEL_TRACES_EXPORTER=none``.
    """
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if setting is not None:
        return "APIWARD_TRACING=true" if setting else None
    if trace_exporter(environ) == "none":
        return None
    return next((f"{name} is set" for name in TRACE_EXPORTER_VARIABLES if environ.get(name)), None)


def trace_exporter(environ: Mapping[str, str]) -> str:
    """The exporter ``OTEL_TRACES_EXPORTER`` names (the first of a list), ``otlp`` unset."""
    return (environ.get("OTEL_TRACES_EXPORTER") or "otlp").split(",")[0].strip().lower()


def tracing_problem(reason: str | None, environ: Mapping[str, str]) -> str | None:
    """What prevents tracing when ``reason`` asks for it: the extra not installed, or an
    exporter or OTLP protocol apiward does not ship."""
    if reason is None:
        return None
    needed = ["opentelemetry.sdk"]
    if trace_exporter(environ) == "otlp":
        needed.append("opentelemetry.exporter.otlp.proto.http")
    if not all(_installed(module) for module in needed):
        return (
            f"tracing is on ({reason}) but OpenTelemetry is not installed: "
            "pip install apiward[otel], or set APIWARD_TRACING=false"
        )
    exporter = trace_exporter(environ)
    if exporter not in TRACE_EXPORTERS:
        return f"OTEL_TRACES_EXPORTER={exporter}: otlp, console or none"
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if exporter == "otlp" and protocol.strip() != "http/protobuf":
        return f"OTLP protocol {protocol}: apiward exports traces over http/protobuf"
    return None


def _installed(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


# --- checking a configuration (docs/operations.md, "Configuration") ----------------------

SECRET_SETTINGS = frozenset({"secret_key", "smtp_password", "metrics_token"})
"""Settings never shown: `apiward config show` and every error print them masked."""

OTHER_VARIABLES = frozenset(
    {
        "APIWARD_CONFIG_FILE",
        "APIWARD_ORG",  # the CLI's organisation
        "APIWARD_INIT_ORG_NAME",
        "APIWARD_INIT_OWNER_EMAIL",
        "APIWARD_INIT_OWNER_PASSWORD",
        "APIWARD_INIT_OWNER_NAME",
        # the Python SDK's (apiward.client)
        "APIWARD_URL",
        "APIWARD_USER",
        "APIWARD_PASSWORD",
        "APIWARD_KEY",
    }
)
"""``APIWARD_*`` variables that are not settings of the server but are read elsewhere."""

OTHER_PREFIXES = ("APIWARD_TEST_", "APIWARD_BENCH_", "APIWARD_SOAK_", "APIWARD_SCHEMATHESIS_")
"""Variables of the test suite and the benchmarks."""


def variable(name: str) -> str:
    """The environment variable of a setting."""
    return "APIWARD_" + name.upper()


def _nearest(word: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, known, n=1, cutoff=0.75)
    return f"; did you mean {close[0]}?" if close else ""


def unknown_variables(environ: dict[str, str] | os._Environ[str]) -> list[str]:
    """One line for each ``APIWARD_*`` variable that no part of apiward reads."""
    known = sorted(
        {variable(name) for name in Settings.model_fields}
        | {variable(name) + "_FILE" for name in FILE_SETTINGS}
        | OTHER_VARIABLES
    )
    return [
        f"{name} is not a setting of apiward and is ignored{_nearest(name, known)}"
        for name in sorted(environ)
        if name.upper().startswith("APIWARD_")
        and name.upper() not in known
        and not name.upper().startswith(OTHER_PREFIXES)
    ]


def _check_file(path: str) -> None:
    import tomllib

    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError([f"APIWARD_CONFIG_FILE={path}: no such file"]) from None
    except OSError as exc:
        raise ConfigError(
            [f"APIWARD_CONFIG_FILE={path}: cannot be read ({exc.strerror})"]
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"APIWARD_CONFIG_FILE={path}: not valid TOML ({exc})"]) from None
    if not isinstance(data, dict):  # pragma: no cover - tomllib always returns a table
        raise ConfigError([f"APIWARD_CONFIG_FILE={path}: not a TOML table"])


def _unknown_file_keys() -> list[str]:
    path = os.environ.get("APIWARD_CONFIG_FILE")
    known = sorted(Settings.model_fields)
    return [
        f"{key} in {path}: not a setting{_nearest(key, known)}"
        for key in sorted(_file_keys())
        if key not in Settings.model_fields
    ]


def _file_keys() -> set[str]:
    import tomllib

    path = os.environ.get("APIWARD_CONFIG_FILE")
    if not path:
        return set()
    try:
        with open(path, "rb") as file:
            return set(tomllib.load(file))
    except (OSError, tomllib.TOMLDecodeError):
        return set()


def origin(name: str, given: dict[str, Any] | None = None) -> str:
    """Where the value of setting ``name`` comes from: given in code, the environment,
    the config file or the default (in the order they win)."""
    if given and name in given:
        return "given"
    if any(k.upper() == variable(name) for k in os.environ):
        return "environment"
    if name in FILE_SETTINGS and os.environ.get(variable(name) + "_FILE"):
        return "secret file"
    if name in _file_keys():
        return "file"
    return "default"


def shown(name: str, value: Any) -> str:
    """A setting's value as `apiward config show` and errors print it: secrets masked,
    passwords in URLs masked, long values cut."""
    if name in SECRET_SETTINGS:
        return "(not set)" if value is None else "********"
    if isinstance(value, SecretStr):
        return "********"
    text = value if isinstance(value, str) else repr(value)
    if isinstance(value, str) and "://" in value and "@" in value:
        from urllib.parse import urlsplit

        parts = urlsplit(value)
        if parts.password:
            text = value.replace(f":{parts.password}@", ":********@", 1)
    return text if len(text) <= 120 else text[:117] + "..."


def _problems(exc: ValidationError, given: dict[str, Any]) -> list[str]:
    lines = []
    for error in exc.errors(include_url=False):
        loc = [str(part) for part in error["loc"]]
        name = loc[0] if loc else ""
        where = (
            {
                "given": "given",
                "environment": f"from {variable(name)}",
                "file": f"from {os.environ.get('APIWARD_CONFIG_FILE')}",
                "default": "the default",
            }[origin(name, given)]
            if name in Settings.model_fields
            else "the configuration"
        )
        path = name + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc[1:])
        message = error["msg"].removeprefix("Value error, ")
        if not name:  # a rule across settings: its input is all of them, secrets too
            lines.append(f"settings ({where}): {message}")
            continue
        value = shown(name, error.get("input"))
        lines.append(f"{path} = {value} ({where}): {message}")
    return lines
