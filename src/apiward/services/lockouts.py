"""Rate-limit lockouts in the audit log, without letting a flood flood the log.

A credential refused by a rate limit (or its usage credits) gets one audit event per
policy per minute, counted in memory per process: a client hammering at 1,000 requests
a second past its limit writes one row a minute, not 60,000. Failed authentications
from an address have no organisation to be filed under (the credential is unknown), so
their lockout is a warning in the log, deduplicated the same way.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import structlog

from apiward.core.clock import Clock
from apiward.core.errors import ApiwardError, RateLimited, UsageExceeded
from apiward.core.models import Principal
from apiward.core.readings import Reading
from apiward.services.audit import audit_event
from apiward.services.ports import AuditTx, Store

log = structlog.get_logger("apiward.lockouts")


class Lockouts:
    def __init__(
        self,
        store: Store[AuditTx],
        clock: Clock,
        *,
        every: float = 60.0,
        max_tracked: int = 10_000,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._clock = clock
        self._every = every
        self._max = max_tracked
        self._timer = timer
        self._last: dict[tuple[str, str], float] = {}
        self.recorded = 0
        """Lockouts written to the audit log (or logged, for addresses)."""
        self.suppressed = 0
        """Lockouts left out because the same one was recorded less than a minute ago."""

    def readings(self) -> list[Reading]:
        return [
            Reading.counter(
                "lockouts_recorded",
                "Rate-limit lockouts recorded (audit event or log line).",
                self.recorded,
            ),
            Reading.counter(
                "lockouts_suppressed",
                "Lockouts not recorded again within their minute.",
                self.suppressed,
            ),
        ]

    def _due(self, subject: str, policy: str) -> bool:
        now = self._timer()
        key = (subject, policy)
        last = self._last.get(key)
        if last is not None and now - last < self._every:
            self.suppressed += 1
            return False
        if len(self._last) >= self._max:
            # Forget what is past its minute; under a flood of distinct subjects, all.
            self._last = {k: v for k, v in self._last.items() if now - v < self._every}
            if len(self._last) >= self._max:
                self._last.clear()
        self._last[key] = now
        self.recorded += 1
        return True

    async def credential_locked_out(self, principal: Principal, exc: RateLimited) -> None:
        """A credential was refused by ``exc``'s policy: an audit event, once a minute."""
        policy = exc.policy or "rate-limit"
        if not self._due(principal.credential_id, policy):
            return
        ctx = principal.context
        event = audit_event(
            principal,
            "credits.exhausted" if isinstance(exc, UsageExceeded) else "rate_limit.exceeded",
            self._clock.now(),
            target_type=principal.credential_kind.value,
            target_id=principal.credential_id,
            data={
                "policy": policy,
                "retry_after_seconds": max(0, math.ceil(exc.retry_after)),
                "route": ctx.route,
                "method": ctx.method,
            },
        )
        try:
            async with self._store.begin() as tx:
                await tx.insert_audit(event)
        except ApiwardError as error:
            # The 429 is the answer that matters; a lost audit row is only logged.
            log.warning("lockout_audit_failed", error=error.message, policy=policy)

    def address_locked_out(self, ip: str, exc: RateLimited) -> None:
        """Too many failed authentications from ``ip``: a warning, once a minute."""
        policy = exc.policy or "auth-failures"
        if self._due("ip:" + ip, policy):
            log.warning(
                "auth_failures_locked_out",
                ip=ip,
                policy=policy,
                retry_after_seconds=max(0, math.ceil(exc.retry_after)),
            )
