"""Rate-limit decisions per second per process on a single Redis, on a Redis behind
Sentinel and on a Redis Cluster, side by side in one run, and the spurious refusals a
cluster's reservations cause under contention.

Run: ``.venv/bin/python -m bench.cluster`` (about a minute and a half). It starts a
single ``redis-server``, a Sentinel group (a master, a replica, three sentinels) and a
3-primary Redis Cluster of its own on free loopback ports (from Debian's
``redis-server`` and ``redis-cli``; nothing else is touched) and stops them at the end.
Prints two tables and writes ``bench/results/cluster.json``.

Decisions: a request's limits through ``hit_all``, limits high enough that nothing is
refused (the decision is timed, not 429s), 1,000 credentials in rotation:

- *1 limit*: a credential's limit (one key, one slot);
- *2 limits, 1 subject*: a credential's per-second and per-day limits (one slot on the
  cluster: the keys share the subject's hash tag), one script;
- *3 limits, 3 subjects*: a credential's, its organisation's and its address's limits;
  one script on a single Redis, three slots reserved in turn on the cluster.

Contention: ``GOOD`` decisions on fresh credentials and ``BAD`` on credentials already
spent, all on one organisation limit of exactly ``GOOD`` (and an address limit that never
binds), in random order from 50 tasks over 4 clients. A bad decision is refused; an
exact all-or-nothing limiter admits every good one. On the cluster a bad decision may
hold an organisation unit (reserved before its credential's slot refused it) while a
good one asks: a good decision refused is a spurious refusal. Every round also checks
the organisation spent exactly what was admitted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.live import free_port
from tests.redis_sentinel import start_sentinel_group
from tests.redis_topologies import REDIS_SERVER, running_cluster

from apiward.adapters.limiter.redis import RedisLimiter, connect, connect_cluster
from apiward.core.limits import Hit, Policy
from apiward.services.limiting import key_subject, limit_key

RESULTS = Path(__file__).parent / "results" / "cluster.json"
DAY = 86400.0
HIGH = 1_000_000_000
CREDENTIALS = [f"k{i}" for i in range(1000)]
Row = dict[str, Any]
Factory = Callable[[], RedisLimiter]

PER_SECOND = Policy("per-second", 1_000_000, 1.0, "credential")
PER_DAY = Policy("per-day", HIGH, DAY, "credential")
PER_ORG = Policy("per-org", HIGH, DAY, "org")
PER_IP = Policy("per-ip", HIGH, DAY, "ip")


def decision(shape: str, credential: str) -> list[Hit]:
    day = Hit(limit_key(PER_DAY, "credential", credential), HIGH, DAY)
    if shape == "1 limit":
        return [day]
    if shape == "2 limits, 1 subject":
        return [Hit(limit_key(PER_SECOND, "credential", credential), 1_000_000, 1.0), day]
    org = Hit(limit_key(PER_ORG, "org", "o1"), HIGH, DAY)
    ip = Hit(limit_key(PER_IP, "ip", f"198.51.100.{credential[1:]}"), HIGH, DAY)
    return [day, org, ip]


SHAPES = ("1 limit", "2 limits, 1 subject", "3 limits, 3 subjects")


async def drive(decide: Callable[[str], Awaitable[object]], tasks: int, seconds: float) -> Row:
    latencies: list[float] = []
    deadline = 0.0

    async def worker(offset: int) -> None:
        i = offset
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            await decide(CREDENTIALS[i % len(CREDENTIALS)])
            latencies.append(time.perf_counter() - t0)
            i += tasks

    for credential in CREDENTIALS[:tasks]:  # warm connections and the script cache
        await decide(credential)
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(*(worker(i) for i in range(tasks)))
    elapsed = time.perf_counter() - start
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "decisions_per_second": len(latencies) / elapsed,
        "p50_ms": cuts[49] * 1000,
        "p99_ms": cuts[98] * 1000,
    }


async def throughput(topology: str, make: Factory, tasks: int, seconds: float) -> list[Row]:
    rows = []
    for shape in SHAPES:
        limiter = make()
        try:
            row = await drive(
                lambda c, lim=limiter, s=shape: lim.hit_all(decision(s, c)), tasks, seconds
            )
        finally:
            await limiter.aclose()
        rows.append({"topology": topology, "decision": shape, "tasks": tasks, **row})
    return rows


async def contention(make: Factory, good: int, bad: int, slack: float) -> Row:
    """One round: ``good`` fresh and ``bad`` spent credentials on one organisation limit
    of ``good * (1 + slack)``; the good decisions refused, and the check of exactness."""
    limiters = [make() for _ in range(4)]
    tag = uuid.uuid4().hex[:8]
    org_limit = round(good * (1 + slack))
    org = Hit(limit_key(Policy("per-org", org_limit, DAY, "org"), "org", tag), org_limit, DAY)
    ip = Hit(limit_key(PER_IP, "ip", tag), HIGH, DAY)

    def own(name: str) -> Hit:
        return Hit(limit_key(Policy("per-key", 1, DAY, "credential"), "credential", name), 1, DAY)

    spent = [own(f"{tag}-bad-{i}") for i in range(bad)]
    try:
        for n, hit in enumerate(spent):
            await limiters[n % 4].hit_all([hit])  # each bad credential's one unit is gone
        requests = [(True, [own(f"{tag}-good-{i}"), org, ip]) for i in range(good)]
        requests += [(False, [hit, org, ip]) for hit in spent]
        random.shuffle(requests)
        queue = iter(enumerate(requests))
        refused_good = admitted = 0

        async def worker() -> None:
            nonlocal refused_good, admitted
            for n, (is_good, hits) in queue:
                decided = await limiters[n % 4].hit_all(hits)
                if all(d.allowed for d in decided):
                    admitted += 1
                elif is_good:
                    refused_good += 1

        await asyncio.gather(*(worker() for _ in range(50)))
        left = (await limiters[0].peek(org.key, org_limit, DAY, 0)).remaining
        assert admitted <= org_limit and left == org_limit - admitted, (admitted, left)
        return {"good": good, "bad": bad, "refused_good": refused_good, "admitted": admitted}
    finally:
        for limiter in limiters:
            await limiter.aclose()


@contextmanager
def single_redis() -> Iterator[str]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="apiward-bench-redis-") as directory:
        process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                directory,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while (
                subprocess.run(
                    ["redis-cli", "-p", str(port), "PING"],
                    capture_output=True,
                    text=True,
                    check=False,
                ).stdout.strip()
                != "PONG"
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def sentinel_group() -> Iterator[str]:
    """A Sentinel group's URL (``redis+sentinel://``): the limiter finds the master
    through the sentinels and writes to it; the replica follows asynchronously."""
    with tempfile.TemporaryDirectory(prefix="apiward-bench-sentinel-") as directory:
        group = start_sentinel_group(Path(directory))
        try:
            yield group.url()
        finally:
            group.stop()


def fmt(value: float) -> str:
    return f"{value:,.0f}"


async def run(args: argparse.Namespace) -> int:
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs", flush=True)
    rows: list[Row] = []
    spurious: list[Row] = []
    with single_redis() as url, sentinel_group() as sentinel, running_cluster() as cluster:
        topologies: dict[str, Factory] = {
            "single Redis": lambda: RedisLimiter(
                connect(url, timeout=5.0, max_connections=64), prefix="bench:"
            ),
            "Sentinel (master and replica)": lambda: RedisLimiter(
                connect(sentinel, timeout=5.0, max_connections=64), prefix="bench:"
            ),
            "Redis Cluster (3 primaries)": lambda: RedisLimiter(
                connect_cluster(cluster.url, timeout=5.0, max_connections=64),
                prefix="bench:",
                subject=key_subject,
            ),
        }
        for tasks in (1, 50):
            for topology, make in topologies.items():
                rows += await throughput(topology, make, tasks, args.seconds)
        print("\n| topology | decision | tasks | decisions/s | p50 ms | p99 ms |")
        print("|---|---|---:|---:|---:|---:|")
        for r in rows:
            print(
                f"| {r['topology']} | {r['decision']} | {r['tasks']} | "
                f"{fmt(r['decisions_per_second'])} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |"
            )
        for topology, make in topologies.items():
            for slack in (0.0, 0.1):
                results = [
                    await contention(make, args.good, args.bad, slack) for _ in range(args.rounds)
                ]
                refused = sum(r["refused_good"] for r in results)
                asked = sum(r["good"] for r in results)
                spurious.append(
                    {
                        "topology": topology,
                        "org_limit": f"good x {1 + slack:g}",
                        "rounds": args.rounds,
                        "good": asked,
                        "bad": sum(r["bad"] for r in results),
                        "refused_good": refused,
                        "spurious_rate": refused / asked,
                        "worst_round": max(r["refused_good"] for r in results) / args.good,
                    }
                )
        print(
            "\n| topology | organisation limit | good / bad decisions | good refused "
            "(spurious) | worst round |"
        )
        print("|---|---|---:|---:|---:|")
        for s in spurious:
            print(
                f"| {s['topology']} | {s['org_limit']} | {s['good']} / {s['bad']} | "
                f"{s['refused_good']} ({s['spurious_rate']:.2%}) | {s['worst_round']:.2%} |"
            )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "throughput": rows,
                "spurious": spurious,
            },
            indent=2,
        )
        + "\n"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per throughput row")
    parser.add_argument("--good", type=int, default=500, help="good decisions a round")
    parser.add_argument("--bad", type=int, default=500, help="bad decisions a round")
    parser.add_argument("--rounds", type=int, default=5, help="contention rounds")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
