"""What only the in-process limiter has: a bounded table that drops idle keys first,
then shares what is left fairly by owner."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apiward.adapters.limiter.memory import MemoryLimiter
from apiward.adapters.settings import ConfigError
from apiward.core.limits import DEPLOYMENT, MAX_KEY_LENGTH, NS, Hit
from tests.conftest import examples, fast_settings

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


# --- a full table is shared fairly by owner ------------------------------------------


async def spend(limiter: MemoryLimiter, key: str, owner: str, limit: int = 2) -> None:
    assert (await limiter.hit_all([Hit(key, limit, 3600.0, 1, "gcra", owner)]))[0].allowed


async def remaining(limiter: MemoryLimiter, key: str, limit: int = 2) -> int:
    return (await limiter.peek(key, limit, 3600.0, 0)).remaining


async def test_a_full_table_evicts_the_least_recently_used_keys_of_the_owner_holding_most() -> None:
    limiter = MemoryLimiter(max_keys=20, timer=Clock())  # brought back to 18 when full
    for i in range(4):
        await spend(limiter, f"b{i}", "org-b")
    for i in range(16):
        await spend(limiter, f"a{i}", "org-a")
    await spend(limiter, "a0", "org-a")  # now a0 is A's most recently used
    await spend(limiter, "a16", "org-a")  # 21 keys: three must go
    assert limiter.held() == {"org-a": 14, "org-b": 4}
    readings = {r.name: r.samples[0][1] for r in limiter.readings()}
    assert readings == {"rate_limit_buckets": 18, "rate_limit_buckets_evicted": 3}
    assert [await remaining(limiter, f"a{i}") for i in range(6)] == [0, 2, 2, 2, 1, 1]
    assert [await remaining(limiter, f"b{i}") for i in range(4)] == [1, 1, 1, 1]


async def test_owners_are_levelled_down_together_and_never_below_their_fair_share() -> None:
    limiter = MemoryLimiter(max_keys=100, timer=Clock())  # 90 when full: 30 each of 3
    for i in range(25):
        await spend(limiter, f"small{i}", "org-small")
    for i in range(40):
        await spend(limiter, f"mid{i}", "org-mid")
    for i in range(36):
        await spend(limiter, f"big{i}", "org-big")
    # 101 keys: at least 11 go, from the two largest levelled down to one count (32),
    # none from org-small (below its share of 30).
    assert limiter.held() == {"org-small": 25, "org-mid": 32, "org-big": 32}
    assert [await remaining(limiter, f"mid{i}") for i in (7, 8)] == [2, 1]  # oldest went


async def test_whatever_one_owner_adds_an_owner_within_its_share_keeps_its_state() -> None:
    limiter = MemoryLimiter(max_keys=100, timer=Clock())
    for i in range(20):  # org-b's share is 90 // 3 = 30 with org-a and the deployment
        await spend(limiter, f"b{i}", "org-b", limit=1)
    for i in range(2000):
        await spend(limiter, f"a{i}", "org-a")
        await spend(limiter, f"ip{i}", DEPLOYMENT)
        assert len(limiter) <= 100
    assert limiter.held()["org-b"] == 20
    for i in range(20):
        assert not (await limiter.hit_all([Hit(f"b{i}", 1, 3600.0, 1, "gcra", "org-b")]))[0].allowed


async def test_idle_keys_go_before_any_live_key_whoever_owns_them() -> None:
    clock = Clock()
    limiter = MemoryLimiter(max_keys=20, timer=clock)
    for i in range(10):  # org-b's buckets refill in 0.1 s: soon full, nothing to keep
        assert (await limiter.hit_all([Hit(f"b{i}", 10, 1.0, 1, "gcra", "org-b")]))[0].allowed
    for i in range(10):
        await spend(limiter, f"a{i}", "org-a")
    clock.now = 1 * NS
    await spend(limiter, "a10", "org-a")
    assert limiter.held() == {"org-a": 11}  # every live key of the largest owner kept
    assert limiter.evicted == 0


async def test_window_keys_count_and_go_by_owner_too() -> None:
    limiter = MemoryLimiter(max_keys=10, timer=Clock())  # 9 when full
    for i in range(4):
        hit = Hit(f"b{i}:fw", 1, 3600.0, 1, "fixed_window", "org-b")
        assert (await limiter.hit_all([hit]))[0].allowed
    for i in range(7):
        hit = Hit(f"a{i}:sw", 5, 3600.0, 1, "sliding_window", "org-a")
        assert (await limiter.hit_all([hit]))[0].allowed
    assert limiter.held() == {"org-b": 4, "org-a": 5}
    assert not (await limiter.hit_all([Hit("b0:fw", 1, 3600.0, 1, "fixed_window", "org-b")]))[
        0
    ].allowed


async def test_a_key_two_owners_use_becomes_the_deployments() -> None:
    limiter = MemoryLimiter(timer=Clock())
    await spend(limiter, "rl:per-ip:ip:198.51.100.7", "org-a", limit=5)
    await spend(limiter, "rl:per-ip:ip:198.51.100.7", "org-b", limit=5)
    await spend(limiter, "rl:per-ip:ip:198.51.100.7", "org-a", limit=5)
    assert limiter.held() == {DEPLOYMENT: 1}
    assert await remaining(limiter, "rl:per-ip:ip:198.51.100.7", limit=5) == 2


async def test_reset_and_a_full_refund_forget_the_owner_too() -> None:
    limiter = MemoryLimiter(timer=Clock())
    await spend(limiter, "k1", "org-a")
    await spend(limiter, "k2", "org-a")
    await limiter.reset("k1")
    await limiter.refund([Hit("k2", 2, 3600.0, 1, "gcra", "org-a")])
    assert len(limiter) == 0 and limiter.held() == {}


def test_the_bound_is_a_setting_of_at_least_100() -> None:
    assert fast_settings().rate_limit_max_keys == 1_000_000
    assert fast_settings(rate_limit_max_keys=100).rate_limit_max_keys == 100
    with pytest.raises(ConfigError) as raised:
        fast_settings(rate_limit_max_keys=99)
    assert "rate_limit_max_keys" in str(raised.value)


operations = st.lists(
    st.tuples(
        st.sampled_from(["hit", "window", "single", "reset", "refund", "wait"]),
        st.integers(0, 30),  # which key
        st.sampled_from(["org-a", "org-b", "org-c", DEPLOYMENT]),
    ),
    max_size=300,
)


@settings(max_examples=examples(60), deadline=None)
@given(operations)
def test_every_key_held_is_listed_once_under_one_owner_and_the_bound_holds(
    ops: list[tuple[str, int, str]],
) -> None:
    """Whatever the mix of owners, algorithms, resets, refunds and time passing, each
    stored key belongs to exactly one owner, the count is right and within the bound."""
    clock = Clock()
    limiter = MemoryLimiter(max_keys=12, timer=clock)

    async def run() -> None:
        for kind, i, owner in ops:
            key = f"k{i}"
            if kind == "hit":
                await limiter.hit_all([Hit(key, 3, 10.0, 1, "gcra", owner)])
            elif kind == "window":
                await limiter.hit_all([Hit(key + ":fw", 3, 10.0, 1, "fixed_window", owner)])
            elif kind == "single":
                await limiter.hit(key, 3, 10.0)
            elif kind == "reset":
                await limiter.reset(key)
            elif kind == "refund":
                await limiter.refund([Hit(key, 3, 10.0, 1, "gcra", owner)])
            else:
                clock.now += i * NS // 4
            listed = [k for keys in limiter._lru.values() for k in keys]
            assert sorted(listed) == sorted({*limiter._tats, *limiter._windows})
            assert len(listed) == len(limiter) == sum(limiter.held().values()) <= 12
            assert all(limiter._lru.values())  # no owner listed without keys

    anyio.run(run)
