"""The composition root: ``build`` makes every part of the server, complete, from settings.

Both the HTTP app (in its lifespan) and the CLI call ``build`` once; nothing is created
at import time and no part is completed after construction. ``Runtime`` holds the parts
and their lifecycle (``start``, ``stop``); what the parts do lives in the services
(docs/architecture.md, "The composition root").
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING

import httpx

from apiward.adapters import delivery
from apiward.adapters.cache.memory import MemoryCache
from apiward.adapters.geo import Countries
from apiward.adapters.limiter.fallback import FallbackLimiter
from apiward.adapters.limiter.memory import MemoryLimiter
from apiward.adapters.logging import get_logger
from apiward.adapters.mail import LogTransport, Postbox, SmtpTransport, Transport
from apiward.adapters.metrics import Metrics
from apiward.adapters.secret import deployment_secret
from apiward.adapters.settings import Settings
from apiward.adapters.storage import migrate
from apiward.adapters.storage.sql import SqlStore
from apiward.adapters.storage.sql.engine import Listener, create_engine
from apiward.adapters.tracing import (
    TracedAuthenticator,
    TracedLimiter,
    TracedSender,
    TracedStore,
    TracedTransport,
    Tracing,
)
from apiward.adapters.tracing import configure as configure_tracing
from apiward.core.clock import Clock, SystemClock
from apiward.core.crypto import Sealer
from apiward.core.destinations import Destinations
from apiward.core.errors import ApiwardError
from apiward.core.hygiene import HygienePolicy
from apiward.core.keys import KeyFormats
from apiward.core.limits import Policy, parse_rate
from apiward.core.models import LinkPurpose
from apiward.core.passwords import Passwords
from apiward.core.readings import Reports
from apiward.services.analytics import Analytics, Verifications
from apiward.services.audit import AuditLog
from apiward.services.auth import Authenticator
from apiward.services.clients import Clients
from apiward.services.formats import learn_formats
from apiward.services.housekeeping import Housekeeping, Upkeep
from apiward.services.hygiene import Hygiene
from apiward.services.importing import KeyImporter
from apiward.services.invalidations import InvalidationPoller
from apiward.services.keys import Keys
from apiward.services.leaks import LeakFormats, Leaks
from apiward.services.limiting import RequestLimits
from apiward.services.lockouts import Lockouts
from apiward.services.operators import Operators
from apiward.services.portal import Portal, PortalPolicy
from apiward.services.ports import Limiter, Store, Transaction, WebhookSender
from apiward.services.revocations import Revocations
from apiward.services.scheduler import Periodic, Scheduler
from apiward.services.signin import SignIns
from apiward.services.signing import Keyring
from apiward.services.tenancy import Tenancy
from apiward.services.throttle import ActionThrottle, LoginThrottle
from apiward.services.tokens import Tokens, TokenSettings
from apiward.services.usage import UsageRecorder
from apiward.services.webhooks import DeliveryPolicy, Webhooks

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor

log = get_logger("apiward.runtime")


@dataclass(eq=False)
class Runtime:
    """Every part of one server process, built by ``build``; ``start`` and ``stop``."""

    settings: Settings
    clock: Clock
    sql: SqlStore
    store: Store[Transaction]
    cache: MemoryCache
    limiter: Limiter
    passwords: Passwords
    sealer: Sealer
    keyring: Keyring
    revocations: Revocations
    usage: UsageRecorder
    verifications: Verifications
    analytics: Analytics
    audit: AuditLog
    tenancy: Tenancy
    operators: Operators
    keys: Keys
    formats: KeyFormats
    """The current key format and the earlier ones whose keys keep working."""
    importer: KeyImporter
    clients: Clients
    lockouts: Lockouts
    limits: RequestLimits
    auth: Authenticator
    login_throttle: LoginThrottle
    sign_ins: SignIns
    tokens: Tokens
    webhooks: Webhooks
    leaks: Leaks
    postbox: Postbox
    portal: Portal
    invalidations: InvalidationPoller
    housekeeping: Housekeeping
    hygiene: Hygiene
    countries: Countries
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    metrics: Metrics
    scheduler: Scheduler
    http: httpx.AsyncClient
    """The one client webhook deliveries go out through."""
    tracing: Tracing | None
    """The tracer and its provider; None when tracing is off (``adapters/tracing.py``)."""
    listener: Listener | None = field(default=None, repr=False)
    """PostgreSQL's notifications of invalidations (None: SQLite, or not started)."""

    async def start(self, *, background: bool = True) -> None:
        """Migrate when configured, load signing keys and revocations, prime the
        invalidation poller; with ``background`` (the server, not the CLI), listen for
        invalidation notices and start the periodic jobs."""
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
        self.listener = await self.sql.listen(self.scheduler.wake)
        self.scheduler.start()

    async def _migrate(self) -> None:
        """Migrations are not bound by the request paths' statement timeout (a long
        ``ALTER TABLE`` on a large table is not a hung database): on PostgreSQL they run
        on an engine of their own."""
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
        """Stop the jobs, send what is deferred, flush the counters, close every resource."""
        self.countries.close()
        if self.listener is not None:
            await self.listener.stop()
            self.listener = None
        await self.scheduler.stop()
        await self.http.aclose()
        await self.tokens.drain()
        await self.portal.drain()
        await self.postbox.drain()
        for flush in (self.flush_usage, self.flush_analytics):
            try:
                await flush()
            except ApiwardError as exc:
                log.warning("flush_at_stop_failed", job=flush.__name__, error=exc.message)
        await self.limiter.aclose()
        await self.store.close()
        if self.tracing is not None:
            self.tracing.shutdown()

    async def flush_usage(self) -> int:
        """Write the pending "last used" of keys and clients."""
        return await self.usage.flush(self.store)

    async def flush_analytics(self) -> int:
        """Write the pending usage counts."""
        return await self.verifications.flush(self.store)

    async def ping_redis(self) -> bool | None:
        """Whether Redis answers, within ``APIWARD_REDIS_TIMEOUT_SECONDS`` (at once while
        the limiter's circuit is open); None when no Redis is configured."""
        if not isinstance(self.limiter, FallbackLimiter):
            return None
        return await self.limiter.ping()


def build(
    settings: Settings, *, clock: Clock | None = None, span_processor: SpanProcessor | None = None
) -> Runtime:
    """Every part of the server, wired from ``settings``; nothing is connected yet.

    With tracing on, the parts that leave the process (store, Redis, webhooks, mail)
    and the authentication decision are the traced ones of ``adapters/tracing.py``;
    ``span_processor`` replaces the exporter the ``OTEL_*`` variables configure.
    """
    clock = clock or SystemClock()
    tracing = configure_tracing(settings, processor=span_processor)
    tracer = tracing.tracer if tracing else None
    sql = SqlStore.from_url(settings.database_url, timeout=settings.database_timeout_seconds)
    store: Store[Transaction] = sql
    if tracer:
        store = TracedStore(sql, tracer, sql.engine.dialect.name)
    cache = MemoryCache(
        settings.cache_max_entries,
        settings.cache_ttl_seconds,
        max_unknown=settings.cache_max_unknown,
        serve_stale=settings.cache_serve_stale_seconds,
    )
    limiter, table = _limiter(settings)
    limits_on = limiter
    if tracer and settings.redis_url:
        limits_on = TracedLimiter(limiter, tracer)
    passwords = Passwords(settings.password_policy)
    sealer = Sealer(deployment_secret(settings))
    access_ttl = timedelta(seconds=settings.access_token_ttl_seconds)
    keyring = Keyring(store, clock, sealer, settings.token_algorithm, access_ttl)
    revocations = Revocations()
    usage = UsageRecorder()
    verifications = Verifications()
    analytics = Analytics(store, settings.analytics_retention)
    fmt = settings.key_format
    formats = KeyFormats(fmt)  # the earlier ones are learnt at start
    client_formats = formats.view("cs")
    refresh_formats = formats.view("rt")
    imported = tuple(settings.imported_key_prefixes)
    tenancy = Tenancy(
        store,
        cache,
        clock,
        passwords,
        settings.environments,
        tuple(settings.rate_limit_tiers),
        hygiene=_hygiene_policy(settings),
    )
    operators = Operators(store, tenancy)
    keys = Keys(store, cache, clock, fmt, tuple(v.id for v in settings.api_versions))
    lockouts = Lockouts(store, clock)
    failures, period = parse_rate(settings.auth_failure_limit)
    limits = RequestLimits(
        limits_on,
        settings.rate_plans(),
        store,
        clock,
        auth_failures=Policy("auth-failures", failures, period, "ip"),
        lockouts=lockouts,
        credits_low=settings.credits_low_threshold,
    )
    auth = (partial(TracedAuthenticator, tracer) if tracer else Authenticator)(
        store,
        cache,
        clock,
        formats,
        usage,
        verifications,
        limits,
        keyring,
        revocations,
        issuer=settings.token_issuer,
        audience=settings.token_audience,
        space_header=settings.space_header,
        require_space=settings.require_space_header,
        default_version=settings.current_version.id,
        imported_prefixes=imported,
    )
    login_throttle = _login_throttle(settings, limits_on)
    sign_ins = SignIns(store, clock, passwords, login_throttle)
    tokens = Tokens(
        store,
        cache,
        clock,
        keyring,
        sealer,
        sign_ins,
        revocations,
        usage,
        refresh_formats,
        TokenSettings(
            issuer=settings.token_issuer,
            audience=settings.token_audience,
            access_ttl=access_ttl,
            refresh_ttl=timedelta(seconds=settings.refresh_token_ttl_seconds),
            grace=timedelta(seconds=settings.refresh_grace_seconds),
            default_environment=settings.environments[0],
            retry=timedelta(seconds=settings.refresh_retry_seconds),
        ),
        verifications,
        auth.acts,
        limits.authentication_failed,
    )
    clients = Clients(store, cache, clock, client_formats.current, tokens.revoke_client_tokens)
    http = delivery.client(settings.webhook_timeout_seconds)
    destinations = Destinations.parse(settings.webhook_allowed_networks)
    sender: WebhookSender = delivery.HttpxSender(http, destinations)
    if tracer:
        sender = TracedSender(sender, tracer)
    webhooks = Webhooks(
        store,
        clock,
        sealer,
        settings.environments,
        sender,
        DeliveryPolicy(
            max_attempts=settings.webhook_max_attempts,
            retry_base=settings.webhook_retry_base_seconds,
            timeout=settings.webhook_timeout_seconds,
        ),
        destinations,
    )
    leaks = Leaks(
        store,
        clock,
        keys,
        clients,
        tokens,
        operators.principal,
        LeakFormats(formats, client_formats, refresh_formats, imported_prefixes=imported),
        settings.leak_report_public_keys,
    )
    transport = _mail_transport(settings)
    if tracer:
        transport = TracedTransport(transport, tracer)
    postbox = Postbox(transport, platform=settings.platform_name, sender=settings.mail_from)
    portal = Portal(
        store,
        clock,
        passwords,
        tenancy,
        tokens,
        ActionThrottle(
            limits_on,
            Policy.parse("portal-email", settings.portal_email_limit, key="user"),
            Policy.parse("portal-ip", settings.portal_ip_limit, key="ip"),
        ),
        postbox,
        _portal_policy(settings),
        sign_ins,
    )
    invalidations = InvalidationPoller(store, clock, cache, revocations, keyring)
    housekeeping = Housekeeping(store, clock, keyring, analytics, _upkeep(settings))
    hygiene = Hygiene(store, clock, cache, postbox, _hygiene_policy(settings))
    sources: list[Reports] = [cache, limits]
    if isinstance(limiter, FallbackLimiter):
        sources.append(limiter)
    sources.append(table)  # the in-process table, in use or in reserve
    sources += [sql, webhooks, leaks, lockouts, invalidations, hygiene]
    scheduler = Scheduler(
        [
            Periodic("webhooks", settings.webhook_poll_seconds, webhooks.run_once),
            Periodic("housekeeping", 60.0, housekeeping.run),
            Periodic("hygiene", settings.key_hygiene_seconds, hygiene.run),
            Periodic("usage", settings.last_used_flush_seconds, lambda: usage.flush(store)),
            Periodic(
                "analytics", settings.analytics_flush_seconds, lambda: verifications.flush(store)
            ),
            Periodic(
                "invalidations",
                settings.invalidation_poll_seconds,
                invalidations.poll,
                wakeable=True,
            ),
        ]
    )
    return Runtime(
        settings=settings,
        clock=clock,
        sql=sql,
        store=store,
        cache=cache,
        limiter=limiter,
        passwords=passwords,
        sealer=sealer,
        keyring=keyring,
        revocations=revocations,
        usage=usage,
        verifications=verifications,
        analytics=analytics,
        audit=AuditLog(store),
        tenancy=tenancy,
        operators=operators,
        keys=keys,
        formats=formats,
        importer=KeyImporter(store, cache, clock, fmt, imported_prefixes=imported),
        clients=clients,
        lockouts=lockouts,
        limits=limits,
        auth=auth,
        login_throttle=login_throttle,
        sign_ins=sign_ins,
        tokens=tokens,
        webhooks=webhooks,
        leaks=leaks,
        postbox=postbox,
        portal=portal,
        invalidations=invalidations,
        housekeeping=housekeeping,
        hygiene=hygiene,
        countries=Countries(settings.country_header, settings.geoip_database),
        trusted_proxies=tuple(
            ipaddress.ip_network(cidr, strict=False) for cidr in settings.trusted_proxies
        ),
        metrics=Metrics(sources),
        scheduler=scheduler,
        http=http,
        tracing=tracing,
    )


def _limiter(settings: Settings) -> tuple[Limiter, MemoryLimiter]:
    """In-process limits by default; exact across processes with Redis. Also the
    in-process table, in use or in reserve (its metrics)."""
    local = MemoryLimiter(max_keys=settings.rate_limit_max_keys)
    if not settings.redis_url:
        return local, local
    from apiward.adapters.limiter.redis import RedisLimiter  # redis loads only when used
    from apiward.adapters.limiter.redis import connect as connect_redis

    timeout = settings.redis_timeout_seconds
    fallback = FallbackLimiter(
        RedisLimiter(
            connect_redis(settings.redis_url, timeout=timeout), prefix="apiward:", timeout=timeout
        ),
        local,
        mode=settings.rate_limit_failure_mode,
    )
    return fallback, local


def _login_throttle(settings: Settings, limiter: Limiter) -> LoginThrottle:
    """One throttle for every password sign-in: the token endpoint and the dashboard."""
    window = settings.login_failure_window_seconds
    return LoginThrottle(
        limiter,
        Policy("login-user", settings.login_max_failures, window, "user"),
        Policy("login-ip", settings.login_ip_max_failures, window, "ip"),
    )


def _mail_transport(settings: Settings) -> Transport:
    """SMTP when a host is configured; else the log (the embedded default)."""
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
    return HygienePolicy(
        unused_days=settings.key_unused_disable_days,
        expiry_days=tuple(settings.key_expiry_reminder_days),
        credit_percents=tuple(settings.key_credit_thresholds),
    )
