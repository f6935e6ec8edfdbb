"""What only the in-process limiter has: a bounded map that drops idle keys first."""

from __future__ import annotations

import pytest

from apiward.adapters.limiter.memory import MemoryLimiter
from apiward.core.limits import MAX_KEY_LENGTH, NS, Hit

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


async def test_the_map_never_holds_more_than_max_keys() -> None:
    limiter = MemoryLimiter(max_keys=100)
    for i in range(1000):
        await limiter.hit(f"k{i}", 10, 3600.0)
        assert len(limiter) <= 100


async def test_idle_keys_are_dropped_before_live_ones() -> None:
    clock = Clock()
    limiter = MemoryLimiter(max_keys=10, timer=clock)
    await limiter.hit("live", 1, 3600.0)  # its bucket refills in an hour
    for i in range(9):
        await limiter.hit(f"idle{i}", 10, 1.0)  # full again after 0.1 s
    clock.now = 1 * NS
    await limiter.hit("newcomer", 1, 3600.0)
    assert len(limiter) == 2
    assert not (await limiter.hit("live", 1, 3600.0)).allowed


async def test_when_every_key_is_live_the_oldest_go_first() -> None:
    limiter = MemoryLimiter(max_keys=10, timer=Clock())
    for i in range(11):
        await limiter.hit(f"k{i}", 1, 3600.0)
    assert len(limiter) == 9
    assert (await limiter.hit("k0", 1, 3600.0)).allowed  # forgotten: a full bucket again
    assert not (await limiter.hit("k10", 1, 3600.0)).allowed


async def test_a_read_with_cost_zero_stores_nothing() -> None:
    limiter = MemoryLimiter()
    await limiter.hit("k", 5, 60.0, 0)
    assert len(limiter) == 0


def test_max_keys_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        MemoryLimiter(max_keys=0)


async def test_no_stored_key_is_longer_than_the_bound() -> None:
    limiter = MemoryLimiter()
    await limiter.hit("a" * 4096, 10, 3600.0)
    await limiter.hit_all(
        [Hit("b" * 4096, 10, 3600.0), Hit("c" * 4096, 10, 60.0, 1, "fixed_window")]
    )
    stored = [*limiter._tats, *limiter._windows]
    assert len(stored) == 3 and max(map(len, stored)) == MAX_KEY_LENGTH + 1
