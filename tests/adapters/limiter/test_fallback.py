"""Redis outages: fail open onto the local limiter, or fail closed with a 503; the
circuit that spares requests a hung Redis; the state carried across a switch.

The first tests drive ``FallbackLimiter`` with a primary that fails on command; the
others freeze (SIGSTOP), kill, restart and flush a real, private redis-server.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import suppress
from typing import Any, Literal

import pytest
import redis.asyncio as aioredis
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apiward.adapters import logging
from apiward.adapters.limiter.fallback import FailureMode, FallbackLimiter
from apiward.adapters.limiter.memory import MemoryLimiter
from apiward.adapters.limiter.redis import RedisLimiter, connect
from apiward.core.errors import ServiceUnavailable
from apiward.core.limits import Decision, Floor, Hit
from tests.adapters.limiter.conftest import PrivateRedis, wait_until
from tests.conftest import examples

pytestmark = pytest.mark.anyio

DAY = 86400.0
NEVER = 3600.0
"""A probe interval no test waits for: the test probes itself."""


class Flaky:
    """A primary limiter that works on a memory limiter until told to fail."""

    def __init__(self) -> None:
        self.inner = MemoryLimiter()
        self.down = False
        self.calls: list[float] = []

    def _check(self) -> None:
        self.calls.append(time.monotonic())
        if self.down:
            raise ServiceUnavailable("Redis cannot be reached (test)")

    async def decide(
        self,
        hits: Sequence[Hit],
        floors: Sequence[Floor],
        *,
        store: bool,
        enforced: int | None = None,
    ) -> list[Decision]:
        self._check()
        if store:
            n = len(hits) if enforced is None else enforced
            return await self.inner.hit_all(hits[:n], hits[n:])
        return [await self.inner.peek(h.key, h.limit, h.period, h.cost) for h in hits]

    async def ping(self) -> None:
        self._check()

    async def hit(self, key: str, limit: int, period: float, cost: int = 1) -> Decision:
        return (await self.decide([Hit(key, limit, period, cost)], [], store=True))[0]

    async def hit_all(self, hits: Sequence[Hit], report: Sequence[Hit] = ()) -> list[Decision]:
        return await self.decide([*hits, *report], [], store=True, enforced=len(hits))

    async def peek(self, key: str, limit: int, period: float, cost: int = 1) -> Decision:
        return (await self.decide([Hit(key, limit, period, cost)], [], store=False))[0]

    async def reset(self, key: str) -> None:
        self._check()
        await self.inner.reset(key)

    async def refund(self, hits: Sequence[Hit]) -> None:
        self._check()
        await self.inner.refund(hits)

    async def aclose(self) -> None:
        await self.inner.aclose()


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


@pytest.fixture
async def fallback(primary: Flaky) -> AsyncIterator[Any]:
    """A factory of fallback limiters over ``primary``, closed at the end."""
    made: list[FallbackLimiter] = []

    def make(mode: FailureMode = "open", **probes: float) -> FallbackLimiter:
        probes.setdefault("probe_interval", NEVER)
        made.append(FallbackLimiter(primary, MemoryLimiter(), mode=mode, **probes))
        return made[-1]

    yield make
    for limiter in made:
        await limiter.aclose()


async def test_while_redis_works_the_primary_decides(primary: Flaky, fallback: Any) -> None:
    limiter = fallback()
    assert (await limiter.hit("k", 1, DAY)).allowed
    assert not (await primary.inner.peek("k", 1, DAY)).allowed
    assert (limiter.degraded, limiter.outages, limiter.degraded_decisions) == (False, 0, 0)


async def test_open_mode_decides_locally_logs_once_and_counts(
    primary: Flaky, fallback: Any, logs: Logs
) -> None:
    limiter = fallback()
    primary.down = True
    decisions = [await limiter.hit("k", 2, DAY) for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]  # local limits still hold
    assert limiter.degraded and limiter.outages == 1 and limiter.degraded_decisions == 3
    events = logs.events()
    assert [e["event"] for e in events] == ["rate_limiter_degraded"]
    assert events[0]["level"] == "warning" and events[0]["mode"] == "open"


@pytest.mark.parametrize("mode", ["open", "closed"])
async def test_an_open_circuit_sends_no_request_to_redis(
    primary: Flaky, fallback: Any, mode: FailureMode
) -> None:
    """Only the request that found Redis down asked it; the next hundred did not."""
    limiter = fallback(mode)
    primary.down = True
    for _ in range(101):
        try:
            await limiter.hit_all([Hit("k", 1000, DAY)])
        except ServiceUnavailable:
            assert mode == "closed"
    assert len(primary.calls) == 1 and limiter.failed_calls == 1
    assert limiter.degraded_decisions == 101


async def test_the_background_probe_backs_off_and_closes_the_circuit(
    primary: Flaky, fallback: Any, logs: Logs
) -> None:
    """Pings 10, 20, 40, 40 ms apart while Redis is down; the first answered closes the
    circuit, with one log line for the loss and one for the recovery."""
    limiter = fallback(probe_interval=0.01, probe_max_interval=0.04)
    primary.down = True
    await limiter.hit("k", 100, DAY)
    await wait_until(lambda: len(primary.calls) >= 5)
    gaps = [b - a for a, b in zip(primary.calls, primary.calls[1:], strict=False)][:4]
    for gap, least in zip(gaps, [0.01, 0.02, 0.04, 0.04], strict=True):
        assert gap >= least * 0.9  # a sleep never ends early
    assert limiter.degraded and limiter.failed_calls == 1  # probes are not requests
    primary.down = False
    await wait_until(lambda: not limiter.degraded)
    assert [e["event"] for e in logs.events()] == [
        "rate_limiter_degraded",
        "rate_limiter_recovered",
    ]
    await limiter.hit("k", 100, DAY)
    assert (await primary.inner.peek("k", 100, DAY, 0)).remaining == 99


async def test_readiness_answers_at_once_while_the_circuit_is_open(
    primary: Flaky, fallback: Any
) -> None:
    """A failed readiness ping opens the circuit; the next ones do not ask Redis."""
    limiter = fallback()
    assert await limiter.ping()
    primary.down = True
    assert not await limiter.ping()
    assert limiter.degraded and limiter.outages == 1
    calls = len(primary.calls)
    assert not await limiter.ping()
    assert len(primary.calls) == calls
    primary.down = False
    assert await limiter.probe() and await limiter.ping() and not limiter.degraded


async def test_closed_mode_raises_service_unavailable_with_a_clear_message(
    primary: Flaky, fallback: Any
) -> None:
    limiter = fallback("closed")
    primary.down = True
    with pytest.raises(ServiceUnavailable, match=r"fail closed\. Retry shortly"):
        await limiter.hit_all([Hit("k", 1, DAY)])
    with pytest.raises(ServiceUnavailable, match="Redis cannot be reached"):
        await limiter.peek("k", 1, DAY)
    assert limiter.degraded and limiter.degraded_decisions == 2


async def test_reset_clears_both_limiters(primary: Flaky, fallback: Any) -> None:
    limiter = fallback()
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
    redis_limiter = RedisLimiter(connect(private_redis.url, timeout=1.0), prefix="open:")
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
        hits = 0
        for _ in range(500):
            hits += 1
            await limiter.hit("after", 100, DAY)
            if not limiter.degraded:
                break
            await asyncio.sleep(0.02)
        assert not limiter.degraded
        # The restarted server lost its scripts (NOSCRIPT) and its data: the scripts came
        # back, and so did the hits decided locally meanwhile (the local state's floor).
        assert (await redis_limiter.peek("after", 100, DAY, 0)).remaining == 100 - hits
    finally:
        await limiter.aclose()


@pytest.mark.redis
async def test_closed_mode_refuses_through_a_redis_kill_and_recovers(
    private_redis: PrivateRedis,
) -> None:
    redis_limiter = RedisLimiter(connect(private_redis.url, timeout=1.0), prefix="closed:")
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


# --- a hung Redis ----------------------------------------------------------------------

TIMEOUT = 0.3
"""The Redis limiter's bound in these tests."""


@pytest.mark.redis
async def test_a_hung_redis_costs_the_first_request_the_bound_and_no_other(
    private_redis: PrivateRedis,
) -> None:
    """Frozen (SIGSTOP), Redis costs one request at most the timeout; the next 50 decide
    locally at once, readiness answers at once, and a background probe closes the
    circuit once Redis resumes."""
    redis_limiter = RedisLimiter(connect(private_redis.url, timeout=TIMEOUT), prefix="hung:")
    limiter = FallbackLimiter(
        redis_limiter, MemoryLimiter(), probe_interval=0.05, probe_max_interval=0.2
    )
    try:
        assert (await limiter.hit("k", 1000, DAY)).allowed
        private_redis.hang()
        waits = []
        for _ in range(51):
            began = time.monotonic()
            assert (await limiter.hit("k", 1000, DAY)).allowed
            waits.append(time.monotonic() - began)
        assert limiter.failed_calls == 1 and limiter.degraded
        assert TIMEOUT * 0.9 <= waits[0] < TIMEOUT + 2.0  # generous: a loaded machine
        assert [w for w in waits[1:] if w >= TIMEOUT * 0.8] == []
        began = time.monotonic()
        assert not await limiter.ping()
        assert time.monotonic() - began < TIMEOUT * 0.8
        private_redis.resume()
        await wait_until(lambda: not limiter.degraded)
        assert (await limiter.hit("k", 1000, DAY)).allowed
        assert not limiter.degraded and limiter.failed_calls == 1
    finally:
        await limiter.aclose()


# --- state carried across a switch -----------------------------------------------------

MINUTE = 60.0


class Clock:
    """One injected clock for Redis (microseconds) and the local limiter (nanoseconds)."""

    def __init__(self) -> None:
        self.ns = 1_700_000_000 * 10**9

    def __call__(self) -> int:
        return self.ns

    def us(self) -> int:
        return self.ns // 1000

    def advance(self, seconds: float) -> None:
        self.ns += round(seconds * 10**9)


class Cut:
    """The real Redis limiter, which a test cuts off as an outage would (no call made)."""

    def __init__(self, inner: RedisLimiter) -> None:
        self.inner = inner
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise ServiceUnavailable("Redis cannot be reached (test)")

    async def decide(
        self,
        hits: Sequence[Hit],
        floors: Sequence[Floor],
        *,
        store: bool,
        enforced: int | None = None,
    ) -> list[Decision]:
        self._check()
        return await self.inner.decide(hits, floors, store=store, enforced=enforced)

    async def ping(self) -> None:
        self._check()
        await self.inner.ping()

    async def hit(self, key: str, limit: int, period: float, cost: int = 1) -> Decision:
        return (await self.decide([Hit(key, limit, period, cost)], [], store=True))[0]

    async def hit_all(self, hits: Sequence[Hit], report: Sequence[Hit] = ()) -> list[Decision]:
        return await self.decide([*hits, *report], [], store=True, enforced=len(hits))

    async def peek(self, key: str, limit: int, period: float, cost: int = 1) -> Decision:
        return (await self.decide([Hit(key, limit, period, cost)], [], store=False))[0]

    async def reset(self, key: str) -> None:
        self._check()
        await self.inner.reset(key)

    async def refund(self, hits: Sequence[Hit]) -> None:
        self._check()
        await self.inner.refund(hits)

    async def aclose(self) -> None:
        await self.inner.aclose()


class Process:
    """One apiward process's limiter over the private Redis, on the injected clock."""

    def __init__(self, url: str, clock: Clock, mode: FailureMode, prefix: str) -> None:
        redis_limiter = RedisLimiter(connect(url, timeout=2.0), prefix=prefix, clock=clock.us)
        self.redis = Cut(redis_limiter)
        self.limiter = FallbackLimiter(
            self.redis, MemoryLimiter(timer=clock), mode=mode, probe_interval=NEVER
        )

    async def admitted(self, key: str, count: int, limit: int = 20) -> int:
        """How many of ``count`` hits on a ``limit``/minute key were admitted (a 503 of
        fail-closed is none)."""
        admitted = 0
        for _ in range(count):
            with suppress(ServiceUnavailable):
                admitted += (await self.limiter.hit(key, limit, MINUTE)).allowed
        return admitted

    async def down(self) -> None:
        self.redis.down = True

    async def up(self) -> None:
        self.redis.down = False
        assert await self.limiter.probe() and not self.limiter.degraded


@pytest.fixture
async def processes(private_redis: PrivateRedis) -> AsyncIterator[Any]:
    """A factory of processes sharing the private Redis and one clock."""
    clock = Clock()
    prefix = f"carry:{uuid.uuid4().hex}:"
    made: list[Process] = []

    def make(mode: FailureMode = "open") -> Process:
        made.append(Process(private_redis.url, clock, mode, prefix))
        return made[-1]

    make.clock = clock  # type: ignore[attr-defined]
    yield make
    for process in made:
        await process.limiter.aclose()


async def _flush(private_redis: PrivateRedis) -> None:
    client = aioredis.Redis.from_url(private_redis.url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


@pytest.mark.redis
async def test_fail_open_starts_where_redis_left_off(processes: Any) -> None:
    """A key that spent its burst on Redis has none locally either."""
    one = processes()
    assert await one.admitted("k", 25) == 20
    await one.down()
    assert await one.admitted("k", 5) == 0
    processes.clock.advance(3.0)  # one interval of a 20/minute key
    assert await one.admitted("k", 5) == 1


@pytest.mark.redis
async def test_redis_back_from_an_outage_counts_the_hits_it_missed(processes: Any) -> None:
    one = processes()
    assert await one.admitted("k", 10) == 10
    await one.down()
    assert await one.admitted("k", 15) == 10
    await one.up()
    assert await one.admitted("k", 5) == 0
    # The floor was stored: another process, which holds nothing, sees it too.
    assert await processes().admitted("k", 5) == 0


@pytest.mark.redis
@pytest.mark.parametrize("mode", ["open", "closed"])
async def test_a_restarted_empty_redis_starts_no_fresh_burst(
    processes: Any, private_redis: PrivateRedis, mode: FailureMode
) -> None:
    """Killed and started empty between two requests (the pool reconnects unseen), or
    with a request in between (an outage): no fresh burst either way."""
    one = processes(mode)
    assert await one.admitted("quiet", 20) == 20
    assert await one.admitted("seen", 20) == 20
    private_redis.kill()
    private_redis.start()
    assert await one.admitted("quiet", 5) == 0
    private_redis.kill()
    assert await one.admitted("seen", 5) == 0  # local (open) or 503 (closed)
    assert one.limiter.degraded
    private_redis.start()
    assert await one.limiter.probe()
    assert await one.admitted("seen", 5) == 0
    processes.clock.advance(3.0)
    assert await one.admitted("seen", 5) == 1


@pytest.mark.redis
async def test_a_reset_elsewhere_is_not_undone_by_this_process_floor(
    processes: Any, private_redis: PrivateRedis
) -> None:
    """A reset leaves a full bucket in Redis, which a floor does not override; a key
    Redis lost takes the floor."""
    one, other = processes(), processes()
    assert await one.admitted("k", 20) == 20
    await other.limiter.reset("k")
    assert await one.admitted("k", 25) == 20
    await _flush(private_redis)
    assert await one.admitted("k", 5) == 0


Event = tuple[Literal["hit", "down", "up", "flush"], int]

EVENTS = st.one_of(
    st.tuples(st.just("hit"), st.integers(0, 3_000_000)),
    st.tuples(st.sampled_from(["down", "up", "flush"]), st.just(0)),
)


@pytest.mark.redis
@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    limit=st.integers(1, 8),
    interval_us=st.integers(1_000, 1_000_000),
    events=st.lists(EVENTS, min_size=1, max_size=60),
)
async def test_property_switches_admit_no_more_than_one_gcra_limiter(
    private_redis: PrivateRedis, limit: int, interval_us: int, events: list[Event]
) -> None:
    """Hits between any sequence of Redis outages, recoveries and flushes: over every
    window of length W, at most ``limit + W // interval`` are admitted, the bound of one
    GCRA limiter with no fault at all."""
    clock = Clock()
    one = Process(private_redis.url, clock, "open", f"prop:{uuid.uuid4().hex}:")
    period = limit * interval_us / 1_000_000
    admitted: list[int] = []
    try:
        for kind, gap in events:
            if kind == "hit":
                clock.advance(gap / 1_000_000)
                if (await one.limiter.hit("k", limit, period)).allowed:
                    admitted.append(clock.us())
            elif kind == "down":
                await one.down()
            elif kind == "up":
                await one.up()
            else:
                await _flush(private_redis)
    finally:
        await one.limiter.aclose()
    for i, first in enumerate(admitted):
        for j in range(i, len(admitted)):
            assert j - i + 1 <= limit + (admitted[j] - first) // interval_us


@pytest.mark.redis
async def test_a_long_key_is_carried_like_a_short_one(processes: Any) -> None:
    """Keys past the length bound are stored as a digest in both limiters alike."""
    one = processes()
    key = "user:" + "x" * 500
    assert await one.admitted(key, 25) == 20
    await one.down()
    assert await one.admitted(key, 5) == 0
    await one.up()
    assert await one.admitted(key, 5) == 0


@pytest.mark.redis
async def test_a_window_limit_carries_nothing_and_each_side_holds_its_own(
    processes: Any,
) -> None:
    """The stated bound for window limits: Redis and the local table each admit the
    limit in their window, so a switch admits at most twice what no fault would."""
    one = processes()
    hit = Hit("w", 10, MINUTE, 1, "fixed_window")

    async def admitted(count: int) -> int:
        return sum([(await one.limiter.hit_all([hit]))[0].allowed for _ in range(count)])

    assert await admitted(15) == 10
    await one.down()
    assert await admitted(15) == 10
    await one.up()
    assert await admitted(15) == 0
