"""The composition root: ``build`` wires every part of the server from settings.

Both the HTTP app (in its lifespan) and the CLI call ``build`` once; nothing is created
at import time and no part is completed after construction. Each part of ``Runtime`` is
built complete, with its collaborators, the first time it is used: the server builds
every one in ``start`` before it serves, a one-shot command (``apiward keys list``) only
the few it reads, and imports no module of the others. ``Runtime`` holds the parts and
their lifecycle (``start``, ``open``, ``stop``); what the parts do lives in the services
(docs/architecture.md, "The composition root").
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING

from apiward.adapters.logging import get_logger
from apiward.core.clock import Clock, SystemClock
from apiward.core.errors import ApiwardError

if TYPE_CHECKING:
    import ipaddress

    import httpx
    from opentelemetry.sdk.trace import SpanProcessor

    from apiward.adapters.cache.memory import MemoryCache
    from apiward.adapters.geo import Countries
    from apiward.adapters.limiter.memory import MemoryLimiter
    from apiward.adapters.mail import Postbox, Transport
    from apiward.adapters.metrics import Metrics
    from apiward.adapters.pubsub import Publisher, Subscription
    from apiward.adapters.settings import Settings
    from apiward.adapters.storage.sql import SqlStore
    from apiward.adapters.storage.sql.engine import Listener
    from apiward.adapters.tracing import Tracing
    from apiward.core.crypto import Sealer
    from apiward.core.destinations import Destinations
    from apiward.core.hygiene import HygienePolicy
    from apiward.core.keys import KeyFormats
    from apiward.core.models import Invalidation
    from apiward.core.passwords import Passwords
    from apiward.core.scopes import Catalogue
    from apiward.services.addresses import Addresses, AddressTally
    from apiward.services.analytics import Analytics, Verifications
    from apiward.services.audit import AuditLog
    from apiward.services.auth import Authenticator
    from apiward.services.clients import Clients
    from apiward.services.housekeeping import Housekeeping, Upkeep
    from apiward.services.hygiene import Hygiene
    from apiward.services.impact import Impacts
    from apiward.services.importing import KeyImporter
    from apiward.services.invalidations import InvalidationPoller
    from apiward.services.keys import Keys
    from apiward.services.leaks import Leaks
    from apiward.services.limiting import RequestLimits
    from apiward.services.lockouts import Lockouts
    from apiward.services.mfa import TwoFactor
    from apiward.services.operators import Operators
    from apiward.services.portal import Portal, PortalPolicy
    from apiward.services.ports import Limiter, Store, Transaction, WebhookSender
    from apiward.services.revocations import Revocations
    from apiward.services.scheduler import Scheduler
    from apiward.services.scope_usage import ScopeTally, ScopeUsage
    from apiward.services.signin import SignIns
    from apiward.services.signing import Keyring
    from apiward.services.tenancy import Tenancy
    from apiward.services.throttle import LoginThrottle
    from apiward.services.tokens import Tokens
    from apiward.services.usage import UsageRecorder
    from apiward.services.webhooks import Webhooks

log = get_logger("apiward.runtime")


class Runtime:
    """Every part of one process, each built on first use; ``start``, ``open``, ``stop``.

    A part is a ``cached_property``: once built it is a plain attribute of the instance,
    so the request paths read it as fast as a field. The imports of a part are inside its
    property, so that a command which never uses it never loads its modules.
    """

    PARTS = (
        "tracing", "publisher", "sql", "store", "cache", "local_limiter", "limiter", "passwords",
        "sealer", "keyring", "revocations", "usage", "wall", "verifications", "scope_tally",
        "countries", "address_tally", "analytics", "audit", "tenancy", "operators", "keys",
        "formats", "importer",
        "clients", "scope_usage", "addresses", "impact",
        "lockouts", "limits", "auth", "login_throttle", "sign_ins", "two_factor", "tokens",
        "http",
        "webhooks", "leaks", "postbox", "portal", "invalidations", "housekeeping",
        "hygiene", "trusted_proxies", "scheduler", "subscription", "metrics",
    )  # fmt: skip
    """Every part, in an order where each comes after what it is built from."""

    def __init__(
        self, settings: Settings, clock: Clock, span_processor: SpanProcessor | None = None
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._span_processor = span_processor
        self.listener: Listener | None = None
        """PostgreSQL's notifications of invalidations (None: SQLite, or not started)."""

    def __repr__(self) -> str:
        return f"<Runtime built={[p for p in self.PARTS if self.built(p)]}>"

    def built(self, part: str) -> bool:
        """Whether ``part`` (a name of ``PARTS``) was built, by use or by ``start``."""
        if part not in self.PARTS:
            raise ValueError(f"{part!r} is not a part of the runtime")
        return part in self.__dict__

    # The parts, from the settings. With tracing on, the parts that leave the process
    # (store, Redis, webhooks, mail) and the authentication decision are the traced
    # ones of ``adapters/tracing.py``.

    @cached_property
    def tracing(self) -> Tracing | None:
        """The tracer and its provider; None when tracing is off (``adapters/tracing.py``),
        and then no module of OpenTelemetry is loaded."""
        from apiward.adapters.settings import tracing_reason

        if tracing_reason(self.settings.tracing, os.environ) is None:
            return None
        from apiward.adapters.tracing import configure

        return configure(self.settings, processor=self._span_processor)

    @cached_property
    def publisher(self) -> Publisher | None:
        """With Redis, what pushes each committed invalidation to every process."""
        s = self.settings
        if not s.redis_url:
            return None
        from apiward.adapters.pubsub import Publisher

        return Publisher(s.redis_url, timeout=s.redis_timeout_seconds, cluster=s.redis_cluster)

    @cached_property
    def sql(self) -> SqlStore:
        from apiward.adapters.storage.sql import SqlStore

        s = self.settings
        publisher = self.publisher
        return SqlStore.from_url(
            s.database_url,
            timeout=s.database_timeout_seconds,
            announce=publisher.announce if publisher is not None else None,
        )

    @cached_property
    def store(self) -> Store[Transaction]:
        if self.tracing is None:
            return self.sql
        from apiward.adapters.tracing import TracedStore

        return TracedStore(self.sql, self.tracing.tracer, self.sql.engine.dialect.name)

    @cached_property
    def cache(self) -> MemoryCache:
        from apiward.adapters.cache.memory import MemoryCache

        s = self.settings
        return MemoryCache(
            s.cache_max_entries,
            s.cache_ttl_seconds,
            max_unknown=s.cache_max_unknown,
            serve_stale=s.cache_serve_stale_seconds,
        )

    @cached_property
    def local_limiter(self) -> MemoryLimiter:
        """The in-process table: the limiter without Redis, the reserve with it."""
        from apiward.adapters.limiter.memory import MemoryLimiter

        return MemoryLimiter(max_keys=self.settings.rate_limit_max_keys)

    @cached_property
    def limiter(self) -> Limiter:
        """In-process limits by default; exact across processes with Redis."""
        s = self.settings
        if not s.redis_url:
            return self.local_limiter
        from apiward.adapters.limiter.fallback import FallbackLimiter
        from apiward.adapters.limiter.redis import RedisLimiter, connect_cluster
        from apiward.adapters.limiter.redis import connect as connect_redis
        from apiward.services.limiting import key_subject

        timeout = s.redis_timeout_seconds
        if s.redis_cluster:
            redis = RedisLimiter(
                connect_cluster(s.redis_url, timeout=timeout),
                prefix="apiward:",
                timeout=timeout,
                subject=key_subject,
            )
        else:
            redis = RedisLimiter(
                connect_redis(s.redis_url, timeout=timeout), prefix="apiward:", timeout=timeout
            )
        return FallbackLimiter(redis, self.local_limiter, mode=s.rate_limit_failure_mode)

    @cached_property
    def _limits_on(self) -> Limiter:
        """The limiter the limits and throttles call: traced when it leaves the process."""
        if self.tracing is None or not self.settings.redis_url:
            return self.limiter
        from apiward.adapters.tracing import TracedLimiter

        return TracedLimiter(self.limiter, self.tracing.tracer)

    @cached_property
    def passwords(self) -> Passwords:
        from apiward.core.passwords import Passwords

        return Passwords(self.settings.password_policy)

    @cached_property
    def sealer(self) -> Sealer:
        from apiward.adapters.secret import deployment_secret
        from apiward.core.crypto import Sealer

        return Sealer(deployment_secret(self.settings))

    @cached_property
    def _access_ttl(self) -> timedelta:
        return timedelta(seconds=self.settings.access_token_ttl_seconds)

    @cached_property
    def keyring(self) -> Keyring:
        from apiward.services.signing import Keyring

        alg = self.settings.token_algorithm
        return Keyring(self.store, self.clock, self.sealer, alg, self._access_ttl)

    @cached_property
    def revocations(self) -> Revocations:
        from apiward.services.revocations import Revocations

        return Revocations()

    @cached_property
    def usage(self) -> UsageRecorder:
        from apiward.services.usage import UsageRecorder

        return UsageRecorder()

    @cached_property
    def verifications(self) -> Verifications:
        from apiward.services.analytics import Verifications

        return Verifications(self.wall)  # an injected clock's minutes (impact reads days)

    @cached_property
    def scope_tally(self) -> ScopeTally:
        from apiward.services.scope_usage import ScopeTally

        return ScopeTally(self.wall)

    @cached_property
    def address_tally(self) -> AddressTally:
        from apiward.services.addresses import AddressTally

        return AddressTally(self.wall, self.countries.placed)

    @cached_property
    def wall(self) -> Callable[[], float]:
        """The time in unix seconds the request path's counters read: the system's, read
        cheaply (a datetime per request would cost more than a count), or an injected
        clock's."""
        import time

        clock = self.clock
        return time.time if isinstance(clock, SystemClock) else lambda: clock.now().timestamp()

    @cached_property
    def addresses(self) -> Addresses:
        from apiward.services.addresses import Addresses

        kept = self.settings.analytics_retention["day"]
        return Addresses(self.store, self.keys, self.clients, self.clock, kept)

    @cached_property
    def impact(self) -> Impacts:
        from apiward.services.impact import Impacts

        return Impacts(self.store, self.keys, self.clients, self.clock)

    @cached_property
    def scope_usage(self) -> ScopeUsage:
        from apiward.services.scope_usage import ScopeUsage

        kept = self.settings.analytics_retention["day"]
        return ScopeUsage(self.store, self.keys, self.clients, self.clock, kept)

    @cached_property
    def analytics(self) -> Analytics:
        from apiward.services.analytics import Analytics

        return Analytics(self.store, self.settings.analytics_retention)

    @cached_property
    def audit(self) -> AuditLog:
        from apiward.services.audit import AuditLog

        return AuditLog(self.store)

    @cached_property
    def tenancy(self) -> Tenancy:
        from apiward.services.tenancy import Tenancy

        s = self.settings
        tiers = tuple(s.rate_limit_tiers)
        return Tenancy(
            self.store,
            self.cache,
            self.clock,
            self.passwords,
            s.environments,
            tiers,
            hygiene=_hygiene_policy(s),
            catalogue=self.catalogue,
        )

    @cached_property
    def operators(self) -> Operators:
        from apiward.services.operators import Operators

        return Operators(self.store, self.tenancy)

    @cached_property
    def keys(self) -> Keys:
        from apiward.services.keys import Keys

        s = self.settings
        versions = tuple(v.id for v in s.api_versions)
        return Keys(self.store, self.cache, self.clock, s.key_format, versions, self.catalogue)

    @property
    def catalogue(self) -> Catalogue:
        """The protected API's scopes (``APIWARD_API_SCOPES``), apiward's own beside them."""
        from apiward.core.roles import MANAGEMENT_SCOPES
        from apiward.core.scopes import Catalogue

        return Catalogue(self.settings.api_scopes, MANAGEMENT_SCOPES)

    @cached_property
    def formats(self) -> KeyFormats:
        """The current key format and the earlier ones whose keys keep working (the
        earlier ones are learnt at start)."""
        from apiward.core.keys import KeyFormats

        return KeyFormats(self.settings.key_format)

    @cached_property
    def _client_formats(self) -> KeyFormats:
        return self.formats.view("cs")

    @cached_property
    def _refresh_formats(self) -> KeyFormats:
        return self.formats.view("rt")

    @cached_property
    def _imported(self) -> tuple[str, ...]:
        return tuple(self.settings.imported_key_prefixes)

    @cached_property
    def importer(self) -> KeyImporter:
        from apiward.services.importing import KeyImporter

        fmt = self.settings.key_format
        return KeyImporter(
            self.store, self.cache, self.clock, fmt, imported_prefixes=self._imported
        )

    @cached_property
    def clients(self) -> Clients:
        from apiward.services.clients import Clients

        return Clients(
            self.store,
            self.cache,
            self.clock,
            self._client_formats.current,
            self.tokens.revoke_client_tokens,
            self.catalogue,
        )

    @cached_property
    def lockouts(self) -> Lockouts:
        from apiward.services.lockouts import Lockouts

        return Lockouts(self.store, self.clock)

    @cached_property
    def limits(self) -> RequestLimits:
        from apiward.core.limits import Policy, parse_rate
        from apiward.services.limiting import RequestLimits

        s = self.settings
        failures, period = parse_rate(s.auth_failure_limit)
        return RequestLimits(
            self._limits_on,
            s.rate_plans(),
            self.store,
            self.clock,
            auth_failures=Policy("auth-failures", failures, period, "ip"),
            lockouts=self.lockouts,
            credits_low=s.credits_low_threshold,
        )

    @cached_property
    def auth(self) -> Authenticator:
        from apiward.services.auth import Authenticator

        s = self.settings
        make: type[Authenticator] = Authenticator
        if self.tracing is not None:
            from functools import partial

            from apiward.adapters.tracing import TracedAuthenticator

            make = partial(TracedAuthenticator, self.tracing.tracer)  # type: ignore[assignment]
        return make(
            self.store,
            self.cache,
            self.clock,
            self.formats,
            self.usage,
            self.verifications,
            self.limits,
            self.keyring,
            self.revocations,
            issuer=s.token_issuer,
            audience=s.token_audience,
            space_header=s.space_header,
            require_space=s.require_space_header,
            default_version=s.current_version.id,
            imported_prefixes=self._imported,
            scope_tally=self.scope_tally,
            address_tally=self.address_tally,
        )

    @cached_property
    def login_throttle(self) -> LoginThrottle:
        """One throttle for every password sign-in: the token endpoint and the dashboard."""
        from apiward.core.limits import Policy
        from apiward.services.throttle import LoginThrottle

        s = self.settings
        window = s.login_failure_window_seconds
        return LoginThrottle(
            self._limits_on,
            Policy("login-user", s.login_max_failures, window, "user"),
            Policy("login-ip", s.login_ip_max_failures, window, "ip"),
        )

    @cached_property
    def sign_ins(self) -> SignIns:
        from apiward.services.signin import SignIns

        return SignIns(self.store, self.clock, self.passwords, self.login_throttle)

    @cached_property
    def two_factor(self) -> TwoFactor:
        """Second factors of dashboard sign-in, throttled like passwords."""
        from apiward.services.mfa import TwoFactor

        return TwoFactor(
            self.store,
            self.clock,
            self.sealer,
            self.passwords,
            self.login_throttle,
            self.settings.platform_name,
        )

    @cached_property
    def tokens(self) -> Tokens:
        from apiward.services.tokens import Tokens, TokenSettings

        s = self.settings
        return Tokens(
            self.store,
            self.cache,
            self.clock,
            self.keyring,
            self.sealer,
            self.sign_ins,
            self.revocations,
            self.usage,
            self._refresh_formats,
            TokenSettings(
                issuer=s.token_issuer,
                audience=s.token_audience,
                access_ttl=self._access_ttl,
                refresh_ttl=timedelta(seconds=s.refresh_token_ttl_seconds),
                grace=timedelta(seconds=s.refresh_grace_seconds),
                default_environment=s.environments[0],
                retry=timedelta(seconds=s.refresh_retry_seconds),
            ),
            self.verifications,
            self.auth.acts,
            self.limits.authentication_failed,
            self.auth.flights,
        )

    @cached_property
    def http(self) -> httpx.AsyncClient:
        """The one client webhook deliveries go out through."""
        from apiward.adapters import delivery

        return delivery.client(self.settings.webhook_timeout_seconds)

    @cached_property
    def _destinations(self) -> Destinations:
        from apiward.core.destinations import Destinations

        return Destinations.parse(self.settings.webhook_allowed_networks)

    @cached_property
    def webhooks(self) -> Webhooks:
        from apiward.adapters import delivery
        from apiward.services.webhooks import DeliveryPolicy, Webhooks

        s = self.settings
        sender: WebhookSender = delivery.HttpxSender(self.http, self._destinations)
        if self.tracing is not None:
            from apiward.adapters.tracing import TracedSender

            sender = TracedSender(sender, self.tracing.tracer)
        return Webhooks(
            self.store,
            self.clock,
            self.sealer,
            s.environments,
            sender,
            DeliveryPolicy(
                max_attempts=s.webhook_max_attempts,
                retry_base=s.webhook_retry_base_seconds,
                timeout=s.webhook_timeout_seconds,
            ),
            self._destinations,
        )

    @cached_property
    def leaks(self) -> Leaks:
        from apiward.services.leaks import LeakFormats, Leaks

        formats = LeakFormats(
            self.formats,
            self._client_formats,
            self._refresh_formats,
            imported_prefixes=self._imported,
        )
        return Leaks(
            self.store,
            self.clock,
            self.keys,
            self.clients,
            self.tokens,
            self.operators.principal,
            formats,
            self.settings.leak_report_public_keys,
        )

    @cached_property
    def postbox(self) -> Postbox:
        from apiward.adapters.mail import Postbox

        transport = _mail_transport(self.settings)
        if self.tracing is not None:
            from apiward.adapters.tracing import TracedTransport

            transport = TracedTransport(transport, self.tracing.tracer)
        s = self.settings
        return Postbox(transport, platform=s.platform_name, sender=s.mail_from)

    @cached_property
    def portal(self) -> Portal:
        from apiward.core.limits import Policy
        from apiward.services.portal import Portal
        from apiward.services.throttle import ActionThrottle

        s = self.settings
        return Portal(
            self.store,
            self.clock,
            self.passwords,
            self.tenancy,
            self.tokens,
            ActionThrottle(
                self._limits_on,
                Policy.parse("portal-email", s.portal_email_limit, key="user"),
                Policy.parse("portal-ip", s.portal_ip_limit, key="ip"),
            ),
            self.postbox,
            _portal_policy(s),
            self.sign_ins,
        )

    @cached_property
    def invalidations(self) -> InvalidationPoller:
        from apiward.services.invalidations import InvalidationPoller

        return InvalidationPoller(
            self.store, self.clock, self.cache, self.revocations, self.keyring
        )

    @cached_property
    def housekeeping(self) -> Housekeeping:
        from apiward.services.housekeeping import Housekeeping

        upkeep = _upkeep(self.settings)
        return Housekeeping(self.store, self.clock, self.keyring, self.analytics, upkeep)

    @cached_property
    def hygiene(self) -> Hygiene:
        from apiward.services.hygiene import Hygiene

        policy = _hygiene_policy(self.settings)
        return Hygiene(self.store, self.clock, self.cache, self.postbox, policy)

    @cached_property
    def countries(self) -> Countries:
        from apiward.adapters.geo import Countries

        return Countries(self.settings.country_header, self.settings.geoip_database)

    @cached_property
    def trusted_proxies(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        import ipaddress

        cidrs = self.settings.trusted_proxies
        return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)

    @cached_property
    def subscription(self) -> Subscription | None:
        """With Redis, the invalidations other processes push here: each is applied on
        receipt (or wakes the poll), and a lost subscription wakes the poll too, which
        then runs at its fast interval until the subscription is back."""
        s = self.settings
        if not s.redis_url:
            return None
        from apiward.adapters.pubsub import Subscription

        invalidations, scheduler = self.invalidations, self.scheduler

        def on_row(row: Invalidation) -> None:
            if invalidations.receive(row):
                scheduler.wake()

        return Subscription(
            s.redis_url,
            on_row,
            lambda up: scheduler.wake(),
            timeout=s.redis_timeout_seconds,
            cluster=s.redis_cluster,
        )

    def _on_notify(self) -> None:
        """PostgreSQL's notification of a new invalidation wakes the poll, unless the
        invalidation is pushed here anyway."""
        subscription = self.subscription
        if subscription is None or not subscription.connected:
            self.scheduler.wake()

    def invalidation_poll_seconds(self) -> float:
        """The invalidation poll's interval now: the backstop's while invalidations are
        pushed here, else the fast one."""
        s = self.settings
        subscription = self.subscription
        if subscription is not None and subscription.connected:
            return max(s.invalidation_backstop_seconds, s.invalidation_poll_seconds)
        return s.invalidation_poll_seconds

    @cached_property
    def metrics(self) -> Metrics:
        """Metrics import none of the parts they read: each reports its own counts."""
        from apiward.adapters.limiter.fallback import FallbackLimiter
        from apiward.adapters.metrics import Metrics
        from apiward.core.readings import Reports

        sources: list[Reports] = [self.cache, self.limits]
        if isinstance(self.limiter, FallbackLimiter):
            sources.append(self.limiter)
        sources.append(self.local_limiter)  # the in-process table, in use or in reserve
        sources += [
            self.sql,
            self.webhooks,
            self.leaks,
            self.lockouts,
            self.invalidations,
            self.hygiene,
        ]
        sources += [part for part in (self.publisher, self.subscription) if part is not None]
        return Metrics(sources)

    @cached_property
    def scheduler(self) -> Scheduler:
        from apiward.services.scheduler import Periodic, Scheduler

        s = self.settings
        usage, verifications, store = self.usage, self.verifications, self.store
        scope_tally, address_tally = self.scope_tally, self.address_tally
        return Scheduler(
            [
                Periodic("webhooks", s.webhook_poll_seconds, self.webhooks.run_once),
                Periodic("housekeeping", 60.0, self.housekeeping.run),
                Periodic("hygiene", s.key_hygiene_seconds, self.hygiene.run),
                Periodic("usage", s.last_used_flush_seconds, lambda: usage.flush(store)),
                Periodic(
                    "analytics", s.analytics_flush_seconds, lambda: verifications.flush(store)
                ),
                Periodic(
                    "scope usage", s.analytics_flush_seconds, lambda: scope_tally.flush(store)
                ),
                Periodic(
                    "addresses", s.analytics_flush_seconds, lambda: address_tally.flush(store)
                ),
                Periodic(
                    "invalidations",
                    s.invalidation_poll_seconds,
                    self.invalidations.poll,
                    wakeable=True,
                    interval=self.invalidation_poll_seconds,
                ),
            ]
        )

    # The lifecycle.

    async def start(self, *, background: bool = True) -> None:
        """Build every part, migrate when configured, load signing keys and revocations,
        prime the invalidation poller; with ``background`` (the server), listen for
        invalidation notices and start the periodic jobs."""
        for part in self.PARTS:
            getattr(self, part)
        if self.settings.migrate_on_start:
            await self._migrate()
        await self.keyring.load()
        await self.tokens.load_revocations()
        await self.invalidations.poll()
        await self._learn_formats(record=background)
        if not background:
            return
        if not self.settings.smtp_host:  # the log transport
            log.warning(
                "smtp_not_configured",
                note="Emails (confirmations, invitations, password resets) are written "
                "to this log, links included. Set APIWARD_SMTP_HOST to send them.",
            )
        self.listener = await self.sql.listen(self._on_notify)
        if self.subscription is not None:
            self.subscription.start()
        self.scheduler.start()

    async def open(self) -> None:
        """What a one-shot command (the CLI) needs before it runs: the schema migrated
        when configured, and the key formats of the keys stored; the parts it uses are
        built as it uses them. The rest of ``start`` (signing keys, revocations, the
        invalidation cursor) serves requests and the periodic jobs: no command reads it
        (a rotation installs the signing keys it writes)."""
        if self.settings.migrate_on_start:
            await self._migrate()
        await self._learn_formats(record=False)

    async def _migrate(self) -> None:
        """Migrations are not bound by the request paths' statement timeout (a long
        ``ALTER TABLE`` on a large table is not a hung database): on PostgreSQL they run
        on an engine of their own."""
        from apiward.adapters.storage import migrate
        from apiward.adapters.storage.sql.engine import create_engine

        engine = self.sql.engine
        if engine.dialect.name != "postgresql":
            await migrate.upgrade(engine)
            return
        unbounded = create_engine(self.settings.database_url, pool_size=1, timeout=None)
        try:
            await migrate.upgrade(unbounded)
        finally:
            await unbounded.dispose()

    async def _learn_formats(self, *, record: bool) -> None:
        from apiward.services.formats import learn_formats

        imported = self.settings.imported_key_prefixes
        seen = await learn_formats(self.store, self.clock, self.formats, imported, record=record)
        if not record:
            return
        if seen.earlier:
            log.info(
                "earlier_key_formats",
                keys=seen.earlier,
                note="Keys of an earlier key format keep working; new keys are issued "
                f"as {', '.join(sorted(self.formats.current.display_prefixes))}.",
            )
        if seen.unrecorded:
            log.warning(
                "keys_of_unrecorded_format",
                keys=seen.unrecorded,
                note="These keys are of a format this deployment never recorded (it was "
                "changed before formats were recorded) and are refused. To keep them, "
                "list their prefixes in imported_key_prefixes (looked up by digest "
                "alone), or start once with the earlier format; else revoke them.",
            )

    async def stop(self) -> None:
        """Stop the jobs, send what is deferred, flush the counters, close every resource
        that was built (a part never used has nothing to close)."""
        if self.built("countries"):
            self.countries.close()
        if self.listener is not None:
            await self.listener.stop()
            self.listener = None
        if self.built("subscription") and self.subscription is not None:
            await self.subscription.stop()
        if self.built("scheduler"):
            await self.scheduler.stop()
        if self.built("http"):
            await self.http.aclose()
        if self.built("tokens"):
            await self.tokens.drain()
        if self.built("portal"):
            await self.portal.drain()
        if self.built("postbox"):
            await self.postbox.drain()
        for part, flush in (
            ("usage", self.flush_usage),
            ("verifications", self.flush_analytics),
            ("scope_tally", self.flush_scope_usage),
            ("address_tally", self.flush_addresses),
        ):
            if not self.built(part):
                continue
            try:
                await flush()
            except ApiwardError as exc:
                log.warning("flush_at_stop_failed", job=flush.__name__, error=exc.message)
        if self.built("limiter"):
            await self.limiter.aclose()
        if self.built("publisher") and self.publisher is not None:
            await self.publisher.aclose()
        if self.built("sql"):
            await self.store.close()
        if self.built("tracing") and self.tracing is not None:
            self.tracing.shutdown()

    async def flush_usage(self) -> int:
        """Write the pending "last used" of keys and clients."""
        return await self.usage.flush(self.store)

    async def flush_analytics(self) -> int:
        """Write the pending usage counts."""
        return await self.verifications.flush(self.store)

    async def flush_scope_usage(self) -> int:
        """Write the pending counts of the scopes credentials used."""
        return await self.scope_tally.flush(self.store)

    async def flush_addresses(self) -> int:
        """Write the pending counts of the networks credentials' requests came from."""
        return await self.address_tally.flush(self.store)

    async def ping_redis(self) -> bool | None:
        """Whether Redis answers, within ``APIWARD_REDIS_TIMEOUT_SECONDS`` (at once while
        the limiter's circuit is open); None when no Redis is configured."""
        if not self.settings.redis_url:
            return None
        from apiward.adapters.limiter.fallback import FallbackLimiter

        limiter = self.limiter
        assert isinstance(limiter, FallbackLimiter)
        return await limiter.ping()


def build(
    settings: Settings, *, clock: Clock | None = None, span_processor: SpanProcessor | None = None
) -> Runtime:
    """The parts of the server, wired from ``settings``; none is built or connected yet.

    ``span_processor`` replaces the exporter the ``OTEL_*`` variables configure.
    """
    return Runtime(settings, clock or SystemClock(), span_processor)


def _mail_transport(settings: Settings) -> Transport:
    """SMTP when a host is configured; else the log (the embedded default)."""
    from apiward.adapters.mail import LogTransport, SmtpTransport

    if not settings.smtp_host:
        return LogTransport()
    password = settings.smtp_password
    return SmtpTransport(
        settings.smtp_host,
        settings.smtp_port,
        security=settings.smtp_security,
        username=settings.smtp_username,
        password=password.get_secret_value() if password else None,
        timeout=settings.smtp_timeout_seconds,
    )


def _portal_policy(settings: Settings) -> PortalPolicy:
    from apiward.core.models import LinkPurpose
    from apiward.services.portal import PortalPolicy

    base = settings.base_url + "/dashboard"
    return PortalPolicy(
        links={
            LinkPurpose.CONFIRM: base + "/confirm",
            LinkPurpose.RESET: base + "/reset",
            LinkPurpose.INVITE: base + "/invitations/accept",
        },
        sign_in_url=base + "/login",
        forgot_url=base + "/forgot",
        link_prefix=settings.key_format.prefix + "el",
        signup_enabled=settings.signup_enabled,
        signup_domains=tuple(settings.signup_email_domains),
        confirm_ttl=timedelta(seconds=settings.confirm_link_ttl_seconds),
        reset_ttl=timedelta(seconds=settings.reset_link_ttl_seconds),
        invite_ttl=timedelta(seconds=settings.invite_link_ttl_seconds),
        projects_per_account=settings.projects_per_account,
    )


def _upkeep(settings: Settings) -> Upkeep:
    from apiward.services.housekeeping import Upkeep

    rotation = settings.signing_key_rotation_days
    audit = settings.audit_retention_days
    return Upkeep(
        signing_key_rotation=timedelta(days=rotation) if rotation else None,
        refresh_grace=timedelta(
            seconds=max(settings.refresh_grace_seconds, settings.refresh_retry_seconds)
        ),
        audit_retention=timedelta(days=audit) if audit else None,
        webhook_retention=timedelta(days=settings.webhook_retention_days),
    )


def _hygiene_policy(settings: Settings) -> HygienePolicy:
    from apiward.core.hygiene import HygienePolicy

    return HygienePolicy(
        unused_days=settings.key_unused_disable_days,
        expiry_days=tuple(settings.key_expiry_reminder_days),
        credit_percents=tuple(settings.key_credit_thresholds),
        shared_networks=settings.key_shared_networks,
        shared_countries=settings.key_shared_countries,
        shared_disable=settings.key_shared_disable,
    )
