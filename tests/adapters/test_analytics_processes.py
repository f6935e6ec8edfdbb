"""Two real server processes on one PostgreSQL count one key's traffic: the stored
totals are the exact sum of both (upserts add, never overwrite), shutdown flushes."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from apiward.adapters.storage.sql import SqlStore
from apiward.core import analytics
from apiward.core.clock import SystemClock
from tests.adapters.test_processes import owner_key
from tests.conftest import require_postgres
from tests.live import spawn_server

pytestmark = pytest.mark.postgres


def test_two_processes_sum_exactly_on_postgresql() -> None:
    url = require_postgres()
    key = owner_key(url)
    env = {"APIWARD_ANALYTICS_FLUSH_SECONDS": "0.3"}  # several flushes while traffic runs
    sent = {0: 0, 1: 0}
    with spawn_server(url, **env) as first, spawn_server(url, **env) as second:

        def traffic(which: int, base: str, n: int) -> None:
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as c:
                for _ in range(n):
                    assert c.get("/v1/keys").status_code == 200
                    sent[which] += 1

        with ThreadPoolExecutor(2) as pool:
            jobs = [
                pool.submit(traffic, 0, first.url, 157),
                pool.submit(traffic, 1, second.url, 211),
            ]
            for job in jobs:
                job.result()
    # Both processes have stopped, flushing what they still held.

    async def stored() -> int:
        store = SqlStore.from_url(url)
        try:
            now = SystemClock().now()
            q = analytics.query(
                since="1h", until=None, granularity="minute", group_by="route,outcome", now=now
            )
            async with store.begin() as tx:
                orgs = await tx.list_orgs()
                rows = await tx.verification_counts(orgs[0].id, "live", q)
            return sum(r.count for r in rows if (r.route, r.outcome) == ("/v1/keys", "VALID"))
        finally:
            await store.close()

    assert asyncio.run(stored()) == sent[0] + sent[1] == 368
