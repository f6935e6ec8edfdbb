"""The limiter contract, written once and run on memory and on Redis.

The tests speak only the ``Limiter`` protocol. They run on the
adapters' real clocks (Redis's ``TIME``), so periods are either long enough that no
refill happens during a test, or short and waited for with a bounded sleep.
"""

from __future__ import annotations

import asyncio

import pytest

from apiward.core.limits import Hit
from apiward.services.ports import Limiter

pytestmark = pytest.mark.anyio

DAY = 86400.0


async def test_a_fresh_key_admits_exactly_limit_then_denies(limiter: Limiter) -> None:
    remaining = [(await limiter.hit("burst", 5, DAY)).remaining for _ in range(5)]
    assert remaining == [4, 3, 2, 1, 0]
    denied = await limiter.hit("burst", 5, DAY)
    assert not denied.allowed and denied.remaining == 0
    assert denied.retry_after == pytest.approx(DAY / 5, abs=1.0)
    assert denied.reset_after == pytest.approx(DAY, abs=1.0)


async def test_an_admitted_decision_carries_what_the_headers_need(limiter: Limiter) -> None:
    d = await limiter.hit("headers", 1000, 3600.0)
    assert (d.allowed, d.limit, d.remaining, d.retry_after, d.period) == (
        True,
        1000,
        999,
        0.0,
        3600.0,
    )
    assert d.reset_after == pytest.approx(3.6, abs=0.01)


async def test_a_denied_hit_spends_nothing(limiter: Limiter) -> None:
    await limiter.hit("deny", 2, DAY, 2)
    first = await limiter.hit("deny", 2, DAY)
    second = await limiter.hit("deny", 2, DAY)
    assert not first.allowed and not second.allowed
    assert second.retry_after == pytest.approx(first.retry_after, abs=0.5)


async def test_keys_are_independent(limiter: Limiter) -> None:
    await limiter.hit("one", 1, DAY)
    assert not (await limiter.hit("one", 1, DAY)).allowed
    assert (await limiter.hit("two", 1, DAY)).allowed


async def test_keys_that_differ_past_the_length_bound_stay_independent(limiter: Limiter) -> None:
    head = "login:user:" + "x" * 4096
    await limiter.hit(head + "a", 1, DAY)
    assert not (await limiter.hit(head + "a", 1, DAY)).allowed
    assert (await limiter.hit_all([Hit(head + "b", 1, DAY)]))[0].allowed
    assert not (await limiter.peek(head + "b", 1, DAY)).allowed
    await limiter.refund([Hit(head + "b", 1, DAY)])
    assert (await limiter.peek(head + "b", 1, DAY)).allowed
    await limiter.reset(head + "a")
    assert (await limiter.hit(head + "a", 1, DAY)).allowed


async def test_cost_spends_several_units(limiter: Limiter) -> None:
    assert (await limiter.hit("cost", 10, DAY, 7)).remaining == 3
    assert not (await limiter.hit("cost", 10, DAY, 4)).allowed
    assert (await limiter.hit("cost", 10, DAY, 3)).remaining == 0


async def test_peek_tells_what_hit_would_decide_without_spending(limiter: Limiter) -> None:
    await limiter.hit("peek", 3, DAY)
    would = await limiter.peek("peek", 3, DAY)
    assert would.allowed and would.remaining == 1
    assert (await limiter.peek("peek", 3, DAY, 0)).remaining == 2
    assert (await limiter.hit("peek", 3, DAY)).remaining == 1


async def test_reset_makes_the_bucket_full_again(limiter: Limiter) -> None:
    await limiter.hit("reset", 1, DAY)
    await limiter.reset("reset")
    assert (await limiter.hit("reset", 1, DAY)).allowed
    await limiter.reset("never-seen")


async def test_waiting_retry_after_is_admitted_again(limiter: Limiter) -> None:
    await limiter.hit("wait", 2, 0.2, 2)
    denied = await limiter.hit("wait", 2, 0.2)
    assert not denied.allowed and 0 < denied.retry_after <= 0.1
    await asyncio.sleep(denied.retry_after + 0.005)
    assert (await limiter.hit("wait", 2, 0.2)).allowed


async def test_hit_all_spends_on_every_limit_when_all_admit(limiter: Limiter) -> None:
    decisions = await limiter.hit_all([Hit("all-a", 10, DAY), Hit("all-b", 5, DAY, 2)])
    assert [(d.allowed, d.remaining) for d in decisions] == [(True, 9), (True, 3)]


async def test_hit_all_spends_on_none_when_one_denies(limiter: Limiter) -> None:
    await limiter.hit("none-b", 1, DAY)
    decisions = await limiter.hit_all([Hit("none-a", 10, DAY), Hit("none-b", 1, DAY)])
    assert [d.allowed for d in decisions] == [True, False]
    assert decisions[0].remaining == 10  # reported as it stands: nothing was spent
    assert (await limiter.peek("none-a", 10, DAY, 0)).remaining == 10


async def test_hit_all_rejects_a_key_twice(limiter: Limiter) -> None:
    with pytest.raises(ValueError, match="only once"):
        await limiter.hit_all([Hit("dup", 1, DAY), Hit("dup", 2, DAY)])


async def test_concurrent_hits_on_one_key_admit_exactly_the_limit(limiter: Limiter) -> None:
    results = await asyncio.gather(*(limiter.hit("race", 50, DAY) for _ in range(120)))
    assert sum(d.allowed for d in results) == 50
    assert sorted(d.remaining for d in results if d.allowed) == list(range(50))


@pytest.mark.parametrize(("limit", "period", "cost"), [(0, DAY, 1), (5, DAY, 6), (5, DAY, -1)])
async def test_impossible_limits_raise_value_error(
    limiter: Limiter, limit: int, period: float, cost: int
) -> None:
    with pytest.raises(ValueError, match=r"limit|cost"):
        await limiter.hit("bad", limit, period, cost)
