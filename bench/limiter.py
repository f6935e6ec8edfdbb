"""Rate-limit decisions per second: apiward's GCRA and window limits, side by side, and
against the ``limits`` library.

Run: ``.venv/bin/python bench/limiter.py`` (about 40 s). Needs Redis at
``APIWARD_BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) for the Redis rows
and ``pip install limits`` for the comparison. Prints a table and writes
``bench/results/limiter.json``.

Every row counts *decisions that carry what the response headers need* (remaining
and reset): our GCRA returns them with the decision; ``limits`` needs a second call,
``get_window_stats``, which is timed with its ``hit``.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from apiward.adapters.limiter.memory import MemoryLimiter
from apiward.adapters.limiter.redis import RedisLimiter, connect
from apiward.core.limits import ALGORITHMS, NS, Algorithm, Hit, gcra

REDIS_URL = os.environ.get("APIWARD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
RESULTS = Path(__file__).parent / "results" / "limiter.json"
KEYS = [f"user-{i}" for i in range(1000)]
LIMIT, PERIOD = 1_000_000_000, 3600.0  # never denies: we time the decision, not 429s
IN_PROCESS_SECONDS = 2.0
REDIS_SECONDS = 2.5

Row = dict[str, Any]


def bench_core() -> float:
    """The bare algorithm: decision objects built, state kept in a dict by the caller."""
    tats: dict[str, int] = {}
    period = round(PERIOD * NS)
    n, start = 0, time.perf_counter()
    deadline = start + IN_PROCESS_SECONDS
    while time.perf_counter() < deadline:
        for key in KEYS:
            d = gcra(tats.get(key), time.monotonic_ns(), LIMIT, period)
            tats[key] = d.tat
        n += len(KEYS)
    return n / (time.perf_counter() - start)


async def bench_memory() -> float:
    limiter = MemoryLimiter()
    n, start = 0, time.perf_counter()
    deadline = start + IN_PROCESS_SECONDS
    while time.perf_counter() < deadline:
        for key in KEYS:
            await limiter.hit(key, LIMIT, PERIOD)
        n += len(KEYS)
    return n / (time.perf_counter() - start)


async def bench_memory_all(algorithm: Algorithm) -> float:
    """``hit_all`` with one limit of ``algorithm``: what a request with one policy costs."""
    limiter = MemoryLimiter()
    hits = [[Hit(key, LIMIT, PERIOD, 1, algorithm)] for key in KEYS]
    n, start = 0, time.perf_counter()
    deadline = start + IN_PROCESS_SECONDS
    while time.perf_counter() < deadline:
        for hit in hits:
            await limiter.hit_all(hit)
        n += len(KEYS)
    return n / (time.perf_counter() - start)


def bench_limits_memory(strategy_name: str) -> float | None:
    try:
        from limits import RateLimitItemPerHour, storage, strategies
    except ImportError:
        return None
    store = storage.MemoryStorage()
    strategy = getattr(strategies, strategy_name)(store)
    item = RateLimitItemPerHour(LIMIT)
    n, start = 0, time.perf_counter()
    deadline = start + IN_PROCESS_SECONDS
    while time.perf_counter() < deadline:
        for key in KEYS[:200]:
            strategy.hit(item, key)
            strategy.get_window_stats(item, key)
        n += 200
    return n / (time.perf_counter() - start)


async def drive(decide: Callable[[str], Awaitable[object]], concurrency: int) -> Row:
    """``concurrency`` tasks deciding in a loop for REDIS_SECONDS; rate and latencies."""
    latencies: list[float] = []
    deadline = time.perf_counter() + REDIS_SECONDS

    async def worker(offset: int) -> None:
        i = offset
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            await decide(KEYS[i % len(KEYS)])
            latencies.append(time.perf_counter() - t0)
            i += concurrency

    for key in KEYS[:concurrency]:  # warm the pool's connections and the script cache
        await decide(key)
    start = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - start
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "decisions_per_second": len(latencies) / elapsed,
        "p50_ms": cuts[49] * 1000,
        "p99_ms": cuts[98] * 1000,
    }


async def bench_redis_ours(concurrency: int, prefix: str, algorithm: Algorithm = "gcra") -> Row:
    client = connect(REDIS_URL, timeout=2.0, max_connections=max(concurrency, 1))
    limiter = RedisLimiter(client, prefix=f"{prefix}{algorithm}:")
    try:
        return await drive(
            lambda key: limiter.hit_all([Hit(key, LIMIT, PERIOD, 1, algorithm)]), concurrency
        )
    finally:
        await limiter.aclose()


async def bench_redis_limits(strategy_name: str, concurrency: int, prefix: str) -> Row | None:
    try:
        from limits import RateLimitItemPerHour
        from limits.aio import storage, strategies
    except ImportError:
        return None
    store = storage.RedisStorage(
        "async+" + REDIS_URL,
        implementation="redispy",
        key_prefix=f"{prefix}{strategy_name}:{concurrency}",
    )
    strategy = getattr(strategies, strategy_name)(store)
    item = RateLimitItemPerHour(LIMIT)

    async def decide(key: str) -> object:
        allowed = await strategy.hit(item, key)
        return allowed, await strategy.get_window_stats(item, key)  # remaining, reset

    return await drive(decide, concurrency)


async def redis_version() -> str | None:
    client = connect(REDIS_URL, timeout=1.0)
    try:
        info = await client.info("server")
        return str(info.get("redis_version"))
    except Exception:
        return None
    finally:
        await client.aclose()


async def cleanup(prefix: str) -> None:
    client = connect(REDIS_URL, timeout=5.0)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
        for i in range(0, len(keys), 1000):
            await client.delete(*keys[i : i + 1000])
    finally:
        await client.aclose()


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


async def main() -> int:
    began = time.perf_counter()
    rows: list[Row] = []
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs", flush=True)

    rows.append(
        {
            "what": "core gcra() (pure function)",
            "where": "in-process",
            "concurrency": 1,
            "decisions_per_second": bench_core(),
        }
    )
    rows.append(
        {
            "what": "apiward MemoryLimiter.hit",
            "where": "in-process",
            "concurrency": 1,
            "decisions_per_second": await bench_memory(),
        }
    )
    for algorithm in ALGORITHMS:
        rows.append(
            {
                "what": f"apiward MemoryLimiter.hit_all {algorithm}",
                "where": "in-process",
                "concurrency": 1,
                "decisions_per_second": await bench_memory_all(algorithm),
            }
        )
    for name in ("MovingWindowRateLimiter", "FixedWindowRateLimiter"):
        rows.append(
            {
                "what": f"limits {name} hit+stats",
                "where": "in-process",
                "concurrency": 1,
                "decisions_per_second": bench_limits_memory(name),
            }
        )

    version = await redis_version()
    if version is None:
        print(f"Redis unreachable at {REDIS_URL}: Redis rows skipped", file=sys.stderr)
    else:
        prefix = f"bench:{uuid.uuid4().hex}:"
        try:
            for concurrency in (1, 50):
                for algorithm in ALGORITHMS:
                    row = await bench_redis_ours(concurrency, prefix, algorithm)
                    rows.append(
                        {
                            "what": f"apiward Lua {algorithm} (1 round trip)",
                            "where": "redis",
                            "concurrency": concurrency,
                            **row,
                        }
                    )
                for name in ("MovingWindowRateLimiter", "FixedWindowRateLimiter"):
                    limited = await bench_redis_limits(name, concurrency, prefix)
                    rows.append(
                        {
                            "what": f"limits.aio {name} hit+stats (2 round trips)",
                            "where": "redis",
                            "concurrency": concurrency,
                            **(limited or {"decisions_per_second": None}),
                        }
                    )
        finally:
            await cleanup(prefix)

    print(
        f"\n{'what':<62} {'where':<10} {'conc':>4} {'decisions/s':>12} {'p50 ms':>7} {'p99 ms':>7}"
    )
    for row in rows:
        p50, p99 = row.get("p50_ms"), row.get("p99_ms")
        print(
            f"{row['what']:<62} {row['where']:<10} {row['concurrency']:>4} "
            f"{fmt(row['decisions_per_second']):>12} "
            f"{'' if p50 is None else f'{p50:.2f}':>7} {'' if p99 is None else f'{p99:.2f}':>7}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "redis": version,
                "redis_url": REDIS_URL,
                "seconds": round(time.perf_counter() - began, 1),
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwritten to {RESULTS} in {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
