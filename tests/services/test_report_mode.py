"""Limits in report mode: decided in buckets of their own, counted as what they would
refuse, and never changing what the enforced limits decide, spend or announce.

Each property runs on the in-process limiter and on the real Redis (its script decides
both kinds of limit in one call), each on a clock the test moves.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apiward.adapters.limiter.fallback import FallbackLimiter
from apiward.adapters.limiter.memory import MemoryLimiter
from apiward.adapters.limiter.redis import RedisLimiter, connect
from apiward.core.limits import ALGORITHMS, NS, Algorithm, Policy
from apiward.services.limiting import (
    RateLimiting,
    RatePlan,
    RequestContext,
    RouteRule,
    Verdict,
)
from apiward.services.ports import Limiter
from tests.adapters.limiter.conftest import shared_redis
from tests.live import free_port

WALL = 1_700_000_000.0


class Clock:
    """A nanosecond clock that moves only when told, from the real time (so that Redis's
    refund script, which reads the server's clock, sees the same windows)."""

    def __init__(self, start: int | None = None) -> None:
        self.now = time.time_ns() if start is None else start

    def __call__(self) -> int:
        return self.now

    def micros(self) -> int:
        return self.now // 1000


Factory = Callable[[Clock], Awaitable[Limiter]]


@asynccontextmanager
async def limiters(kind: str) -> AsyncIterator[Factory]:
    """Limiters of ``kind`` on a given clock; on Redis, each under a prefix of its own."""
    if kind == "memory":

        async def memory(clock: Clock) -> Limiter:
            return MemoryLimiter(timer=clock)

        yield memory
        return
    if kind == "fallback":  # Redis unreachable: the local limiter decides
        made: list[FallbackLimiter] = []

        async def fallback(clock: Clock) -> Limiter:
            down = RedisLimiter(connect(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2))
            made.append(FallbackLimiter(down, MemoryLimiter(timer=clock), probe_interval=60))
            return made[-1]

        try:
            yield fallback
        finally:
            for limiter in made:
                await limiter.aclose()
        return
    prefix = f"apiward-test:{uuid.uuid4().hex}:"
    async with shared_redis(prefix) as client:
        count = 0

        async def redis(clock: Clock) -> Limiter:
            nonlocal count
            count += 1
            return RedisLimiter(client, prefix=f"{prefix}{count}:", clock=clock.micros)

        yield redis


KINDS = ["memory", "fallback", pytest.param("redis", marks=pytest.mark.redis)]


def ctx(ip: int) -> RequestContext:
    return RequestContext("/v1/things", org_id="org_1", credential_id="key_1", ip=f"10.0.0.{ip}")


def rule(name: str, rate: str, key: str, algorithm: str, mode: str = "enforce") -> Policy:
    return Policy.parse(name, rate, key=key, algorithm=algorithm, mode=mode)  # type: ignore[arg-type]


steps = st.lists(
    st.tuples(st.sampled_from([0.0, 0.05, 0.4, 1.3, 4.0]), st.integers(0, 1)),
    min_size=1,
    max_size=30,
)
algorithms = st.sampled_from(ALGORITHMS)


async def run(
    factory: Factory,
    plans: tuple[RatePlan, RatePlan],
    sequence: list[tuple[float, int]],
    start: int | None = None,
) -> list[tuple[Verdict, Verdict, float]]:
    """The same requests, at the same moments, under two plans on two limiters."""
    clock = Clock(start)
    one = RateLimiting(await factory(clock), plans[0], clock=lambda: WALL)
    two = RateLimiting(await factory(clock), plans[1], clock=lambda: WALL)
    out = []
    for wait, ip in sequence:
        clock.now += round(wait * NS)
        out.append((await one.check(ctx(ip)), await two.check(ctx(ip)), WALL + clock.now / NS))
    return out


def check(kind: str, test: Callable[[Factory], Awaitable[None]]) -> None:
    async def main() -> None:
        async with limiters(kind) as factory:
            await test(factory)

    asyncio.run(main())


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequence=steps, enforced=algorithms, watched=algorithms, same_key=st.booleans())
def test_a_limit_in_report_mode_never_changes_the_enforced_decision_or_headers(
    kind: str,
    sequence: list[tuple[float, int]],
    enforced: Algorithm,
    watched: Algorithm,
    same_key: bool,
) -> None:
    per_ip = rule("per-ip", "3/2s", "ip", enforced)
    trial = rule("trial", "2/3s", "ip" if same_key else "credential", watched, "report")
    plans = (RatePlan((per_ip,)), RatePlan((per_ip, trial)))

    async def test(factory: Factory) -> None:
        for alone, watched_too, now in await run(factory, plans, sequence):
            assert watched_too.allowed == alone.allowed
            assert watched_too.results == alone.results
            assert watched_too.headers(now) == alone.headers(now)
            assert watched_too.headers(now, every_policy=True) == alone.headers(
                now, every_policy=True
            )
            if not alone.allowed:
                assert watched_too.would_refuse == ()

    check(kind, test)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequence=steps, algorithm=algorithms, cost=st.integers(1, 2))
def test_a_limit_in_report_mode_counts_exactly_what_it_would_refuse_enforced(
    kind: str, sequence: list[tuple[float, int]], algorithm: Algorithm, cost: int
) -> None:
    trial = replace(rule("trial", "3/2s", "credential", algorithm), cost=cost)
    generous = rule("generous", "10000/day", "org", "gcra")  # never refuses
    enforcing = RatePlan((generous, trial))
    reporting = RatePlan((generous, replace(trial, mode="report")))

    async def test(factory: Factory) -> None:
        for enforced, reported, _ in await run(factory, (enforcing, reporting), sequence):
            assert reported.allowed  # nothing enforced refuses
            assert reported.would_refuse == (() if enforced.allowed else ("trial",))
            assert not reported.headers(0).get("RateLimit-Policy", "").count("trial")

    check(kind, test)


@pytest.mark.parametrize("kind", KINDS)
def test_a_request_the_enforced_limits_refuse_spends_nothing_in_report_mode(kind: str) -> None:
    strict = rule("strict", "1/day", "credential", "gcra")
    trial = rule("trial", "5/day", "credential", "gcra", "report")
    window = rule("trial-window", "5/hour", "org", "fixed_window", "report")

    async def test(factory: Factory) -> None:
        service = RateLimiting(await factory(Clock()), RatePlan((strict, trial, window)))
        first = await service.check(ctx(1))
        assert first.allowed and first.would_refuse == ()
        assert [r.decision.remaining for r in first.reports] == [4, 4]
        assert [h.key for h in first.hits] == [
            "rl:strict:credential:key_1",
            "rl:trial~report:credential:key_1",  # never an enforced limit's bucket
            "rl:trial-window~report:org:org_1:fw",
        ]
        for _ in range(3):
            refused = await service.check(ctx(1))
            assert not refused.allowed and refused.would_refuse == ()
            assert [r.decision.remaining for r in refused.reports] == [4, 4]
            assert [h.key for h in refused.hits] == ["rl:strict:credential:key_1"]
        # What an admitted request spent in report mode is given back with the rest.
        await service.limiter.refund(first.hits)
        again = await service.check(ctx(1))
        assert again.allowed and [r.decision.remaining for r in again.reports] == [4, 4]

    check(kind, test)


@pytest.mark.parametrize("kind", KINDS)
def test_limits_in_report_mode_are_decided_each_alone(kind: str) -> None:
    """One limit in report mode that would refuse does not stop another spending."""
    tight = rule("tight", "1/day", "credential", "gcra", "report")
    loose = rule("loose", "3/day", "credential", "sliding_window", "report")
    route = RouteRule("/v1/things", policies=(tight, loose))

    async def test(factory: Factory) -> None:
        service = RateLimiting(await factory(Clock()), RatePlan(routes=(route,)))
        verdicts = [await service.check(ctx(1)) for _ in range(5)]
        assert all(v.allowed and v.headers(WALL) == {} for v in verdicts)
        assert [v.would_refuse for v in verdicts] == [
            (),
            ("tight",),
            ("tight",),
            ("tight", "loose"),
            ("tight", "loose"),
        ]

    check(kind, test)


def test_a_mode_other_than_enforce_or_report_is_refused_saying_what_to_write() -> None:
    with pytest.raises(ValueError, match=r"unknown mode 'dry-run'.*'enforce'.*'report'"):
        Policy.parse("trial", "10/minute", mode="dry-run")  # type: ignore[arg-type]
    assert Policy.parse("trial", "10/minute").mode == "enforce"


@pytest.mark.parametrize("kind", KINDS)
def test_a_limit_in_report_mode_never_spends_an_enforced_limits_bucket_of_its_name(
    kind: str,
) -> None:
    """Another tier's limit of the same name, or the plan's beside an operator's override
    in report mode, keeps its bucket to itself."""
    enforced = rule("per-ip", "2/day", "ip", "gcra")
    trying = RatePlan((replace(enforced, mode="report"),))

    async def test(factory: Factory) -> None:
        limiter = await factory(Clock())
        service = RateLimiting(limiter, RatePlan((enforced,)))
        for _ in range(5):
            assert (await service.check(ctx(1), plan=trying)).allowed
        assert [(await service.check(ctx(1))).allowed for _ in range(3)] == [True, True, False]

    check(kind, test)


@pytest.mark.redis
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequence=steps, enforced=algorithms, watched=algorithms)
def test_the_redis_script_decides_report_mode_as_the_in_process_limiter_does(
    sequence: list[tuple[float, int]], enforced: Algorithm, watched: Algorithm
) -> None:
    plan = RatePlan(
        (rule("per-ip", "3/2s", "ip", enforced), rule("trial", "2/3s", "org", watched, "report"))
    )

    def seen(verdict: Verdict) -> list[tuple[bool, int]]:
        both = (*verdict.results, *verdict.reports)
        return [(r.decision.allowed, r.decision.remaining) for r in both]

    async def main() -> None:
        start = time.time_ns()  # the same moments: windows are aligned to the clock
        async with limiters("memory") as memory, limiters("redis") as redis:
            here = await run(memory, (plan, plan), sequence, start)
            there = await run(redis, (plan, plan), sequence, start)
        for (local, _, _), (shared, _, _) in zip(here, there, strict=True):
            assert seen(local) == seen(shared)
            assert local.would_refuse == shared.would_refuse

    asyncio.run(main())
