"""Rate limits on the real Redis: exact across server processes, and Redis outages
handled as configured (fail open or closed), with recovery."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from apiward.adapters.http.app import create_app
from apiward.adapters.limiter.fallback import FallbackLimiter
from tests.adapters.limiter.conftest import PrivateRedis, start_private_redis
from tests.adapters.test_processes import owner_key
from tests.conftest import bootstrap, fast_settings
from tests.live import server_process

ORG_LIMIT = '[{"name": "org-daily", "rate": "1000/day", "key": "org"}]'  # no refill in the test


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = start_private_redis(tmp_path)
    yield server
    server.kill()


@pytest.mark.redis
def test_limit_is_exact_across_four_server_processes(tmp_path: Path, redis: PrivateRedis) -> None:
    """20 concurrent clients over 4 processes, limit 1000: exactly 1000 get through."""
    db = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    key = owner_key(db)
    env = {"APIWARD_REDIS_URL": redis.url, "APIWARD_RATE_LIMITS": ORG_LIMIT}
    with ExitStack() as stack:
        servers = [stack.enter_context(server_process(db, **env)) for _ in range(4)]

        async def storm() -> Counter[int]:
            seen: Counter[int] = Counter()
            async with httpx.AsyncClient(timeout=30) as http:

                async def client(n: int) -> None:
                    for i in range(70):
                        base = servers[(n + i) % 4]
                        r = await http.get(
                            f"{base}/v1/keys?page_size=1",
                            headers={"Authorization": f"Bearer {key}"},
                        )
                        seen[r.status_code] += 1

                await asyncio.gather(*(client(n) for n in range(20)))
            return seen

        seen = asyncio.run(storm())
    assert seen == {200: 1000, 429: 400}


@pytest.mark.redis
@pytest.mark.parametrize(("mode", "down_status"), [("open", 200), ("closed", 503)])
def test_redis_outage_is_handled_as_configured(
    tmp_path: Path, redis: PrivateRedis, mode: str, down_status: int
) -> None:
    settings = fast_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'o.db'}",
        redis_url=redis.url,
        rate_limit_failure_mode=mode,
        rate_limits=[{"name": "per-key", "rate": "1000/minute", "key": "credential"}],
    )
    with TestClient(create_app(settings)) as client:
        org = bootstrap(client)
        assert client.get("/v1/keys", headers=org.headers()).status_code == 200
        assert client.get("/readyz").json()["checks"]["redis"] == "ok"
        redis.kill()
        statuses = {client.get("/v1/keys", headers=org.headers()).status_code for _ in range(5)}
        assert statuses == {down_status}
        if mode == "closed":
            r = client.get("/v1/keys", headers=org.headers())
            assert "Redis" in r.json()["message"]
            assert r.headers["retry-after"] == "5"
            ready = client.get("/readyz")
            assert (ready.status_code, ready.headers["retry-after"]) == (503, "5")
        else:
            assert client.get("/readyz").json()["checks"]["redis"] == "degraded"
        redis.start()
        deadline = time.monotonic() + 10  # the background probe closes the circuit
        while client.get("/readyz").json()["checks"]["redis"] != "ok":
            assert time.monotonic() < deadline, "service did not resume"
            time.sleep(0.2)
        assert client.get("/v1/keys", headers=org.headers()).status_code == 200


@pytest.mark.redis
@pytest.mark.parametrize(
    ("mode", "status", "check"), [("open", 200, "degraded"), ("closed", 503, "unreachable")]
)
def test_a_hung_redis_costs_readyz_its_bound_and_no_request_more(
    tmp_path: Path, redis: PrivateRedis, mode: str, status: int, check: str
) -> None:
    """Redis frozen (SIGSTOP): `/readyz` answers within APIWARD_REDIS_TIMEOUT_SECONDS,
    and the circuit it opened spares every request after it (none waits on Redis)."""
    settings = fast_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'h.db'}",
        redis_url=redis.url,
        rate_limit_failure_mode=mode,
        redis_timeout_seconds=0.3,
        rate_limits=[{"name": "per-key", "rate": "1000/minute", "key": "credential"}],
    )
    with TestClient(create_app(settings)) as client:
        org = bootstrap(client)
        limiter = client.app.state.runtime.limiter  # type: ignore[attr-defined]
        assert isinstance(limiter, FallbackLimiter)
        assert client.get("/v1/keys", headers=org.headers()).status_code == 200
        redis.hang()
        began = time.monotonic()
        ready = client.get("/readyz")
        assert time.monotonic() - began < 0.3 + 3.0  # generous: a loaded machine
        assert (ready.status_code, ready.json()["checks"]["redis"]) == (status, check)
        statuses = {client.get("/v1/keys", headers=org.headers()).status_code for _ in range(10)}
        assert statuses == {status}
        assert limiter.failed_calls == 1  # the readiness ping's: no request waited
        redis.resume()
        deadline = time.monotonic() + 10
        while client.get("/readyz").json()["checks"]["redis"] != "ok":
            assert time.monotonic() < deadline, "the circuit did not close"
            time.sleep(0.05)
        assert client.get("/v1/keys", headers=org.headers()).status_code == 200
