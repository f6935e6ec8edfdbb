"""Fixtures for the limiter adapters: the shared Redis, a private one, unique prefixes.

Tests that need Redis are skipped with a message saying how to start it when it is
unreachable, and fail instead in CI (``CI=true``), where Redis must be there.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from apiward.adapters.limiter.memory import MemoryLimiter
from apiward.adapters.limiter.redis import RedisLimiter, connect, connect_cluster
from apiward.services.ports import Limiter
from tests.redis_topologies import RedisClusterServers

REDIS_URL = os.environ.get("APIWARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


async def _probe(url: str) -> str | None:
    client = aioredis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        await client.aclose()
    return None


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test alone, so tests never share Redis state."""
    return f"apiward-test:{uuid.uuid4().hex}:"


@asynccontextmanager
async def shared_redis(prefix: str) -> AsyncIterator[aioredis.Redis]:
    """A client of the shared Redis; every key under ``prefix`` is deleted after."""
    problem = await _probe(REDIS_URL)
    if problem:
        _unavailable(
            f"Redis is not reachable at {REDIS_URL} ({problem}). Start one with "
            "`redis-server --port 6379 --save '' --appendonly no --daemonize yes` "
            "(or `docker run -p 6379:6379 redis:7`), or point APIWARD_TEST_REDIS_URL at one."
        )
    client = connect(REDIS_URL, timeout=2.0)
    try:
        yield client
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture
async def redis_client(prefix: str) -> AsyncIterator[aioredis.Redis]:
    """A client of the shared Redis, cleaned of this test's keys afterwards."""
    async with shared_redis(prefix) as client:
        yield client


@asynccontextmanager
async def cluster_limiter(
    cluster: RedisClusterServers, prefix: str, **options: Any
) -> AsyncIterator[RedisLimiter]:
    """A limiter on the test session's Redis Cluster, closed after the block."""
    limiter = RedisLimiter(connect_cluster(cluster.url, timeout=2.0), prefix=prefix, **options)
    try:
        yield limiter
    finally:
        await limiter.aclose()


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("cluster", marks=pytest.mark.redis),
    ]
)
async def limiter(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[Limiter]:
    """Each contract test runs on the memory adapter, the real Redis and a real Redis
    Cluster (three primaries; every key its own subject, so that a decision on several
    keys spans slots and takes the reserve-then-give-back path)."""
    if request.param == "memory":
        yield MemoryLimiter()
        return
    if request.param == "cluster":
        cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
        async with cluster_limiter(cluster, prefix) as limiter:
            yield limiter
        return
    async with shared_redis(prefix) as client:
        yield RedisLimiter(client, prefix=prefix)


class PrivateRedis:
    """A throw-away redis-server on its own port, which a test may kill and restart."""

    def __init__(self, port: int, directory: Path) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._directory = directory
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self._listening():
            pytest.fail(f"Port {self.port} is already in use; the private Redis needs it free.")
        self._process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self._directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait(self._listening, True)

    def hang(self) -> None:
        """Freeze the server (SIGSTOP): it accepts connections and never answers."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None
        self._wait(self._listening, False)

    def _listening(self) -> bool:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def _wait(self, probe: Callable[[], bool], expected: bool) -> None:
        deadline = time.monotonic() + 10
        while probe() is not expected:
            if time.monotonic() > deadline:
                pytest.fail(f"redis-server on port {self.port} did not change state in 10 s")
            time.sleep(0.02)


def start_private_redis(directory: Path) -> PrivateRedis:
    """A private redis-server on a free port, started (the caller kills it). Without
    redis-server the test fails in CI and is skipped elsewhere, saying how to enable it."""
    from tests.live import free_port

    if not Path(REDIS_SERVER).exists():
        _unavailable(
            f"redis-server is not installed ({REDIS_SERVER}); install it "
            "(`apt-get install redis-server`) to run this test."
        )
    server = PrivateRedis(free_port(), directory)
    server.start()
    return server


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A private redis-server on a free port (never the shared 6379), killed at the end."""
    server = start_private_redis(tmp_path)
    yield server
    server.kill()


async def wait_until(condition: Callable[[], object], *, within: float = 10.0) -> None:
    """Poll a condition that other tasks make true, bounded in time."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.01)
