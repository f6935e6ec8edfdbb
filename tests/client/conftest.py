"""Fixtures for the SDK tests: a frozen clock, recorded sleeps, the fake server, clients.

Nothing here sleeps for real: the clients get ``clock`` and ``sleep`` functions that
only move a ``FakeClock``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

import pytest

from apiward.client import AsyncClient, Client
from apiward.client.testing import FakeApiward

BASE_URL = "https://api.example.com"
USER, PASSWORD = "ada@example.com", "correct horse battery staple"
CLIENT_ID, CLIENT_SECRET = "svc_reporting", "cs_live_8kq3Vd0xW2pL9mZr4TbY"
THINGS = [{"iccid": f"8937010000247156{n:04d}", "name": f"Device-{n:03d}"} for n in range(45)]


class FakeClock:
    """Unix time that moves only when told to."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Sleeps:
    """A ``sleep`` (and an async one) that records each wait and moves the clock."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.advance(seconds)

    async def asleep(self, seconds: float) -> None:
        self(seconds)


class MakeClient(Protocol):
    def __call__(self, **kwargs: Any) -> Client: ...


class MakeAsyncClient(Protocol):
    def __call__(self, **kwargs: Any) -> AsyncClient: ...


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleeps(clock: FakeClock) -> Sleeps:
    return Sleeps(clock)


@pytest.fixture
def fake(clock: FakeClock) -> FakeApiward:
    """A fake apiward with a user, an OAuth client, and 45 things behind ``things:read``."""
    fake = FakeApiward(clock=clock)
    fake.add_user(USER, PASSWORD, scopes=["things:read", "things:write"])
    fake.add_client(CLIENT_ID, CLIENT_SECRET, scopes=["things:read"])
    fake.add_collection("/v1/things", THINGS, scope="things:read")
    return fake


def _defaults(fake: FakeApiward, clock: FakeClock, kwargs: dict[str, Any]) -> dict[str, Any]:
    if not {"api_key", "client_id", "tokens", "auth"} & kwargs.keys():
        kwargs.setdefault("username", USER)
        kwargs.setdefault("password", PASSWORD)
    kwargs.setdefault("transport", fake.transport())
    kwargs.setdefault("clock", clock)
    return kwargs


@pytest.fixture
def make_client(fake: FakeApiward, clock: FakeClock, sleeps: Sleeps) -> Iterator[MakeClient]:
    """Clients of the fake, signing in as the user unless told otherwise; closed after."""
    clients: list[Client] = []

    def make(**kwargs: Any) -> Client:
        kwargs = _defaults(fake, clock, kwargs)
        kwargs.setdefault("sleep", sleeps)
        client = Client(kwargs.pop("base_url", BASE_URL), **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
async def make_async_client(
    fake: FakeApiward, clock: FakeClock, sleeps: Sleeps
) -> AsyncIterator[MakeAsyncClient]:
    """Async clients of the fake, as ``make_client``."""
    clients: list[AsyncClient] = []

    def make(**kwargs: Any) -> AsyncClient:
        kwargs = _defaults(fake, clock, kwargs)
        kwargs.setdefault("sleep", sleeps.asleep)
        client = AsyncClient(kwargs.pop("base_url", BASE_URL), **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()
