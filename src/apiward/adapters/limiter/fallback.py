"""Redis with a way out: what the limiter does while Redis is unreachable or hung.

``open``: decide with the local in-process limiter (each process then enforces the
limits alone, so N processes admit up to N times a limit), log a warning once per
outage and count the degraded decisions. ``closed``: raise ``ServiceUnavailable``
(a 503 at the edge) with a message saying why.

A circuit breaker spares requests a hung Redis. A call to Redis waits at most the
Redis limiter's timeout (``APIWARD_REDIS_TIMEOUT_SECONDS``, 0.5 s); the requests in
flight when Redis fails pay that at most, and the first failure opens the circuit:
from then on every request decides at once (locally, or 503), and no request touches
Redis. A background task probes it with a ping, ``probe_interval`` after the failure,
then doubling up to ``probe_max_interval``; the first ping answered closes the circuit.

Fail-open is bounded, for GCRA limits, by carrying each key's state across a switch
(``MemoryLimiter.adopt`` and ``floors``): every Redis decision leaves its TAT in the
local table, so the fallback starts where Redis left off; every call to Redis passes
the local TAT as a floor, which Redis takes where it holds nothing for the key (it
restarted or was flushed), and, for the keys decided locally during an outage, whatever
it holds (it missed those hits). One process thus admits at most what one GCRA limiter
would, ``limit + W / interval`` over any window of length W, through any number of
switches and restarts (the README's "Failure behaviour" states the bound and its
exceptions; the window algorithms carry no state across).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal, Protocol

from apiward.adapters.limiter.memory import MemoryLimiter
from apiward.adapters.logging import get_logger
from apiward.core.errors import ServiceUnavailable
from apiward.core.limits import Decision, Floor, Hit, bounded_hits
from apiward.core.readings import Reading
from apiward.services.ports import Limiter

FailureMode = Literal["open", "closed"]

log = get_logger("apiward.limiter")

CLOSED_MESSAGE = (
    "Rate limiting is unavailable because Redis cannot be reached, and this server is "
    "set to fail closed. Retry shortly."
)


class Primary(Limiter, Protocol):
    """The shared limiter behind the fallback: ``RedisLimiter`` satisfies it."""

    async def decide(
        self,
        hits: Sequence[Hit],
        floors: Sequence[Floor],
        *,
        store: bool,
        enforced: int | None = None,
    ) -> list[Decision]:
        """``hit_all`` (``store``) or a peek, each GCRA key raised to its floor; the
        hits past the first ``enforced`` in report mode (``Limiter.hit_all``)."""
        ...

    async def ping(self) -> None:
        """Raise ``ServiceUnavailable`` unless the limiter answers, within its bound."""
        ...


class FallbackLimiter:
    """A primary limiter (Redis) backed by the local one (memory) during outages, which
    also mirrors the primary's GCRA state."""

    def __init__(
        self,
        primary: Primary,
        local: MemoryLimiter,
        *,
        mode: FailureMode = "open",
        probe_interval: float = 0.25,
        probe_max_interval: float = 4.0,
    ) -> None:
        if mode not in ("open", "closed"):
            raise ValueError(f"Invalid failure mode {mode!r}: use 'open' or 'closed'.")
        self.primary = primary
        self.local = local
        self.mode: FailureMode = mode
        self.probe_interval = probe_interval
        self.probe_max_interval = max(probe_interval, probe_max_interval)
        self._down_since: float | None = None
        self._prober: asyncio.Task[None] | None = None
        self._missed: set[str] = set()
        """Keys decided locally during an outage, not yet decided by Redis since: their
        local TAT is a floor for Redis whatever it holds."""
        self.outages = 0
        """Times Redis was found unreachable after working (or at start)."""
        self.degraded_decisions = 0
        """Decisions taken by the local limiter (open) or refused (closed) in outages."""
        self.failed_calls = 0
        """Calls to Redis that failed, each costing its request up to the bound."""

    @property
    def degraded(self) -> bool:
        """True while Redis is considered down (the circuit is open)."""
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
            Reading.counter(
                "redis_failed_calls",
                "Calls to Redis that failed or timed out (APIWARD_REDIS_TIMEOUT_SECONDS), "
                "each costing its request up to that bound; none is made while the "
                "circuit is open.",
                self.failed_calls,
            ),
            Reading.gauge("redis_degraded", "1 while Redis is unreachable.", int(self.degraded)),
        ]

    async def hit(self, key: str, limit: int, period: float, cost: int = 1) -> Decision:
        return (await self._decide([Hit(key, limit, period, cost)], store=True))[0]

    async def hit_all(self, hits: Sequence[Hit], report: Sequence[Hit] = ()) -> list[Decision]:
        if report:
            return await self._decide([*hits, *report], store=True, enforced=len(hits))
        return await self._decide(hits, store=True)

    async def peek(self, key: str, limit: int, period: float, cost: int = 1) -> Decision:
        return (await self._decide([Hit(key, limit, period, cost)], store=False))[0]

    async def reset(self, key: str) -> None:
        await self.local.reset(key)
        await self._call(lambda lim: lim.reset(key))

    async def refund(self, hits: Sequence[Hit]) -> None:
        await self._call(lambda lim: lim.refund(hits), mirror=True)

    async def ping(self) -> bool:
        """Whether Redis answers, for readiness: False at once while the circuit is open
        (the background probe asks), else one ping within the bound, whose failure
        opens the circuit."""
        if self._down_since is not None:
            return False
        try:
            await self.primary.ping()
        except ServiceUnavailable as exc:
            self._went_down(exc)
            return False
        return True

    async def probe(self) -> bool:
        """Ping Redis once; close the circuit when it answers. Whether it answered."""
        try:
            await self.primary.ping()
        except ServiceUnavailable:
            return False
        if self._down_since is not None:
            self._came_back()
        return True

    async def aclose(self) -> None:
        prober, self._prober = self._prober, None
        if prober is not None:
            prober.cancel()
            await asyncio.gather(prober, return_exceptions=True)
        try:
            await self.primary.aclose()
        finally:
            await self.local.aclose()

    async def _decide(
        self, hits: Sequence[Hit], *, store: bool, enforced: int | None = None
    ) -> list[Decision]:
        # Each limiter bounds the keys it is given; the mirror is read and written with
        # the keys bounded as the local limiter stores them.
        bounded = bounded_hits(hits)
        cause = None
        if self._down_since is None:
            local = self.local
            floors = local.floors(bounded, local.now(), self._missed)
            try:
                if enforced is None:
                    decisions = await self.primary.decide(hits, floors, store=store)
                else:
                    decisions = await self.primary.decide(
                        hits, floors, store=store, enforced=enforced
                    )
            except ServiceUnavailable as exc:
                self._went_down(exc)
                cause = exc
            else:
                # The local clock read after the answer: the mirror errs strict.
                local.adopt(bounded, decisions, local.now())
                if self._missed and store:
                    self._missed.difference_update(hit.key for hit in bounded)
                return decisions
        self.degraded_decisions += 1
        if self.mode == "closed":
            raise ServiceUnavailable(CLOSED_MESSAGE) from cause
        if not store:
            hit = hits[0]
            return [await self.local.peek(hit.key, hit.limit, hit.period, hit.cost)]
        if enforced is None:
            decisions = await self.local.hit_all(hits)
        else:
            decisions = await self.local.hit_all(hits[:enforced], hits[enforced:])
        if len(self._missed) < self.local.max_keys:
            self._missed.update(hit.key for hit in bounded)
        return decisions

    async def _call(
        self, op: Callable[[Limiter], Awaitable[None]], *, mirror: bool = False
    ) -> None:
        """``op`` on Redis (and on the local mirror too with ``mirror``), else as degraded."""
        cause = None
        if self._down_since is None:
            try:
                await op(self.primary)
            except ServiceUnavailable as exc:
                self._went_down(exc)
                cause = exc
            else:
                if mirror:
                    await op(self.local)
                return
        self.degraded_decisions += 1
        if self.mode == "closed":
            raise ServiceUnavailable(CLOSED_MESSAGE) from cause
        await op(self.local)

    def _went_down(self, exc: ServiceUnavailable) -> None:
        self.failed_calls += 1
        if self._down_since is not None:
            return  # a request in flight when the circuit opened
        self._down_since = time.monotonic()
        self.outages += 1
        log.warning(
            "rate_limiter_degraded",
            mode=self.mode,
            error=exc.message,
            fallback="local in-process limits" if self.mode == "open" else "503",
        )
        if self._prober is None or self._prober.done():
            self._prober = asyncio.get_running_loop().create_task(self._probe_until_back())

    async def _probe_until_back(self) -> None:
        interval = self.probe_interval
        while self._down_since is not None:
            await asyncio.sleep(interval)
            if await self.probe():
                return
            interval = min(interval * 2, self.probe_max_interval)

    def _came_back(self) -> None:
        down_for = time.monotonic() - (self._down_since or 0.0)
        self._down_since = None
        log.info(
            "rate_limiter_recovered",
            down_seconds=round(down_for, 3),
            degraded_decisions=self.degraded_decisions,
        )
