"""Requests that miss one record at once share one store read (``services/flights.py``):
a cold cache under load sends one read per record to the store, not one per request,
and sharing never hands a request a record read before an invalidation it could see."""

from __future__ import annotations

import asyncio

import pytest

from apiward.adapters.runtime import build
from apiward.core.errors import ServiceUnavailable
from apiward.core.models import RequestContext
from apiward.services.flights import Flights
from tests.conftest import FakeClock, fast_settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Reads:
    """A store read that waits for ``release`` and counts how often it ran."""

    def __init__(self) -> None:
        self.count = 0
        self.release = asyncio.Event()

    async def __call__(self) -> str:
        self.count += 1
        mine = self.count
        await self.release.wait()
        return f"record {mine}"


async def test_callers_that_miss_together_share_one_read() -> None:
    flights, read = Flights(), Reads()
    calls = [asyncio.ensure_future(flights.share("k", 0, read)) for _ in range(50)]
    await asyncio.sleep(0)
    read.release.set()
    assert await asyncio.gather(*calls) == ["record 1"] * 50
    assert read.count == 1
    assert flights.shared == 49
    assert await flights.share("k", 0, read) == "record 2"  # landed: the next one reads


async def test_a_caller_after_an_invalidation_reads_for_itself() -> None:
    """The flight began at epoch 0; a caller at epoch 1 (an invalidation applied since)
    does not take what it will bring."""
    flights, read = Flights(), Reads()
    before = asyncio.ensure_future(flights.share("k", 0, read))
    await asyncio.sleep(0)
    after = asyncio.ensure_future(flights.share("k", 1, read))
    await asyncio.sleep(0)
    read.release.set()
    assert {await before, await after} == {"record 1", "record 2"}
    assert read.count == 2


async def test_the_first_caller_gone_leaves_the_read_to_the_others() -> None:
    flights, read = Flights(), Reads()
    first = asyncio.ensure_future(flights.share("k", 0, read))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(flights.share("k", 0, read))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    read.release.set()
    assert await second == "record 1"
    assert first.cancelled()


async def test_a_cancelled_read_is_unavailable_to_the_callers_still_waiting() -> None:
    """The read itself cancelled (the process stopping): each caller gets an answer it
    can serve (``ServiceUnavailable``, as for a store that cannot be read), not a
    cancellation it never asked for."""
    flights, read = Flights(), Reads()
    calls = [asyncio.ensure_future(flights.share("k", 0, read)) for _ in range(3)]
    await asyncio.sleep(0)
    flights._flying["k", 0].cancel()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, ServiceUnavailable) for r in results), results


async def test_a_failed_read_fails_every_caller_that_shared_it() -> None:
    flights = Flights()
    started = asyncio.Event()

    async def failing() -> str:
        started.set()
        await asyncio.sleep(0)
        raise ServiceUnavailable("the store is down")

    calls = [asyncio.ensure_future(flights.share("k", 0, failing)) for _ in range(3)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, ServiceUnavailable) for r in results)
    assert started.is_set()


async def test_fifty_first_requests_for_one_key_read_the_store_once(
    database_url: str, clock: FakeClock
) -> None:
    """A process whose cache is cold (just started): 50 requests with one key at once
    verify it with one read of the key and one of its user, not 50 of each."""
    runtime = build(fast_settings(database_url=database_url), clock=clock)
    await runtime.start(background=False)
    try:
        boot = await runtime.tenancy.bootstrap("Acme", "o@acme.test", "correct horse battery")
        owner = await runtime.operators.principal(boot.org.id)
        key = (await runtime.keys.create(owner, name="k", scopes=["things:read"])).plaintext
        runtime.cache.clear()
        shared = runtime.auth.flights.shared
        context = RequestContext(ip="203.0.113.7")
        principals = await asyncio.gather(
            *(runtime.auth.authenticate_key(key, context) for _ in range(50))
        )
        assert {p.org_id for p in principals} == {boot.org.id}
        assert runtime.auth.flights.shared - shared == 49  # the key's read, shared by 49
    finally:
        await runtime.stop()
