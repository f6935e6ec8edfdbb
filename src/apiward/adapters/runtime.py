"""Wiring: builds the store, cache and services from settings, and runs the background work.

Both the HTTP app (in its lifespan) and the CLI build one ``Runtime``; nothing is created
at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta

import httpx

from apiward.adapters import delivery
from apiward.adapters.cache.memory import MemoryCache
from apiward.adapters.geo import Countries
from apiward.adapters.limiter.fallback import FallbackLimiter
from apiward.adapters.limiter.memory import MemoryLimiter
from apiward.adapters.limiter.redis import RedisLimiter
from apiward.adapters.limiter.redis import connect as connect_redis
from apiward.adapters.logging import get_logger
from apiward.adapters.mail import LogTransport, Postbox, SmtpTransport, Transport
from apiward.adapters.metrics import Metrics
from apiward.adapters.settings import Settings
from apiward.adapters.storage import migrate
from apiward.adapters.storage.sql import SqlStore
from apiward.core.authority import EVERYTHING
from apiward.core.clock import Clock, SystemClock
from apiward.core.crypto import Sealer
from apiward.core.destinations import Destinations
from apiward.core.errors import ApiwardError, InvalidInput, NotFound
from apiward.core.limits import Policy, parse_rate
from apiward.core.models import (
    CredentialKind,
    LinkPurpose,
    Organisation,
    PageRequest,
    Principal,
    RequestContext,
)
from apiward.core.passwords import Passwords
from apiward.core.roles import OWNER
from apiward.services.analytics import Analytics, Verifications
from apiward.services.audit import AuditLog
from apiward.services.auth import Authenticator
from apiward.services.clients import Clients
from apiward.services.importing import KeyImporter
from apiward.services.keys import Keys
from apiward.services.leaks import LeakFormats, Leaks
from apiward.services.limiting import RequestLimits
from apiward.services.lockouts import Lockouts
from apiward.services.portal import Portal, PortalPolicy
from apiward.services.ports import Limiter, Store
from apiward.services.revocations import Revocations
from apiward.services.signin import SignIns
from apiward.services.signing import Keyring
from apiward.services.tenancy import Tenancy
from apiward.services.throttle import ActionThrottle, LoginThrottle
from apiward.services.tokens import Tokens, TokenSettings
from apiward.services.usage import UsageRecorder
from apiward.services.webhooks import DeliveryPolicy, Webhooks

log = get_logger("apiward.runtime")

INVALIDATION_WINDOW = timedelta(seconds=30)
STOP_GRACE_SECONDS = 5.0


class Runtime:
    def __init__(self, settings: Settings, *, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.sql = SqlStore.from_url(settings.database_url)
        self.store: Store = self.sql
        self.cache = MemoryCache(settings.cache_max_entries, settings.cache_ttl_seconds)
        self.passwords = Passwords(settings.password_policy)
        self.usage = UsageRecorder()
        self.verifications = Verifications()
        self.analytics = Analytics(self.store, settings.analytics_retention)
        fmt = settings.key_format
        self.tenancy = Tenancy(
            self.store,
            self.cache,
            self.clock,
            self.passwords,
            settings.environments,
            tuple(settings.rate_limit_tiers),
        )
        self.keys = Keys(
            self.store, self.cache, self.clock, fmt, tuple(v.id for v in settings.api_versions)
        )
        self.audit = AuditLog(self.store)
        self.auth = Authenticator(
            self.store,
            self.cache,
            self.clock,
            fmt,
            self.tenancy,
            self.usage,
            self.verifications,
            space_header=settings.space_header,
            require_space=settings.require_space_header,
            default_version=settings.current_version.id,
            imported_prefixes=tuple(settings.imported_key_prefixes),
        )
        self.importer = KeyImporter(
            self.store,
            self.cache,
            self.clock,
            fmt,
            imported_prefixes=tuple(settings.imported_key_prefixes),
        )
        self.limiter = self._limiter(settings)
        limit, period = parse_rate(settings.auth_failure_limit)
        self.lockouts = Lockouts(self.store, self.clock)
        self.limits = RequestLimits(
            self.limiter,
            settings.rate_plans(),
            self.store,
            self.clock,
            auth_failures=Policy("auth-failures", limit, period, "ip"),
            lockouts=self.lockouts,
            credits_low=settings.credits_low_threshold,
        )
        self.auth.limit_with(self.limits)
        access_ttl = timedelta(seconds=settings.access_token_ttl_seconds)
        self.sealer = Sealer(settings.secret_bytes())
        self.keyring = Keyring(
            self.store, self.clock, self.sealer, settings.token_algorithm, access_ttl
        )
        self.clients = Clients(
            self.store, self.cache, self.clock, replace(fmt, prefix=fmt.prefix + "cs")
        )
        # One throttle for every password sign-in: the token endpoint and the dashboard.
        self.login_throttle = LoginThrottle(
            self.limiter,
            Policy(
                "login-user",
                settings.login_max_failures,
                settings.login_failure_window_seconds,
                "user",
            ),
            Policy(
                "login-ip",
                settings.login_ip_max_failures,
                settings.login_failure_window_seconds,
                "ip",
            ),
        )
        self.sign_ins = SignIns(self.store, self.clock, self.passwords, self.login_throttle)
        self.tokens = Tokens(
            self.store,
            self.cache,
            self.clock,
            self.keyring,
            self.sealer,
            self.sign_ins,
            Revocations(),
            self.usage,
            replace(fmt, prefix=fmt.prefix + "rt"),
            TokenSettings(
                issuer=settings.token_issuer,
                audience=settings.token_audience,
                access_ttl=access_ttl,
                refresh_ttl=timedelta(seconds=settings.refresh_token_ttl_seconds),
                grace=timedelta(seconds=settings.refresh_grace_seconds),
                default_environment=settings.environments[0],
            ),
            self.verifications,
        )
        self.auth.accept_tokens(
            self.keyring,
            self.tokens.revocations,
            issuer=settings.token_issuer,
            audience=settings.token_audience,
        )
        self.trusted_proxies = tuple(
            ipaddress.ip_network(cidr, strict=False) for cidr in settings.trusted_proxies
        )
        self.countries = Countries(settings.country_header, settings.geoip_database)
        self.webhooks = Webhooks(
            self.store,
            self.clock,
            self.sealer,
            settings.environments,
            DeliveryPolicy(
                max_attempts=settings.webhook_max_attempts,
                retry_base=settings.webhook_retry_base_seconds,
                timeout=settings.webhook_timeout_seconds,
            ),
            Destinations.parse(settings.webhook_allowed_networks),
        )
        self.leaks = Leaks(
            self.store,
            self.clock,
            self.keys,
            self.clients,
            self.tokens,
            self.operator,
            LeakFormats(
                key=fmt,
                client=replace(fmt, prefix=fmt.prefix + "cs"),
                refresh=replace(fmt, prefix=fmt.prefix + "rt"),
                imported_prefixes=tuple(settings.imported_key_prefixes),
            ),
            settings.leak_report_public_keys,
        )
        self.postbox = Postbox(
            self._mail_transport(settings),
            platform=settings.platform_name,
            sender=settings.mail_from,
        )
        base = settings.base_url + "/dashboard"
        self.portal = Portal(
            self.store,
            self.clock,
            self.passwords,
            self.tenancy,
            self.tokens,
            ActionThrottle(
                self.limiter,
                Policy.parse("portal-email", settings.portal_email_limit, key="user"),
                Policy.parse("portal-ip", settings.portal_ip_limit, key="ip"),
            ),
            self.postbox,
            PortalPolicy(
                links={
                    LinkPurpose.CONFIRM: base + "/confirm",
                    LinkPurpose.RESET: base + "/reset",
                    LinkPurpose.INVITE: base + "/invitations/accept",
                },
                sign_in_url=base + "/login",
                forgot_url=base + "/forgot",
                link_prefix=fmt.prefix + "el",
                signup_enabled=settings.signup_enabled,
                signup_domains=tuple(settings.signup_email_domains),
                confirm_ttl=timedelta(seconds=settings.confirm_link_ttl_seconds),
                reset_ttl=timedelta(seconds=settings.reset_link_ttl_seconds),
                invite_ttl=timedelta(seconds=settings.invite_link_ttl_seconds),
                projects_per_account=settings.projects_per_account,
            ),
            self.sign_ins,
        )
        self.metrics = Metrics(self)
        self._http: httpx.AsyncClient | None = None
        self._retention_at: datetime | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._busy: set[asyncio.Task[object]] = set()
        self._closing = False
        self._wakeup = asyncio.Event()
        self._stop_listening: Callable[[], Awaitable[None]] | None = None
        self._seen: set[int] = set()
        self._primed = False

    @staticmethod
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

    @staticmethod
    def _limiter(settings: Settings) -> Limiter:
        """In-process limits by default; exact across processes with Redis."""
        if not settings.redis_url:
            return MemoryLimiter()
        return FallbackLimiter(
            RedisLimiter(connect_redis(settings.redis_url), prefix="apiward:"),
            MemoryLimiter(),
            mode=settings.rate_limit_failure_mode,
        )

    async def ping_redis(self) -> bool | None:
        """Whether Redis answers; None when no Redis is configured."""
        if not isinstance(self.limiter, FallbackLimiter):
            return None
        primary = self.limiter.primary
        assert isinstance(primary, RedisLimiter)
        try:
            await primary.ping()
        except ApiwardError:
            return False
        return True

    async def start(self, *, background: bool = True) -> None:
        if self.settings.migrate_on_start:
            await migrate.upgrade(self.sql.engine)
        await self.keyring.load()
        await self.tokens.load_revocations()
        await self.poll_invalidations()
        if background:
            if isinstance(self.postbox.transport, LogTransport):
                log.warning(
                    "smtp_not_configured",
                    note="Emails (confirmations, invitations, password resets) are written "
                    "to this log, links included. Set APIWARD_SMTP_HOST to send them.",
                )
            self._stop_listening = await self.sql.listen(self._wake)
            self._http = delivery.client(self.settings.webhook_timeout_seconds)
            self.webhooks.sender = delivery.HttpxSender(self._http, self.webhooks.destinations)
            self._tasks = [
                asyncio.create_task(
                    self._every(self.settings.webhook_poll_seconds, self.webhooks.run_once)
                ),
                asyncio.create_task(self._every(60.0, self.housekeeping)),
                asyncio.create_task(
                    self._every(self.settings.last_used_flush_seconds, self.flush_usage)
                ),
                asyncio.create_task(
                    self._every(self.settings.analytics_flush_seconds, self.flush_analytics)
                ),
                asyncio.create_task(
                    self._every(
                        self.settings.invalidation_poll_seconds,
                        self.poll_invalidations,
                        wake=True,
                    )
                ),
            ]

    def _wake(self) -> None:
        self._wakeup.set()

    async def stop(self) -> None:
        self.countries.close()
        if self._stop_listening is not None:
            await self._stop_listening()
            self._stop_listening = None
        # A task cancelled inside a transaction can leave it open (and SQLite's write
        # lock held for the busy timeout): idle tasks are cancelled at once, a running
        # job gets a moment to finish first.
        self._closing = True
        busy = [task for task in self._tasks if task in self._busy]
        for task in self._tasks:
            if task not in self._busy:
                task.cancel()
        if busy:
            await asyncio.wait(busy, timeout=STOP_GRACE_SECONDS)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._http is not None:
            self.webhooks.sender = None
            await self._http.aclose()
            self._http = None
        await self.tokens.drain()
        await self.portal.drain()
        await self.postbox.drain()
        with contextlib.suppress(ApiwardError):
            await self.flush_usage()
        with contextlib.suppress(ApiwardError):
            await self.flush_analytics()
        await self.limiter.aclose()
        await self.store.close()

    async def _every(
        self, seconds: float, job: Callable[[], Awaitable[object]], *, wake: bool = False
    ) -> None:
        while not self._closing:
            if wake:
                # A notification (PostgreSQL) ends the wait early; the interval stays as
                # the safety net for a lost one.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), seconds)
                self._wakeup.clear()
            else:
                await asyncio.sleep(seconds)
            if self._closing:
                return
            current = asyncio.current_task()
            assert current is not None
            self._busy.add(current)
            try:
                await job()
            except ApiwardError as exc:
                log.warning("background_job_failed", job=job.__name__, error=exc.message)
            finally:
                self._busy.discard(current)

    async def flush_usage(self) -> int:
        return await self.usage.flush(self.store)

    async def flush_analytics(self) -> int:
        return await self.verifications.flush(self.store)

    async def poll_invalidations(self) -> int:
        """Apply invalidations written by any process (this one included) since the last poll.

        Rows are read by time window, not by "sequence greater than the last seen":
        PostgreSQL sequence values can commit out of order, and a row committed late
        with a smaller number would otherwise be skipped.
        """
        now = self.clock.now()
        async with self.store.begin() as tx:
            rows = await tx.invalidations_since(now - INVALIDATION_WINDOW)
            if now.second == 0:
                await tx.prune_invalidations(now - INVALIDATION_WINDOW * 4)
        fresh = [row for row in rows if row.seq not in self._seen]
        self._seen = {row.seq for row in rows}
        if not self._primed:
            # Everything already in the log predates this process's cache.
            self._primed = True
            return 0
        kinds = {row.kind for row in fresh}
        for row in fresh:
            if row.kind == "key":
                self.cache.invalidate(row.target)
            elif row.kind == "revocation":
                kind, _, value = row.target.partition(":")
                self.tokens.revocations.add(kind, value)
            elif row.kind == "org":
                self.cache.clear()
        if "signing" in kinds:
            await self.keyring.load()
        return len(fresh)

    async def housekeeping(self) -> None:
        """Rotate the signing key when due; wipe expired refresh tokens and old answers."""
        days = self.settings.signing_key_rotation_days
        if days:
            await self.keyring.rotate_if_due(timedelta(days=days))
        now = self.clock.now()
        async with self.store.begin() as tx:
            await tx.prune_refresh(
                now - timedelta(days=1),
                now - timedelta(seconds=self.settings.refresh_grace_seconds),
            )
            await tx.prune_links(now - timedelta(days=30))
        await self.enforce_retention()

    async def enforce_retention(self, *, force: bool = False) -> tuple[int, int]:
        """Delete audit events past ``APIWARD_AUDIT_RETENTION_DAYS`` (0: keep all) and
        finished webhook deliveries past ``APIWARD_WEBHOOK_RETENTION_DAYS``, at most
        once an hour unless ``force``; the numbers deleted."""
        now = self.clock.now()
        if not force and self._retention_at and now - self._retention_at < timedelta(hours=1):
            return 0, 0
        self._retention_at = now
        audit = 0
        async with self.store.begin() as tx:
            days = self.settings.audit_retention_days
            if days:
                audit = await tx.prune_audit(now - timedelta(days=days))
            deliveries = await tx.prune_deliveries(
                now - timedelta(days=self.settings.webhook_retention_days)
            )
        counts = await self.analytics.prune(now)
        if audit or deliveries or counts:
            log.info(
                "retention_enforced",
                audit_events=audit,
                webhook_deliveries=deliveries,
                verification_counts=counts,
            )
        return audit, deliveries

    async def operator(self, org_id: str | None = None, environment: str = "live") -> Principal:
        """The principal the CLI acts as: the org's first owner, with every scope."""
        org = await self.resolve_org(org_id)
        async with self.store.begin() as tx:
            space = await tx.default_space(org.id)
            users = await tx.list_users(org.id, _all_page())
            owner = None
            for user in users.items:
                memberships = await tx.list_memberships(org.id, user.id)
                if user.disabled_at is None and any(
                    m.role == OWNER and m.space_id is None for m in memberships
                ):
                    owner = user
                    break
        if owner is None or space is None:
            raise NotFound("owner of organisation", org.id)
        return Principal(
            org_id=org.id,
            environment=environment,
            space_id=space.id,
            user_id=owner.id,
            scopes=EVERYTHING,
            credential_id="cli",
            credential_kind=CredentialKind.OPERATOR,
            context=RequestContext(user_agent="apiward-cli"),
        )

    async def resolve_org(self, org_id: str | None) -> Organisation:
        orgs = await self.tenancy.list_orgs()
        if org_id:
            for org in orgs:
                if org_id in (org.id, org.name):
                    return org
            raise NotFound("organisation", org_id)
        if not orgs:
            raise NotFound("organisation", "(none yet: run 'apiward init')")
        if len(orgs) > 1:
            raise InvalidInput(
                "This instance has several organisations; choose one with --org: "
                + ", ".join(f"{o.name} ({o.id})" for o in orgs)
            )
        return orgs[0]


def _all_page() -> PageRequest:
    return PageRequest(page=1, page_size=1000)
