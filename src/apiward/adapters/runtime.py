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
from datetime import timedelta

from apiward.adapters.cache.memory import MemoryCache
from apiward.adapters.limiter.fallback import FallbackLimiter
from apiward.adapters.limiter.memory import MemoryLimiter
from apiward.adapters.limiter.redis import RedisLimiter
from apiward.adapters.limiter.redis import connect as connect_redis
from apiward.adapters.logging import get_logger
from apiward.adapters.settings import Settings
from apiward.adapters.storage import migrate
from apiward.adapters.storage.sql import SqlStore
from apiward.core.clock import Clock, SystemClock
from apiward.core.crypto import Sealer
from apiward.core.errors import ApiwardError, InvalidInput, NotFound
from apiward.core.limits import Policy, parse_rate
from apiward.core.models import (
    CredentialKind,
    Organisation,
    PageRequest,
    Principal,
    RequestContext,
)
from apiward.core.passwords import Passwords
from apiward.core.roles import OWNER
from apiward.core.scopes import ScopeSet
from apiward.services.audit import AuditLog
from apiward.services.auth import Authenticator, UsageRecorder
from apiward.services.clients import Clients
from apiward.services.keys import Keys
from apiward.services.limiting import RequestLimits
from apiward.services.ports import Limiter, Store
from apiward.services.signing import Keyring
from apiward.services.tenancy import Tenancy
from apiward.services.throttle import LoginThrottle
from apiward.services.tokens import Revocations, Tokens, TokenSettings

log = get_logger("apiward.runtime")

INVALIDATION_WINDOW = timedelta(seconds=30)


class Runtime:
    def __init__(self, settings: Settings, *, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.sql = SqlStore.from_url(settings.database_url)
        self.store: Store = self.sql
        self.cache = MemoryCache(settings.cache_max_entries, settings.cache_ttl_seconds)
        self.passwords = Passwords(settings.password_policy)
        self.usage = UsageRecorder()
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
            space_header=settings.space_header,
            default_version=settings.current_version.id,
        )
        self.limiter = self._limiter(settings)
        limit, period = parse_rate(settings.auth_failure_limit)
        self.limits = RequestLimits(
            self.limiter,
            settings.rate_plans(),
            self.store,
            self.clock,
            auth_failures=Policy("auth-failures", limit, period, "ip"),
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
        self.tokens = Tokens(
            self.store,
            self.cache,
            self.clock,
            self.keyring,
            self.sealer,
            self.tenancy,
            self.passwords,
            LoginThrottle(
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
            ),
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
        self._tasks: list[asyncio.Task[None]] = []
        self._wakeup = asyncio.Event()
        self._stop_listening: Callable[[], Awaitable[None]] | None = None
        self._seen: set[int] = set()
        self._primed = False

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
            self._stop_listening = await self.sql.listen(self._wake)
            self._tasks = [
                asyncio.create_task(self._every(60.0, self.housekeeping)),
                asyncio.create_task(
                    self._every(self.settings.last_used_flush_seconds, self.flush_usage)
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
        if self._stop_listening is not None:
            await self._stop_listening()
            self._stop_listening = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.tokens.drain()
        with contextlib.suppress(ApiwardError):
            await self.flush_usage()
        await self.limiter.aclose()
        await self.store.close()

    async def _every(
        self, seconds: float, job: Callable[[], Awaitable[object]], *, wake: bool = False
    ) -> None:
        while True:
            if wake:
                # A notification (PostgreSQL) ends the wait early; the interval stays as
                # the safety net for a lost one.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), seconds)
                self._wakeup.clear()
            else:
                await asyncio.sleep(seconds)
            try:
                await job()
            except ApiwardError as exc:
                log.warning("background_job_failed", job=job.__name__, error=exc.message)

    async def flush_usage(self) -> int:
        return await self.usage.flush(self.store)

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
            scopes=ScopeSet(["*"]),
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
