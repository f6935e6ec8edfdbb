"""Exact across processes: 4 OS processes x 20 tasks on one Redis key admit exactly the limit."""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from threading import Barrier as BarrierType

import pytest
import redis.asyncio as aioredis

from apiward.adapters.limiter.redis import RedisLimiter, connect
from tests.adapters.limiter.conftest import REDIS_URL

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

PROCESSES = 4
TASKS = 20
ATTEMPTS = 3000
LIMIT = 1000
PERIOD = 86400.0  # one unit refills every 86.4 s: none does during the test


async def _attack(url: str, prefix: str, attempts: int) -> tuple[int, int]:
    client = connect(url, timeout=5.0, max_connections=TASKS)
    limiter = RedisLimiter(client, prefix=prefix)
    admitted = denied = 0
    share, extra = divmod(attempts, TASKS)

    async def task(n: int) -> None:
        nonlocal admitted, denied
        for _ in range(n):
            if (await limiter.hit("shared", LIMIT, PERIOD)).allowed:
                admitted += 1
            else:
                denied += 1

    try:
        await asyncio.gather(*(task(share + (i < extra)) for i in range(TASKS)))
    finally:
        await limiter.aclose()
    return admitted, denied


def attack(url: str, prefix: str, attempts: int, start: BarrierType) -> tuple[int, int]:
    """One server process: its own event loop, client and 20 concurrent tasks.

    The barrier lets every process finish starting before any of them hits Redis, so
    that the four really run at once.
    """
    start.wait(timeout=60)
    return asyncio.run(_attack(url, prefix, attempts))


async def test_four_processes_of_twenty_tasks_admit_exactly_the_limit(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    """3000 attempts on a limit of 1000 from 80 concurrent clients: 1000 admitted, not 1001."""
    context = multiprocessing.get_context("spawn")
    loop = asyncio.get_running_loop()
    with context.Manager() as manager, ProcessPoolExecutor(PROCESSES, mp_context=context) as pool:
        start = manager.Barrier(PROCESSES)
        futures = [
            loop.run_in_executor(pool, attack, REDIS_URL, prefix, ATTEMPTS // PROCESSES, start)
            for _ in range(PROCESSES)
        ]
        results = await asyncio.wait_for(asyncio.gather(*futures), timeout=120)
    admitted = sum(a for a, _ in results)
    denied = sum(d for _, d in results)
    assert (admitted, denied) == (LIMIT, ATTEMPTS - LIMIT)
    after = await RedisLimiter(redis_client, prefix=prefix).peek("shared", LIMIT, PERIOD, 0)
    assert after.remaining == 0
