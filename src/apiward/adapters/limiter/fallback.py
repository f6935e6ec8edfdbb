"""Redis with a way out: what the limiter does while Redis is unreachable.

``open``: decide with the local in-process limiter (each process then enforces the
limits alone, so N processes admit up to N times a limit), log a warning once per
outage and count the degraded decisions. ``closed``: raise ``ServiceUnavailable``
(a 503 at the edge) with a message saying why.

An outage opens a circuit: for ``probe_interval`` seconds no request waits on Redis;
then one request probes it, and the first success closes the circuit again.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal, TypeVar

from apiward.adapters.logging import get_logger
from apiward.core.errors import ServiceUnavailable
from apiward.core.limits import Decision, Hit
from apiward.core.readings import Reading
from apiward.services.ports import Limiter

FailureMode = Literal["open", "closed"]
T = TypeVar("T")

log = get_logger("apiward.limiter")

CLOSED_MESSAGE = (
    "Rate limiting is unavailable because Redis cannot be reached, and this server is "
    "set to fail closed. Retry shortly."
)


class FallbackLimiter:
    """A primary limiter (Redis) backed by a local one (memory) during outages."""

    def __init__(
        self,
        primary: Limiter,
        local: Limiter,
        *,
        mode: FailureMode = "open",
        probe_interval: float = 1.0,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if mode not in ("open", "closed"):
            raise ValueError(f"Invalid failure mode {mode!r}: use 'open' or 'closed'.")
        self.primary = primary
        self.local = local
        self.mode: FailureMode = mode
        self.probe_interval = probe_interval
        self._timer = timer
        self._down_since: float | None = None
        self._probe_at = 0.0
        self.outages = 0
        """Times Redis was found unreachable after working (or at start)."""
        self.degraded_decisions = 0
        """Decisions taken by the local limiter (open) or refused (closed) in outages."""

    @property
    def degraded(self) -> bool:
        """True while Redis is considered down."""
        return self._down_since is not None

    def readings(self) -> list[Reading]:
        return [
            Reading.counter(
                "redis_degraded_decisions",
                "Rate-limit decisions taken locally (open) or refused (closed) while "
                "Redis was unreachable.",
                self.degraded_decisions,
            ),
            Reading.counter("redis_outages", "Times Redis was found unreachable.", self.outages),
            Reading.gauge("redis_degraded", "1 while Redis is unreachable.", int(self.degraded)),
        ]

    async def hit(self, key: str, limit: int, period: float, cost: int = 1) -> Decision:
        return await self._call(lambda lim: lim.hit(key, limit, period, cost))

    async def hit_all(self, hits: Sequence[Hit]) -> list[Decision]:
        return await self._call(lambda lim: lim.hit_all(hits))

    async def peek(self, key: str, limit: int, period: float, cost: int = 1) -> Decision:
        return await self._call(lambda lim: lim.peek(key, limit, period, cost))

    async def reset(self, key: str) -> None:
        await self.local.reset(key)
        await self._call(lambda lim: lim.reset(key))

    async def refund(self, hits: Sequence[Hit]) -> None:
        await self._call(lambda lim: lim.refund(hits))

    async def aclose(self) -> None:
        try:
            await self.primary.aclose()
        finally:
            await self.local.aclose()

    async def _call(self, op: Callable[[Limiter], Awaitable[T]]) -> T:
        if self._down_since is not None:
            now = self._timer()
            if now < self._probe_at:
                return await self._degraded(op, None)
            # This request probes; the others keep the fallback until it answers.
            self._probe_at = now + self.probe_interval
        try:
            result = await op(self.primary)
        except ServiceUnavailable as exc:
            self._went_down(exc)
            return await self._degraded(op, exc)
        if self._down_since is not None:
            self._came_back()
        return result

    async def _degraded(
        self, op: Callable[[Limiter], Awaitable[T]], cause: ServiceUnavailable | None
    ) -> T:
        self.degraded_decisions += 1
        if self.mode == "closed":
            raise ServiceUnavailable(CLOSED_MESSAGE) from cause
        return await op(self.local)

    def _went_down(self, exc: ServiceUnavailable) -> None:
        now = self._timer()
        self._probe_at = now + self.probe_interval
        if self._down_since is None:
            self._down_since = now
            self.outages += 1
            log.warning(
                "rate_limiter_degraded",
                mode=self.mode,
                error=exc.message,
                fallback="local in-process limits" if self.mode == "open" else "503",
            )

    def _came_back(self) -> None:
        down_for = self._timer() - (self._down_since or 0.0)
        self._down_since = None
        log.info(
            "rate_limiter_recovered",
            down_seconds=round(down_for, 3),
            degraded_decisions=self.degraded_decisions,
        )
