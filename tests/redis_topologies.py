"""Redis topologies for the tests, started from Debian's ``redis-server`` on loopback
ports in a temporary directory (no containers) and torn down at the end of the session.

``redis_cluster``: a Redis Cluster of three primaries and no replicas, made with
``redis-cli --cluster create``, ready once every node reports ``cluster_state:ok``.
Without ``redis-server`` (or ``redis-cli``) the tests that need it are skipped with a
message saying how to install it, and fail instead in CI (``CI=true``), where it must be
there (as ``tests/conftest.py`` does for PostgreSQL).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import IN_CI

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
BUS_OFFSET = 10000
"""A Cluster node talks to the others on its port plus this (the cluster bus)."""


def _missing(message: str) -> None:
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_ports(count: int) -> list[int]:
    """``count`` loopback ports free with their bus ports (port + 10000)."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port + BUS_OFFSET < 65536 and _free(port + BUS_OFFSET) and port not in ports:
            ports.append(port)
    return ports


@dataclass
class RedisClusterServers:
    """A running Redis Cluster: its nodes' ports, and the URL of one of them."""

    ports: list[int]
    directory: Path
    require_full_coverage: bool = True
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}"

    def cli(self, port: int, *args: str) -> str:
        done = subprocess.run(
            [REDIS_CLI, "-h", "127.0.0.1", "-p", str(port), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return done.stdout + done.stderr

    def start(self) -> None:
        for port in self.ports:
            node = self.directory / str(port)
            node.mkdir()
            self.processes.append(
                subprocess.Popen(
                    [
                        REDIS_SERVER,
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        str(node / "nodes.conf"),
                        "--cluster-node-timeout",
                        "2000",
                        "--cluster-require-full-coverage",
                        "yes" if self.require_full_coverage else "no",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        str(node),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        self._wait(lambda: all("PONG" in self.cli(p, "PING") for p in self.ports), "answer")
        created = subprocess.run(
            [
                REDIS_CLI,
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout}")
        self._wait(
            lambda: all("cluster_state:ok" in self.cli(p, "CLUSTER", "INFO") for p in self.ports),
            "report cluster_state:ok",
        )

    def stop(self) -> None:
        for process in self.processes:
            process.kill()
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        self.processes.clear()

    def _wait(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 30
        while not ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Redis Cluster's nodes did not {what} within 30 s")
            time.sleep(0.05)


@contextlib.contextmanager
def running_cluster(
    primaries: int = 3, *, require_full_coverage: bool = True
) -> Iterator[RedisClusterServers]:
    """A Redis Cluster of ``primaries`` nodes, stopped and deleted when the block ends.
    ``require_full_coverage``: whether the nodes refuse every command while a slot has
    no live node (Redis's default) or serve the slots they hold."""
    for program in (REDIS_SERVER, REDIS_CLI):
        if not Path(program).exists():
            _missing(
                f"{program} is not installed; install Redis (`apt-get install "
                "redis-server redis-tools`) to run the Redis Cluster tests."
            )
    with tempfile.TemporaryDirectory(prefix="apiward-cluster-") as directory:
        servers = RedisClusterServers(
            cluster_ports(primaries), Path(directory), require_full_coverage
        )
        try:
            servers.start()
            yield servers
        finally:
            servers.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """A 3-primary Redis Cluster for the whole test session."""
    with running_cluster() as servers:
        yield servers
