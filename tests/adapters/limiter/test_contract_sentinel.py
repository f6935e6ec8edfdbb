"""The limiter contract (``test_contract.py``, written once) on a Redis behind Sentinel:
the client finds the master through the sentinels of ``redis+sentinel://``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from apiward.adapters.limiter.redis import RedisLimiter, connect
from apiward.services.ports import Limiter
from tests.adapters.limiter.test_contract import *  # noqa: F403 (the same tests, run here)
from tests.redis_sentinel import SentinelGroup, sentinel_group  # noqa: F401 (a fixture)

# The contract module marks its tests for anyio (one mark); these need Redis too.
pytestmark = [pytest.mark.anyio, pytest.mark.redis]  # type: ignore[assignment]


@pytest.fixture
async def limiter(sentinel_group: SentinelGroup, prefix: str) -> AsyncIterator[Limiter]:  # noqa: F811
    """The Redis limiter on the group's master, found through its sentinels."""
    client = connect(sentinel_group.url(), timeout=2.0)
    try:
        yield RedisLimiter(client, prefix=prefix)
    finally:
        await client.aclose()
