"""What only the Redis adapter has: the Lua script, the server clock, errors, NOSCRIPT."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis
import redis.exceptions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apiward.adapters.limiter.redis import RedisLimiter, connect
from apiward.core.errors import ServiceUnavailable
from apiward.core.limits import (
    MAX_KEY_LENGTH,
    NO_FLOOR,
    NS,
    US,
    Algorithm,
    Decision,
    Floor,
    Hit,
    WindowState,
    decide_all,
    gcra,
    gcra_all,
)
from tests.conftest import examples

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

NOW_US = 1_732_000_000_123_457  # a 16-digit microsecond clock, past Lua's %.14g


def _as_redis(d: Decision) -> Decision:
    """A core decision on the microsecond clock, with its TAT in nanoseconds as returned."""
    return Decision(
        d.allowed, d.limit, d.remaining, d.reset_after, d.retry_after, d.tat * (NS // US), d.period
    )


@settings(
    max_examples=examples(30),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    limit=st.integers(1, 50),
    period_us=st.integers(50, 5_000_000),
    steps=st.lists(st.tuples(st.integers(0, 200_000), st.integers(0, 3)), min_size=1, max_size=40),
)
async def test_property_the_lua_script_decides_exactly_as_the_core(
    redis_client: aioredis.Redis,
    prefix: str,
    limit: int,
    period_us: int,
    steps: list[tuple[int, int]],
) -> None:
    """Same clock, same requests: the script and ``core.limits.gcra`` agree bit for bit."""
    period_us = max(period_us, limit)
    namespace = f"{prefix}{uuid.uuid4().hex}:"
    limiter = RedisLimiter(redis_client, prefix=namespace)
    tat: int | None = None
    now = NOW_US
    for gap, cost in steps:
        now += gap
        hit = Hit("k", limit, period_us / US, min(cost, limit))
        got = (await limiter._run([hit], store=True, now_us=now))[0]
        expected = gcra(tat, now, limit, period_us, hit.cost, tick=US)
        assert got == _as_redis(expected)
        if expected.allowed and hit.cost:
            tat = expected.tat
        # The script's clock here is the test's, but Redis expires keys on its own: a
        # TTL of a millisecond (a 50 µs period) can run out, on a busy machine, before
        # this next command keeps the key for the test's time. PEXPIRE says whether it
        # found the key; a key Redis already let go holds no state, and the model
        # forgets it too (an expired TAT and no TAT decide alike).
        if not await redis_client.pexpire(namespace + "k", 60_000):
            tat = None


async def test_the_lua_script_is_all_or_nothing_like_the_core(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    limiter = RedisLimiter(redis_client, prefix=prefix)
    hits = [Hit("a", 3, 1.0), Hit("b", 1, 1.0)]
    tats: list[int | None] = [None, None]
    for step in range(4):
        now = NOW_US + step * 100_000
        got = await limiter._run(hits, store=True, now_us=now)
        expected, commit = gcra_all(tats, now, hits, tick=US)
        assert got == [_as_redis(d) for d in expected]
        if commit:
            tats = [d.tat for d in expected]


async def test_decisions_use_the_redis_server_clock(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    before_s, before_us = await redis_client.time()
    decision = await RedisLimiter(redis_client, prefix=prefix).hit("clock", 10, 10.0)
    server_now_ns = (before_s * US + before_us) * (NS // US)
    assert decision.tat - round(decision.reset_after * NS) >= server_now_ns


async def test_a_key_expires_when_its_bucket_would_be_full(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    await RedisLimiter(redis_client, prefix=prefix).hit("ttl", 10, 100.0, 4)
    assert 39_000 <= await redis_client.pttl(f"{prefix}ttl") <= 40_000


async def test_peek_and_denials_write_nothing(redis_client: aioredis.Redis, prefix: str) -> None:
    limiter = RedisLimiter(redis_client, prefix=prefix)
    await limiter.peek("quiet", 5, 60.0)
    assert await redis_client.exists(f"{prefix}quiet") == 0
    await limiter.hit("full", 1, 60.0)
    stored = await redis_client.get(f"{prefix}full")
    assert not (await limiter.hit("full", 1, 60.0)).allowed
    assert await redis_client.get(f"{prefix}full") == stored


async def test_a_script_missing_from_the_server_is_loaded_again(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    limiter = RedisLimiter(redis_client, prefix=prefix)
    limiter._gcra.sha = "0" * 40  # as after SCRIPT FLUSH or a failover to a fresh server
    assert (await limiter.hit("noscript", 2, 60.0)).allowed
    assert limiter._gcra.sha != "0" * 40
    assert (await limiter.hit("noscript", 2, 60.0)).remaining == 0


async def test_an_unreachable_redis_raises_service_unavailable_chained() -> None:
    client = connect("redis://127.0.0.1:1/0", timeout=0.2)
    limiter = RedisLimiter(client)
    try:
        with pytest.raises(ServiceUnavailable, match="Redis cannot be reached") as caught:
            await asyncio.wait_for(limiter.hit("k", 1, 1.0), timeout=5)
        assert caught.value.__cause__ is not None
        with pytest.raises(ServiceUnavailable):
            await limiter.ping()
    finally:
        await limiter.aclose()


async def test_invalid_limits_are_refused_before_any_round_trip() -> None:
    limiter = RedisLimiter(connect("redis://127.0.0.1:1/0"))
    try:
        with pytest.raises(ValueError, match="at least one limit"):
            await limiter.hit_all([])
        with pytest.raises(ValueError, match="microsecond per unit"):
            await limiter.hit("k", 10, 0.000001)
    finally:
        await limiter.aclose()


@settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    algorithm=st.sampled_from(["fixed_window", "sliding_window"]),
    limit=st.integers(1, 20),
    period_us=st.integers(1_000, 5_000_000),
    steps=st.lists(st.tuples(st.integers(0, 900_000), st.integers(0, 3)), min_size=1, max_size=40),
)
async def test_property_window_limits_decide_in_the_script_as_in_the_core(
    redis_client: aioredis.Redis,
    prefix: str,
    algorithm: Algorithm,
    limit: int,
    period_us: int,
    steps: list[tuple[int, int]],
) -> None:
    """The script's windows and ``core.limits.window`` agree for every sequence, with a
    GCRA limit in the same call (one round trip, all or nothing)."""
    namespace = f"{prefix}{uuid.uuid4().hex}:"
    limiter = RedisLimiter(redis_client, prefix=namespace)
    states: list[int | WindowState | None] = [None, None]
    now = NOW_US
    for gap, cost in steps:
        now += gap
        hits = [
            Hit("w", limit, period_us / US, min(cost, limit), algorithm),
            Hit("g", 30, 1.0, min(cost, 30)),
        ]
        got = await limiter._run(hits, store=True, now_us=now)
        expected, new_states, commit = decide_all(states, now, hits, tick=US)
        assert [(d.allowed, d.remaining, d.reset_after, d.retry_after) for d in got] == [
            (d.allowed, d.remaining, d.reset_after, d.retry_after) for d in expected
        ]
        if commit:
            states = [
                new if hit.cost else old
                for new, old, hit in zip(new_states, states, hits, strict=True)
            ]
        # As in the GCRA property: what Redis let go before it was kept holds no state.
        for i, key in enumerate(("w", "g")):
            if not await redis_client.pexpire(namespace + key, 60_000):
                states[i] = None


async def test_no_stored_key_is_longer_than_the_bound(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    limiter = RedisLimiter(redis_client, prefix=prefix)
    await limiter.hit("a" * 4096, 10, 3600.0)
    await limiter.hit_all(
        [Hit("b" * 4096, 10, 3600.0), Hit("c" * 4096, 10, 60.0, 1, "fixed_window")]
    )
    stored = [key async for key in redis_client.scan_iter(match=f"{prefix}*")]
    assert len(stored) == 3
    assert max(len(key) for key in stored) == len(prefix) + MAX_KEY_LENGTH + 1


async def test_a_floor_raises_a_missing_key_and_a_forced_floor_any_key(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    """An unforced floor counts only where Redis holds nothing; a forced one whatever it
    holds; a floor that raised a key is stored even when the request is denied; a reset
    leaves a full bucket that no unforced floor overrides."""
    clock = [NOW_US]
    limiter = RedisLimiter(redis_client, prefix=prefix, clock=lambda: clock[0])
    hit = Hit("k", 10, 10.0)  # one unit per second
    nine = Floor(9 * NS)

    async def remaining(floor: Floor = NO_FLOOR, *, store: bool = False) -> int:
        return (await limiter.decide([hit], [floor], store=store))[0].remaining

    assert await remaining(nine) == 0  # missing: the floor counts (9 spent, this one 10th)
    assert await remaining() == 9  # a peek stored nothing
    await limiter.hit("k", 10, 10.0, 2)
    assert await remaining(nine) == 7  # held: an unforced floor is ignored
    assert await remaining(nine._replace(forced=True)) == 0  # forced: max(held, floor)
    denied = await limiter.decide([hit._replace(cost=3)], [Floor(9 * NS, True)], store=True)
    assert not denied[0].allowed and await remaining() == 0  # the floor was stored
    await limiter.reset("k")
    assert await remaining(nine) == 9  # a reset key is held, full: the floor is ignored
    assert await redis_client.get(prefix + "k") == b"0"


def coalesced(limiter: RedisLimiter) -> Any:
    assert limiter._coalesced is not None, "a single Redis's calls are coalesced"
    return limiter._coalesced


async def test_decisions_of_one_turn_share_one_batch_and_stay_exact(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    """50 decisions started together against a limit of 20: one batch of 50 scripts,
    exactly 20 admitted, and each answer its own (the remaining counts are 19 down to
    0, once each)."""
    limiter = RedisLimiter(redis_client, prefix=prefix)
    await limiter.hit("warm", 1, 60.0)  # the script loaded
    decisions = await asyncio.gather(*(limiter.hit("burst", 20, 60.0) for _ in range(50)))
    assert (coalesced(limiter).batches, coalesced(limiter).largest) == (1, 50)
    admitted = [d for d in decisions if d.allowed]
    assert len(admitted) == 20
    assert sorted(d.remaining for d in admitted) == list(range(20))
    assert all(d.retry_after > 0 for d in decisions if not d.allowed)


async def test_a_script_missing_from_the_server_mid_batch_is_loaded_again_for_each_call(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    """NOSCRIPT for every script of a batch: each call loads the script and runs on its
    own, the connection stays usable, and the batch's decisions stay exact."""
    limiter = RedisLimiter(redis_client, prefix=prefix)
    limiter._gcra.sha = "0" * 40
    decisions = await asyncio.gather(*(limiter.hit("flushed", 5, 60.0) for _ in range(12)))
    assert sum(d.allowed for d in decisions) == 5
    assert limiter._gcra.sha != "0" * 40
    again = await asyncio.gather(*(limiter.hit("flushed", 5, 60.0) for _ in range(3)))
    assert not any(d.allowed for d in again)


async def test_a_caller_gone_before_its_batch_left_spends_nothing(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    """A call cancelled in the turn it was made (its client gone, its timeout) is dropped
    from the batch: the four others share the limit of 3 as if it had never come."""
    limiter = RedisLimiter(redis_client, prefix=prefix)
    await limiter.hit("warm", 1, 60.0)
    calls = [asyncio.ensure_future(limiter.hit("shared", 3, 60.0)) for _ in range(5)]
    await asyncio.sleep(0)  # each call queued; the batch leaves in the next turn
    calls[0].cancel()
    decisions = await asyncio.gather(*calls[1:])
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert calls[0].cancelled()
    assert coalesced(limiter).largest == 4


async def test_a_batch_to_an_unreachable_redis_fails_each_call_as_unavailable() -> None:
    limiter = RedisLimiter(connect("redis://127.0.0.1:1/0", timeout=0.2))
    try:
        results = await asyncio.gather(
            *(limiter.hit(f"k{i}", 5, 60.0) for i in range(10)), return_exceptions=True
        )
    finally:
        await limiter.aclose()
    assert all(isinstance(r, ServiceUnavailable) for r in results), results


async def test_a_lost_connection_fails_the_unread_calls_and_never_runs_a_script_twice(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    """The server closes the connection in the middle of a batch (here: each script of
    the batch that reads a reply after the third finds it closed): the first replies
    are delivered, the others fail, and what Redis counted is what ran once."""
    limiter = RedisLimiter(redis_client, prefix=prefix)
    await limiter.hit("warm", 1, 60.0)
    pool = redis_client.connection_pool
    taken = pool.get_connection

    broken: list[Any] = []

    async def breaking(*args: Any, **kwargs: Any) -> Any:
        connection = await taken(*args, **kwargs)  # type: ignore[no-untyped-call]
        read = connection.read_response
        replies = 0

        async def read_response(*a: Any, **k: Any) -> Any:
            nonlocal replies
            replies += 1
            if replies > 3:
                raise redis.exceptions.ConnectionError("closed by the server")
            return await read(*a, **k)

        connection.read_response = read_response
        broken.append(connection)
        return connection

    pool.get_connection = breaking  # type: ignore[method-assign]
    try:
        results = await asyncio.gather(
            *(limiter.hit("lost", 100, 60.0) for _ in range(8)), return_exceptions=True
        )
    finally:
        pool.get_connection = taken  # type: ignore[method-assign]
        for connection in broken:
            del connection.read_response  # the class's again
    delivered = [r for r in results if isinstance(r, Decision)]
    assert len(delivered) == 3
    assert all(isinstance(r, ServiceUnavailable) for r in results[3:])
    # All eight ran once on the server (the batch was written whole), none twice.
    assert (await limiter.peek("lost", 100, 60.0, 0)).remaining == 92
