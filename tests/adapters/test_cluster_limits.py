"""Rate limits on a real Redis Cluster, exact across `apiward serve` processes on
PostgreSQL, for a decision whose limits live in three slots, and a cluster setting the
server refuses to start with."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from contextlib import ExitStack

import httpx
import pytest
from fastapi.testclient import TestClient

from apiward.adapters.http.app import create_app
from apiward.adapters.limiter.redis import RedisLimiter, connect_cluster
from apiward.adapters.runtime import build
from apiward.adapters.settings import ConfigError
from apiward.core.limits import Policy
from apiward.services.limiting import key_subject, limit_key
from tests.conftest import bootstrap, fast_settings, require_postgres
from tests.live import server_process
from tests.redis_topologies import RedisClusterServers

DAY = 86400.0
N = 300
POLICIES = [
    Policy("per-key", N, DAY, "credential"),
    Policy("per-org", N + 100, DAY, "org"),
    Policy("per-ip", N + 150, DAY, "ip"),
]


def owner(database_url: str) -> tuple[str, str, str]:
    """A fresh organisation on ``database_url``: its id, its owner key's id, the key."""

    async def run() -> tuple[str, str, str]:
        runtime = build(fast_settings(database_url=database_url))
        await runtime.start(background=False)
        try:
            boot = await runtime.tenancy.bootstrap("Acme", "o@acme.test", "correct horse battery")
            principal = await runtime.operators.principal(boot.org.id)
            created = await runtime.keys.create(principal, name="owner", scopes=["*"])
            return boot.org.id, created.key.id, created.plaintext
        finally:
            await runtime.stop()

    return asyncio.run(run())


async def remaining(cluster: RedisClusterServers, policy: Policy, value: str) -> int:
    """What the servers' limiter holds for ``policy`` and ``value``, read from Redis."""
    limiter = RedisLimiter(
        connect_cluster(cluster.url, timeout=2.0), prefix="apiward:", subject=key_subject
    )
    try:
        key = limit_key(policy, policy.key, value)
        return (await limiter.peek(key, policy.limit, policy.period, 0)).remaining
    finally:
        await limiter.aclose()


@pytest.mark.redis
@pytest.mark.postgres
def test_limits_are_exact_across_four_server_processes_on_a_cluster(
    redis_cluster: RedisClusterServers,
) -> None:
    """4 processes, 20 concurrent clients, 500 requests on one key limited to N = 300,
    its organisation to 400 and its address to 450 in the same decision: exactly 300 get
    through, and the organisation and the address have spent exactly 300 each (every
    refused request gave back what it reserved in the other slots)."""
    db = require_postgres()
    org_id, key_id, key = owner(db)
    rates = [{"name": p.name, "rate": f"{p.limit}/day", "key": p.key} for p in POLICIES]
    env = {
        "APIWARD_REDIS_URL": redis_cluster.url,
        "APIWARD_REDIS_CLUSTER": "true",
        # A Redis failure is a 503 here, never a decision of the in-process fallback
        # (which ``open`` would admit): the count is the cluster's alone. A loaded
        # machine may take longer than the default half second.
        "APIWARD_RATE_LIMIT_FAILURE_MODE": "closed",
        "APIWARD_REDIS_TIMEOUT_SECONDS": "5",
        "APIWARD_RATE_LIMITS": json.dumps(rates),
    }
    with ExitStack() as stack:
        servers = [stack.enter_context(server_process(db, **env)) for _ in range(4)]

        async def storm() -> Counter[int]:
            seen: Counter[int] = Counter()
            async with httpx.AsyncClient(timeout=30) as http:

                async def client(n: int) -> None:
                    for i in range(25):
                        base = servers[(n + i) % 4]
                        r = await http.get(
                            f"{base}/v1/keys?page_size=1",
                            headers={"Authorization": f"Bearer {key}"},
                        )
                        seen[r.status_code] += 1

                await asyncio.gather(*(client(n) for n in range(20)))
            return seen

        seen = asyncio.run(storm())
    assert seen == {200: N, 429: 500 - N}
    left = [
        asyncio.run(remaining(redis_cluster, policy, value))
        for policy, value in zip(POLICIES, (key_id, org_id, "127.0.0.1"), strict=True)
    ]
    assert left == [0, 100, 150]


@pytest.mark.redis
def test_the_server_limits_on_the_cluster_and_reports_it_ready(
    redis_cluster: RedisClusterServers, migrated_sqlite_url: str
) -> None:
    settings = fast_settings(
        database_url=migrated_sqlite_url,
        redis_url=redis_cluster.url,
        redis_cluster=True,
        rate_limits=[
            {"name": "per-key", "rate": "2/day", "key": "credential"},
            {"name": "per-org", "rate": "100/day", "key": "org"},
        ],
    )
    with TestClient(create_app(settings)) as client:
        org = bootstrap(client)
        assert client.get("/readyz").json()["checks"]["redis"] == "ok"
        statuses = [client.get("/v1/keys", headers=org.headers()).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]


def test_a_cluster_without_a_url_or_with_a_database_is_refused() -> None:
    with pytest.raises(ConfigError, match="redis_cluster is set but redis_url is not"):
        fast_settings(redis_cluster=True)
    with pytest.raises(ConfigError, match="only database 0") as refused:
        fast_settings(redis_cluster=True, redis_url="redis://:hunter2@127.0.0.1:7000/2")
    assert "hunter2" not in str(refused.value)  # the error names no secret
    with pytest.raises(ConfigError, match="over TCP"):
        fast_settings(redis_cluster=True, redis_url="unix:///run/redis.sock")
    assert fast_settings(redis_cluster=True, redis_url="rediss://10.0.0.5:6379/0").redis_cluster
