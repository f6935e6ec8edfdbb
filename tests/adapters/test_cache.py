"""The in-process verification cache: verified records and unknown credentials in areas
bounded apart, records tagged with their organisation, a TTL behind invalidation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from apiward.adapters.cache.memory import MemoryCache
from apiward.services.ports import UNKNOWN
from tests.conftest import fast_settings


class Timer:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_unknown_credentials_never_evict_verified_records() -> None:
    cache = MemoryCache(max_entries=3, max_unknown=5)
    for n in range(3):
        cache.set(f"hot{n}", n, org="org_a")
    for n in range(10_000):
        cache.set_unknown(f"bogus{n}")
    assert [cache.get(f"hot{n}") for n in range(3)] == [0, 1, 2]
    assert cache.evictions == 0
    assert len(cache) == 3 + 5
    assert cache.get("bogus9999") is UNKNOWN and cache.get("bogus0") is None
    cache.set("hot3", 3, org="org_a")  # verified records still recycle among themselves
    assert cache.evictions == 1 and cache.get("hot0") is None


def test_a_record_replaces_an_unknown_and_back() -> None:
    cache = MemoryCache()
    cache.set_unknown("k")
    cache.set("k", "record", org="org_a")
    assert cache.get("k") == "record"
    cache.set_unknown("k")
    assert cache.get("k") is UNKNOWN
    cache.invalidate_org("org_a")  # no record of org_a is left to drop
    assert cache.get("k") is UNKNOWN
    cache.invalidate("k")
    assert cache.get("k") is None


def test_an_org_invalidation_drops_that_orgs_records_only() -> None:
    cache = MemoryCache(max_entries=10)
    cache.set("a1", 1, org="org_a")
    cache.set("a2", 2, org="org_a")
    cache.set("b1", 3, org="org_b")
    cache.set("moved", 4, org="org_a")
    cache.set("moved", 5, org="org_b")  # re-tagged, not left behind under org_a
    cache.set_unknown("nobody")
    cache.invalidate_org("org_a")
    assert (cache.get("a1"), cache.get("a2")) == (None, None)
    assert (cache.get("b1"), cache.get("moved")) == (3, 5)
    assert cache.get("nobody") is UNKNOWN
    cache.forget_unknown()
    assert cache.get("nobody") is None and cache.get("b1") == 3
    cache.invalidate_org("org_b")
    assert len(cache) == 0


def test_the_ttl_holds_for_both_areas() -> None:
    timer = Timer()
    cache = MemoryCache(ttl=60, timer=timer)
    cache.set("k", "record", org="org_a")
    cache.set_unknown("u")
    timer.now = 59.9
    assert cache.get("k") == "record" and cache.get("u") is UNKNOWN
    timer.now = 60.0
    assert cache.get("k") is None and cache.get("u") is None
    assert len(cache) == 0


def test_the_unknown_area_is_a_validated_setting() -> None:
    assert fast_settings().cache_max_unknown == 10_000
    assert fast_settings(cache_max_unknown=50).cache_max_unknown == 50
    for bad in (0, -1, 10_000_001):
        with pytest.raises(ValueError, match="cache_max_unknown"):
            fast_settings(cache_max_unknown=bad)
    with pytest.raises(ValueError, match="max_unknown"):
        MemoryCache(max_unknown=0)


def test_a_record_read_before_an_invalidation_is_not_cached_after_it() -> None:
    """A verification reading the store while a revocation is applied must not put the
    record it read (from before the revocation) back into the cache."""
    cache = MemoryCache()
    invalidations: list[Callable[[], None]] = [
        lambda: cache.invalidate("k"),
        lambda: cache.invalidate_org("org_a"),
        cache.forget_unknown,
        cache.clear,
    ]
    for invalidation in invalidations:
        since = cache.epoch  # the load starts
        invalidation()  # the poller applies a change meanwhile
        cache.set("k", "read before the change", org="org_a", since=since)
        cache.set_unknown("u", since=since)
        assert cache.get("k") is None and cache.get("u") is None
    since = cache.epoch
    cache.set("k", "fresh", org="org_a", since=since)
    assert cache.get("k") == "fresh"


def test_a_record_past_its_ttl_is_served_stale_within_the_bound_only() -> None:
    timer = Timer()
    cache = MemoryCache(ttl=60, timer=timer, serve_stale=600)
    cache.set("k", "record", org="org_a")
    cache.set("gone", "record", org="org_a")
    cache.set("other", "record", org="org_b")
    timer.now = 61
    assert cache.get("k") is None  # a miss: the store is read again when it can be
    assert cache.stale("k") == "record"
    cache.invalidate("gone")
    cache.invalidate_org("org_b")
    assert cache.stale("gone") is None and cache.stale("other") is None  # never served
    timer.now = 60 + 600
    assert cache.stale("k") is None
    assert cache.get("k") is None and "k" not in cache  # dropped past the bound
    assert cache.stale_served == 1


def test_without_a_serve_stale_bound_nothing_is_served_past_the_ttl() -> None:
    timer = Timer()
    cache = MemoryCache(ttl=60, timer=timer)
    cache.set("k", "record", org="org_a")
    timer.now = 60
    assert cache.get("k") is None and cache.stale("k") is None and "k" not in cache


def test_an_exhausted_pool_is_an_overloaded_store_not_an_outage() -> None:
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    from apiward.adapters.storage.sql.errors import map_db_errors
    from apiward.core.errors import ServiceUnavailable, StoreSaturated

    with pytest.raises(StoreSaturated), map_db_errors():
        raise PoolTimeout("QueuePool limit reached")
    with pytest.raises(ServiceUnavailable) as down, map_db_errors():
        raise ConnectionRefusedError("connect failed")
    assert not isinstance(down.value, StoreSaturated)


@pytest.mark.anyio
async def test_an_overloaded_store_serves_nothing_stale(tmp_path: Any) -> None:
    """Every pooled connection busy is not an outage: a key past its TTL is refused
    with the 503, not served stale (it is, when the database is unreachable)."""
    import asyncio

    from apiward.adapters.runtime import build
    from apiward.core.errors import ServiceUnavailable, StoreSaturated

    settings = fast_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 's.db'}", cache_ttl_seconds=0.05
    )
    runtime = build(settings)
    await runtime.start(background=False)
    store = runtime.auth._store
    try:
        boot = await runtime.tenancy.bootstrap("Acme", "o@acme.test", "correct horse battery")
        owner = await runtime.operators.principal(boot.org.id)
        made = await runtime.keys.create(owner, name="k", scopes=["things:read"])
        await runtime.auth.verified(made.plaintext)  # cached
        await asyncio.sleep(0.2)  # past the TTL, far within the serve-stale bound

        class Failing:
            def __init__(self, error: Exception) -> None:
                self.error = error

            def begin(self) -> Any:
                raise self.error

        runtime.auth._store = Failing(StoreSaturated())  # type: ignore[assignment]
        with pytest.raises(StoreSaturated):
            await runtime.auth.verified(made.plaintext)
        runtime.auth._store = Failing(ServiceUnavailable())  # type: ignore[assignment]
        assert (await runtime.auth.verified(made.plaintext)).key.id == made.key.id
    finally:
        runtime.auth._store = store
        await runtime.stop()
