"""A crowd of requests meeting an expiring token renews it once, and never sends it stale.

The fake's token endpoint is slowed down (an ``await`` in the async tests, a short real
sleep in the thread tests) so that the other requests really are waiting while the
first one renews.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest

from apiward.client import AsyncClient, Client
from apiward.client.testing import FakeApiward
from tests.client.conftest import BASE_URL, CLIENT_ID, CLIENT_SECRET, PASSWORD, USER, FakeClock

CROWD = 100


def slow_async(fake: FakeApiward) -> httpx.MockTransport:
    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/v1/auth/"):
            for _ in range(5):
                await asyncio.sleep(0)
        else:
            await asyncio.sleep(0)
        return fake(request)

    return httpx.MockTransport(handler)


def slow_sync(fake: FakeApiward) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/v1/auth/"):
            time.sleep(0.05)
        return fake(request)

    return httpx.MockTransport(handler)


def api_tokens(fake: FakeApiward) -> list[str]:
    return [
        r.headers["authorization"].removeprefix("Bearer ")
        for r in fake.requests
        if not r.url.path.startswith("/v1/auth/")
    ]


async def crowd(call: Callable[[], Awaitable[httpx.Response]]) -> list[int]:
    responses = await asyncio.gather(*(call() for _ in range(CROWD)))
    return [r.status_code for r in responses]


def thread_crowd(call: Callable[[], httpx.Response]) -> list[int]:
    barrier = threading.Barrier(CROWD)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            statuses.append(call().status_code)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(CROWD)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    return statuses


@pytest.mark.anyio
async def test_100_tasks_meeting_a_refused_token_refresh_it_once(
    fake: FakeApiward, clock: FakeClock
) -> None:
    """All 100 are refused with 401; one refreshes, the 99 others reuse its new token."""
    async with AsyncClient(
        BASE_URL, username=USER, password=PASSWORD, transport=slow_async(fake), clock=clock
    ) as client:
        await client.get("/v1/things")
        old = client.tokens
        fake.expire_access_tokens()
        assert await crowd(lambda: client.get("/v1/things")) == [200] * CROWD
        new = client.tokens
    assert fake.grants == {"password": 1, "refresh_token": 1}
    assert fake.refused == ["TOKEN_EXPIRED"] * CROWD
    assert old is not None and new is not None
    assert api_tokens(fake)[-CROWD:] == [new.access_token] * CROWD


@pytest.mark.anyio
async def test_100_tasks_meeting_an_expiring_token_refresh_once_and_never_send_it(
    fake: FakeApiward, clock: FakeClock
) -> None:
    """Past the refresh margin, no request carries the old token, and one refresh is made."""
    async with AsyncClient(
        BASE_URL, username=USER, password=PASSWORD, transport=slow_async(fake), clock=clock
    ) as client:
        await client.get("/v1/things")
        clock.advance(3600 - 30)
        assert await crowd(lambda: client.get("/v1/things")) == [200] * CROWD
        assert client.tokens is not None
        new = client.tokens.access_token
    assert fake.grants == {"password": 1, "refresh_token": 1}
    assert fake.refused == []
    assert api_tokens(fake)[1:] == [new] * CROWD


@pytest.mark.anyio
async def test_100_tasks_starting_without_a_token_sign_in_once(
    fake: FakeApiward, clock: FakeClock
) -> None:
    """The first sign-in is single-flight too (client credentials here)."""
    async with AsyncClient(
        BASE_URL,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        transport=slow_async(fake),
        clock=clock,
    ) as client:
        assert await crowd(lambda: client.get("/v1/things")) == [200] * CROWD
    assert fake.grants == {"client_credentials": 1}


def test_100_threads_meeting_a_refused_token_refresh_it_once(
    fake: FakeApiward, clock: FakeClock
) -> None:
    """The sync client's lock makes the same promise across threads."""
    with Client(
        BASE_URL, username=USER, password=PASSWORD, transport=slow_sync(fake), clock=clock
    ) as client:
        client.get("/v1/things")
        fake.expire_access_tokens()
        assert thread_crowd(lambda: client.get("/v1/things")) == [200] * CROWD
    assert fake.grants == {"password": 1, "refresh_token": 1}
    assert len(fake.refused) <= CROWD


def test_100_threads_meeting_an_expiring_token_refresh_once_and_never_send_it(
    fake: FakeApiward, clock: FakeClock
) -> None:
    """Across threads too, the stale token is never sent once the margin is reached."""
    with Client(
        BASE_URL, username=USER, password=PASSWORD, transport=slow_sync(fake), clock=clock
    ) as client:
        client.get("/v1/things")
        clock.advance(3600 - 30)
        assert thread_crowd(lambda: client.get("/v1/things")) == [200] * CROWD
        assert client.tokens is not None
        new = client.tokens.access_token
    assert fake.grants == {"password": 1, "refresh_token": 1}
    assert fake.refused == []
    assert api_tokens(fake)[1:] == [new] * CROWD
