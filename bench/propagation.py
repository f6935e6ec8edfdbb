"""How long a revocation takes to reach the other processes: the invalidation log's poll
(woken by PostgreSQL's notifications) against invalidations pushed through Redis.

    .venv/bin/python -m bench.propagation [--processes 4] [--rounds 100]

Starts ``--processes`` ``apiward serve`` processes (one worker each) on a PostgreSQL
database of its own (``apiward_bench_propagation`` on the local server) and, for the
push, a redis-server of its own on a free port. Each round creates a key through the
first process, makes every other process verify it (their caches are warm), revokes it
through the first, and from the moment the revocation's answer arrives asks each other
process, as fast as it answers, until it refuses the key: that time, per process, is
one sample (its resolution is one request, about a millisecond here). Both modes run
with the default poll interval (0.5 s) and backstop (5 s). The modes: ``poll`` (no
Redis), ``push`` (a single Redis, pub/sub) and ``cluster`` (a 3-primary Redis Cluster of
its own, sharded pub/sub). Prints p50, p99 and the largest per mode and writes
``bench/results/propagation.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator

import httpx
from tests.redis_topologies import running_cluster

from bench.common import BIN, apiward, bench_env, free_port, save, spawn
from bench.redis_faults import Server

DATABASE = "apiward_bench_propagation"
POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def fresh_database() -> str:
    import asyncpg

    async def reset() -> None:
        conn = await asyncpg.connect(POSTGRES_ADMIN)
        await conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {DATABASE}")
        await conn.close()

    asyncio.run(reset())
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{DATABASE}"


@contextlib.contextmanager
def processes(env: dict[str, str], count: int) -> Iterator[list[str]]:
    with contextlib.ExitStack() as stack:
        bases = []
        for _ in range(count):
            port = free_port()
            cmd = [str(BIN / "apiward"), "serve", "--port", str(port), "--workers", "1"]
            bases.append(stack.enter_context(spawn(cmd, env, port, settle=0.2)))
        yield bases


async def refused(client: httpx.AsyncClient, base: str, key: str, start: float) -> float:
    auth = {"Authorization": f"Bearer {key}"}
    while True:
        status = (await client.get(f"{base}/v1/keys", headers=auth)).status_code
        if status == 401:
            return time.perf_counter() - start
        if status != 200:
            raise RuntimeError(f"{base} answered {status} to a probe")
        if time.perf_counter() - start > 30:
            raise RuntimeError(f"{base} still accepts a key revoked 30 s ago")


async def rounds(bases: list[str], owner: str, count: int) -> list[float]:
    samples: list[float] = []
    auth = {"Authorization": f"Bearer {owner}"}
    async with httpx.AsyncClient(timeout=10) as client:
        for i in range(count):
            made = await client.post(
                f"{bases[0]}/v1/keys", headers=auth, json={"name": f"k{i}", "scopes": ["keys:read"]}
            )
            created = made.json()
            key = {"Authorization": f"Bearer {created['key']}"}
            for base in bases[1:]:
                assert (await client.get(f"{base}/v1/keys", headers=key)).status_code == 200
            revoked = await client.post(f"{bases[0]}/v1/keys/{created['id']}/revoke", headers=auth)
            assert revoked.status_code == 200, revoked.text
            start = time.perf_counter()
            samples += await asyncio.gather(
                *(refused(client, base, created["key"], start) for base in bases[1:])
            )
    return samples


def measure(mode: str, database: str, count: int, n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as directory, contextlib.ExitStack() as stack:
        extra = {
            "APIWARD_LOG_LEVEL": "warning",
            "APIWARD_MIGRATE_ON_START": "false",
            # Every probe after the revocation is a failed authentication from one
            # address: past the default 100/minute they would be answered 429 instead.
            "APIWARD_AUTH_FAILURE_LIMIT": "1000000/minute",
        }
        if mode == "push":
            redis = Server(directory)
            redis.start()
            stack.callback(redis.kill)
            extra["APIWARD_REDIS_URL"] = redis.url
        if mode == "cluster":
            cluster = stack.enter_context(running_cluster())
            extra["APIWARD_REDIS_URL"] = cluster.url
            extra["APIWARD_REDIS_CLUSTER"] = "true"
        env = bench_env(database, **extra)
        apiward(
            env, "init", "--org-name", "Bench", "--email", "bench@apiward.test",
            "--password", "correct horse battery",
        )  # fmt: skip
        owner = str(apiward(env, "keys", "create", "--name", "owner", "--scope", "*")["key"])
        with processes(env, count) as bases:
            samples = sorted(asyncio.run(rounds(bases, owner, n)))
    ms = [s * 1000 for s in samples]
    return {
        "samples": len(ms),
        "p50_ms": round(statistics.median(ms), 1),
        "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 1),
        "max_ms": round(ms[-1], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    results = {}
    for mode in ("poll", "push", "cluster"):
        database = fresh_database()
        subprocess.run([str(BIN / "apiward"), "migrate"], env=bench_env(database), check=True)
        results[mode] = measure(mode, database, args.processes, args.rounds)
        print(f"{mode}: {results[mode]}", flush=True)
    save("propagation", {"processes": args.processes, "rounds": args.rounds, **results})


if __name__ == "__main__":
    main()
