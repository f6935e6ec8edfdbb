"""Redis outages: fail open onto the local limiter, or fail closed with a 503; recovery.

The first tests drive ``FallbackLimiter`` with a primary that fails on command; the
last ones kill a real, private redis-server (port 6391) in the middle of a load.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import structlog

from apiward.adapters import logging
from apiward.adapters.limiter.fallback import FailureMode, FallbackLimiter
from apiward.adapters.limiter.memory import MemoryLimiter
from apiward.adapters.limiter.redis import RedisLimiter, connect
from apiward.core.errors import ServiceUnavailable
from apiward.core.limits import Decision, Hit
from tests.adapters.limiter.conftest import PrivateRedis, wait_until

pytestmark = pytest.mark.anyio

DAY = 86400.0


class Flaky:
    """A primary limiter that works on a memory limiter until told to fail."""

    def __init__(self) -> None:
        self.inner = MemoryLimiter()
        self.down = False
        self.calls = 0

    def _check(self) -> None:
        self.calls += 1
        if self.down:
            raise ServiceUnavailable("Redis cannot be reached (test)")

    async def hit(self, key: str, limit: int, period: float, cost: int = 1) -> Decision:
        self._check()
        return await self.inner.hit(key, limit, period, cost)

    async def hit_all(self, hits: Sequence[Hit]) -> list[Decision]:
        self._check()
        return await self.inner.hit_all(hits)

    async def peek(self, key: str, limit: int, period: float, cost: int = 1) -> Decision:
        self._check()
        return await self.inner.peek(key, limit, period, cost)

    async def reset(self, key: str) -> None:
        self._check()
        await self.inner.reset(key)

    async def refund(self, hits: Sequence[Hit]) -> None:
        self._check()
        await self.inner.refund(hits)

    async def aclose(self) -> None:
        await self.inner.aclose()


class Timer:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def timer() -> Timer:
    return Timer()


@pytest.fixture
def primary() -> Flaky:
    return Flaky()


class Logs:
    def __init__(self, stream: io.StringIO) -> None:
        self._stream = stream

    def events(self) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self._stream.getvalue().splitlines()]
        self._stream.seek(0)
        self._stream.truncate()
        return lines


@pytest.fixture
def logs() -> Iterator[Logs]:
    """apiward's JSON logs at debug level into a buffer; the previous config restored."""
    previous = structlog.get_config()
    stream = io.StringIO()
    logging.configure("debug", "json", stream)
    yield Logs(stream)
    structlog.configure(**previous)


def fallback(primary: Flaky, timer: Timer, mode: FailureMode) -> FallbackLimiter:
    return FallbackLimiter(primary, MemoryLimiter(), mode=mode, probe_interval=1.0, timer=timer)


async def test_while_redis_works_the_primary_decides(primary: Flaky, timer: Timer) -> None:
    limiter = fallback(primary, timer, "open")
    assert (await limiter.hit("k", 1, DAY)).allowed
    assert not (await primary.inner.peek("k", 1, DAY)).allowed
    assert (limiter.degraded, limiter.outages, limiter.degraded_decisions) == (False, 0, 0)


async def test_open_mode_decides_locally_logs_once_and_counts(
    primary: Flaky, timer: Timer, logs: Logs
) -> None:
    limiter = fallback(primary, timer, "open")
    primary.down = True
    decisions = [await limiter.hit("k", 2, DAY) for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]  # local limits still hold
    assert limiter.degraded and limiter.outages == 1 and limiter.degraded_decisions == 3
    events = logs.events()
    assert [e["event"] for e in events] == ["rate_limiter_degraded"]
    assert events[0]["level"] == "warning" and events[0]["mode"] == "open"


async def test_an_open_circuit_spares_redis_until_the_probe_interval(
    primary: Flaky, timer: Timer
) -> None:
    limiter = fallback(primary, timer, "open")
    primary.down = True
    for _ in range(10):
        await limiter.hit("k", 100, DAY)
    assert primary.calls == 1
    timer.now = 1.0
    await limiter.hit("k", 100, DAY)
    assert primary.calls == 2  # one probe, which failed: the circuit stays open
    assert limiter.degraded and limiter.outages == 1


async def test_the_first_successful_probe_closes_the_circuit(
    primary: Flaky, timer: Timer, logs: Logs
) -> None:
    limiter = fallback(primary, timer, "open")
    primary.down = True
    await limiter.hit("k", 100, DAY)
    logs.events()
    primary.down = False
    timer.now = 1.5
    await limiter.hit("k", 100, DAY)
    assert not limiter.degraded
    assert [e["event"] for e in logs.events()] == ["rate_limiter_recovered"]
    assert (await primary.inner.peek("k", 100, DAY, 0)).remaining == 99


async def test_closed_mode_raises_service_unavailable_with_a_clear_message(
    primary: Flaky, timer: Timer
) -> None:
    limiter = fallback(primary, timer, "closed")
    primary.down = True
    with pytest.raises(ServiceUnavailable, match=r"fail closed\. Retry shortly"):
        await limiter.hit_all([Hit("k", 1, DAY)])
    with pytest.raises(ServiceUnavailable, match="Redis cannot be reached"):
        await limiter.peek("k", 1, DAY)
    assert limiter.degraded and limiter.degraded_decisions == 2


async def test_reset_clears_both_limiters(primary: Flaky, timer: Timer) -> None:
    limiter = fallback(primary, timer, "open")
    await limiter.hit("k", 1, DAY)
    await limiter.local.hit("k", 1, DAY)
    await limiter.reset("k")
    assert (await primary.inner.peek("k", 1, DAY)).allowed
    assert (await limiter.local.peek("k", 1, DAY)).allowed


def test_an_unknown_mode_is_refused(primary: Flaky) -> None:
    with pytest.raises(ValueError, match="'open' or 'closed'"):
        FallbackLimiter(primary, MemoryLimiter(), mode="maybe")  # type: ignore[arg-type]


# --- a real outage -------------------------------------------------------------------


async def _load(limiter: FallbackLimiter, key: str, count: int, out: list[object]) -> None:
    """Ask ``count`` times, a little apart; record each decision or the error raised."""
    for _ in range(count):
        try:
            out.append(await limiter.hit(key, 1_000_000, DAY))
        except ServiceUnavailable as exc:
            out.append(exc)
        await asyncio.sleep(0.002)


@pytest.mark.redis
async def test_open_mode_keeps_deciding_through_a_redis_kill_and_recovers(
    private_redis: PrivateRedis,
) -> None:
    redis_limiter = RedisLimiter(connect(private_redis.url, timeout=0.25), prefix="open:")
    limiter = FallbackLimiter(redis_limiter, MemoryLimiter(), mode="open", probe_interval=0.05)
    try:
        results: list[object] = []
        load = asyncio.create_task(_load(limiter, "k", 300, results))
        await wait_until(lambda: len(results) >= 50)
        private_redis.kill()
        await asyncio.wait_for(load, timeout=30)

        assert len(results) == 300
        assert all(isinstance(r, Decision) and r.allowed for r in results)
        assert limiter.outages == 1 and limiter.degraded_decisions > 0

        private_redis.start()
        for _ in range(500):
            await limiter.hit("after", 10, DAY)
            if not limiter.degraded:
                break
            await asyncio.sleep(0.02)
        assert not limiter.degraded
        # The restarted server lost its scripts (NOSCRIPT) and its data: both came back.
        assert (await redis_limiter.peek("after", 10, DAY, 0)).remaining == 9
    finally:
        await limiter.aclose()


@pytest.mark.redis
async def test_closed_mode_refuses_through_a_redis_kill_and_recovers(
    private_redis: PrivateRedis,
) -> None:
    redis_limiter = RedisLimiter(connect(private_redis.url, timeout=0.25), prefix="closed:")
    limiter = FallbackLimiter(redis_limiter, MemoryLimiter(), mode="closed", probe_interval=0.05)
    try:
        results: list[object] = []
        load = asyncio.create_task(_load(limiter, "k", 300, results))
        await wait_until(lambda: len(results) >= 50)
        private_redis.kill()
        await asyncio.wait_for(load, timeout=30)

        errors = [r for r in results if isinstance(r, ServiceUnavailable)]
        assert all(isinstance(r, Decision) for r in results[:50])
        assert errors and all("fail closed" in e.message for e in errors)
        assert limiter.degraded

        private_redis.start()
        recovered = None
        for _ in range(500):
            try:
                recovered = await limiter.hit("after", 10, DAY)
                break
            except ServiceUnavailable:
                await asyncio.sleep(0.02)
        assert recovered is not None and recovered.allowed and not limiter.degraded
    finally:
        await limiter.aclose()
