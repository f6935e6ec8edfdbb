"""A Redis Sentinel group on loopback ports, from Debian's ``redis-server``: a master,
one replica and three sentinels (``redis-server --sentinel``), in a temporary directory.

The sentinels judge the master down after ``DOWN_AFTER_MS`` without an answer and
promote the replica; a test may kill the master (``SentinelGroup.kill_master``) and
wait for the promotion. Without ``redis-server`` the tests that need a group are
skipped with a message saying how to get it, and fail instead in CI (``CI=true``),
as the other required services do (tests/conftest.py).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from tests.conftest import IN_CI
from tests.live import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
MASTER = "apiward"
DOWN_AFTER_MS = 500
FAILOVER_TIMEOUT_MS = 2000


@dataclass
class SentinelGroup:
    directory: Path
    master_port: int = 0
    replica_port: int = 0
    sentinel_ports: list[int] = field(default_factory=list)
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    def url(self, db: int = 0) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{MASTER}/{db}"

    def master_address(self) -> tuple[str, int] | None:
        """Where the sentinels say the master is now (any one that answers)."""
        for port in self.sentinel_ports:
            try:
                with redis.Redis(port=port, socket_timeout=0.5) as sentinel:
                    found = sentinel.execute_command("SENTINEL", "get-master-addr-by-name", MASTER)
            except redis.RedisError:
                continue
            if found:
                return found[0].decode(), int(found[1])
        return None

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2)

    def kill_master(self) -> None:
        """SIGKILL the current master: it answers nothing from now on."""
        process = self.processes.pop(self.master_port)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def wait_for_promotion(self, within: float = 15.0) -> None:
        """Until every sentinel names the replica as the master."""
        wait(
            lambda: all(
                _ask(port, "SENTINEL", "get-master-addr-by-name", MASTER)
                == [b"127.0.0.1", str(self.replica_port).encode()]
                for port in self.sentinel_ports
            ),
            within,
            "the sentinels did not promote the replica",
        )

    def stop(self) -> None:
        for process in self.processes.values():
            process.kill()
        for process in self.processes.values():
            process.wait(timeout=10)
        self.processes.clear()

    def _spawn(self, port: int, *args: str) -> None:
        process = subprocess.Popen(
            [REDIS_SERVER, *args],
            cwd=self.directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.processes[port] = process
        wait(lambda: _listening(port), 10, f"redis-server on port {port} did not start")


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _ask(port: int, *command: str) -> object:
    try:
        with redis.Redis(port=port, socket_timeout=0.5) as client:
            return client.execute_command(*command)
    except redis.RedisError:
        return None


def _replicating(port: int) -> bool:
    try:
        with redis.Redis(port=port, socket_timeout=0.5) as client:
            return bool(client.info("replication").get("master_link_status") == "up")
    except redis.RedisError:
        return False


def wait(condition: object, within: float, message: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(message)
        time.sleep(0.05)


def _server_args(port: int, directory: Path) -> list[str]:
    return [
        "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--daemonize", "no", "--dir", str(directory), "--dbfilename", f"dump-{port}.rdb",
        "--repl-diskless-sync-delay", "0",  # a replica syncs at once, not after 5 s
    ]  # fmt: skip


def start_sentinel_group(directory: Path) -> SentinelGroup:
    """Start a master, a replica and three sentinels, and wait until the sentinels
    know the replica and each other (a failover needs a majority of them to agree)."""
    if not Path(REDIS_SERVER).exists():
        message = (
            f"redis-server is not installed ({REDIS_SERVER}); install it "
            "(`apt-get install redis-server`) to run the Sentinel tests."
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    group = SentinelGroup(directory)
    try:
        group.master_port, group.replica_port = free_port(), free_port()
        group._spawn(group.master_port, *_server_args(group.master_port, directory))
        group._spawn(
            group.replica_port,
            *_server_args(group.replica_port, directory),
            "--replicaof", "127.0.0.1", str(group.master_port),
        )  # fmt: skip
        wait(
            lambda: _replicating(group.replica_port),
            10,
            "the replica did not connect to the master",
        )
        for _ in range(3):
            port = free_port()
            conf = directory / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {group.master_port} 2\n"
                f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {MASTER} 1\n"
            )
            group.sentinel_ports.append(port)
            group._spawn(port, str(conf), "--sentinel")
        wait(
            lambda: all(_knows_all(group, port) for port in group.sentinel_ports),
            15,
            ("the sentinels did not discover the replica and each other"),
        )
    except BaseException:
        group.stop()
        raise
    return group


def _knows_all(group: SentinelGroup, port: int) -> bool:
    fields = _ask(port, "SENTINEL", "MASTER", MASTER)  # redis-py makes it a dict
    if not isinstance(fields, dict):
        return False
    return fields.get(b"num-slaves") == b"1" and fields.get(b"num-other-sentinels") == b"2"


@pytest.fixture(scope="session")
def sentinel_group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    """A Sentinel group shared by the tests that do not stop any of its servers."""
    group = start_sentinel_group(tmp_path_factory.mktemp("sentinel"))
    yield group
    group.stop()


@pytest.fixture
def private_sentinel_group(tmp_path: Path) -> Iterator[SentinelGroup]:
    """A Sentinel group of this test alone (it may kill the master)."""
    group = start_sentinel_group(tmp_path)
    yield group
    group.stop()
