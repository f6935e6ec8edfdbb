"""The sign-in throttle holds under concurrency, on the memory limiter and on Redis,
and a refund gives back exactly what an admitted hit spent."""

from __future__ import annotations

import asyncio

import pytest

from apiward.core.errors import LoginThrottled
from apiward.core.limits import Hit, Policy
from apiward.services.ports import Limiter
from apiward.services.throttle import LoginThrottle

pytestmark = pytest.mark.anyio

PER_USER = Policy.parse("login-user", "5/15minute", key="user")
PER_IP = Policy.parse("login-ip", "50/15minute", key="ip")
RIGHT = "the right one"


async def test_concurrent_guesses_get_no_more_checks_than_the_budget(limiter: Limiter) -> None:
    throttle = LoginThrottle(limiter, PER_USER, PER_IP)
    checked: list[str] = []

    async def sign_in(password: str) -> str:
        try:
            await throttle.reserve("ada@example.test", "203.0.113.7")
        except LoginThrottled:
            return "throttled"
        checked.append(password)
        await asyncio.sleep(0.05)  # the password hash, during which the others arrive
        if password == RIGHT:
            await throttle.succeeded("ada@example.test", "203.0.113.7")
            return "signed in"
        return "wrong"

    # Wrong guesses only: which concurrent attempts get the five checks is the order
    # their reservations reach the limiter (over several Redis connections, any order),
    # and a right password among those five would end the lockout it is meant to meet.
    guesses = [f"guess {i}" for i in range(24)]
    answers = await asyncio.gather(*(sign_in(g) for g in guesses))
    assert len(checked) == 5
    assert answers.count("throttled") == 19
    # During the lockout even the right password is refused, unchecked.
    assert await sign_in(RIGHT) == "throttled"
    assert len(checked) == 5


async def test_a_success_gives_its_reservation_back(limiter: Limiter) -> None:
    throttle = LoginThrottle(limiter, PER_USER, Policy.parse("login-ip", "3/hour", key="ip"))
    for _ in range(10):  # ten good sign-ins from one address use none of its budget
        await throttle.reserve("ada@example.test", "203.0.113.7")
        await throttle.succeeded("ada@example.test", "203.0.113.7")
    for user in ("a", "b", "c"):
        await throttle.reserve(user, "203.0.113.7")
    with pytest.raises(LoginThrottled):
        await throttle.reserve("d", "203.0.113.7")


async def test_refund_restores_the_state_before_the_hit(limiter: Limiter) -> None:
    hit = Hit("refund-me", 10, 60.0, 3)
    before = await limiter.peek(hit.key, hit.limit, hit.period, 0)
    await limiter.hit_all([hit])
    spent = await limiter.peek(hit.key, hit.limit, hit.period, 0)
    assert spent.remaining == before.remaining - 3
    await limiter.refund([hit])
    after = await limiter.peek(hit.key, hit.limit, hit.period, 0)
    assert after.remaining == before.remaining
    # A refund never fills past a full bucket.
    await limiter.refund([hit])
    assert (await limiter.peek(hit.key, hit.limit, hit.period, 0)).remaining == 10
