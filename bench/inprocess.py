"""In-process API key verifications per second, and where each one's time goes.

    .venv/bin/python -m bench.inprocess [--seconds 1.0] [--keys 1000]

Builds a ``Runtime`` on a throw-away SQLite database (as tests/conftest.py does),
bootstraps an organisation, creates keys, warms the cache, then calls
``runtime.auth.authenticate_key`` in a loop on one core (the process is pinned to one
CPU): no HTTP, no I/O, only the hot path of services/auth.py. Rates are per second of
this process's CPU time (``time.process_time``), so other work sharing the core does
not lower them. Prints a table, the cost
of each step of a verification timed on its own, a cProfile listing and a pyinstrument
tree (``pip install pyinstrument``; skipped without it), and writes
``bench/results/inprocess.json``.

docs/architecture.md section 6: at least 300,000 verifications per second per core.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import dataclasses
import hashlib
import os
import pstats
import statistics
import time
import timeit
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apiward.adapters.runtime import Runtime, build
from apiward.adapters.settings import Settings
from apiward.core.models import Principal, RequestContext
from apiward.services.auth import VerifiedKey
from bench.common import SECRET, machine, save, workdir

TARGET = 300_000
REPEATS = 5


@dataclass
class Bench:
    runtime: Runtime
    keys: list[str]
    context: RequestContext


async def prepare(db: Path, count: int) -> Bench:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{db}",
        secret_key=SECRET,
        log_level="warning",
        argon2_time_cost=1,
        argon2_memory_kib=1024,
        argon2_parallelism=1,
        last_used_flush_seconds=3600,
        invalidation_poll_seconds=3600,
        cache_ttl_seconds=3600,  # the cache stays warm for the whole run
    )
    runtime = build(settings)
    await runtime.start(background=False)
    boot = await runtime.tenancy.bootstrap("Bench", "bench@apiward.test", "correct horse battery")
    owner = await runtime.operators.principal(boot.org.id)
    keys = [
        (await runtime.keys.create(owner, name=f"bench-{i}", scopes=["things:read"])).plaintext
        for i in range(count)
    ]
    context = RequestContext(ip="127.0.0.1", user_agent="bench", request_id="req-bench")
    for key in keys:  # warm: every later call is a cache hit
        await runtime.auth.authenticate_key(key, context)
    return Bench(runtime, keys, context)


Call = Callable[[], Coroutine[Any, Any, object]]


async def rate(call_batch: Call, batch: int, seconds: float) -> float:
    """Median calls per CPU second over REPEATS runs of ``seconds`` (CPU time) each."""
    rates = []
    for _ in range(REPEATS):
        n, start = 0, time.process_time()
        deadline = start + seconds
        while time.process_time() < deadline:
            await call_batch()
            n += batch
        rates.append(n / (time.process_time() - start))
    return statistics.median(rates)


async def measure(bench: Bench, seconds: float) -> list[dict[str, Any]]:
    auth = bench.runtime.auth
    ctx = bench.context
    one = bench.keys[0]
    rotation = bench.keys
    header = f"Bearer {one}"

    async def single() -> None:
        for _ in range(1000):
            await auth.authenticate_key(one, ctx)

    async def rotating() -> None:
        for key in rotation:
            await auth.authenticate_key(key, ctx)

    async def with_header() -> None:
        for _ in range(1000):
            await auth.authenticate(header, ctx)

    rows = [
        ("authenticate_key, 1 key", single, 1000),
        (f"authenticate_key, {len(rotation):,} keys in rotation", rotating, len(rotation)),
        ('authenticate("Bearer ..."), 1 key', with_header, 1000),
    ]
    out = []
    for name, fn, batch in rows:
        per_s = await rate(fn, batch, seconds)
        out.append({"what": name, "per_second": per_s, "us": 1e6 / per_s, "ratio": per_s / TARGET})
    return out


def steps(bench: Bench) -> list[dict[str, Any]]:
    """Each step of a warm ``authenticate_key``, timed on its own (µs per call)."""
    runtime = bench.runtime
    auth = runtime.auth
    fmt = runtime.settings.key_format
    key = bench.keys[0]
    parsed = fmt.parse(key)
    entry = runtime.cache.get(parsed.digest)
    assert isinstance(entry, VerifiedKey)
    ctx = bench.context
    now = runtime.clock.now()
    n = fmt.checksum_length
    principal = asyncio.run(auth.authenticate_key(key, ctx))
    values = {f.name: getattr(principal, f.name) for f in dataclasses.fields(principal)}
    unfrozen = dataclasses.make_dataclass("Unfrozen", list(values), slots=True)

    def coroutine_call() -> None:
        coro = auth.authenticate_key(key, ctx)
        with contextlib.suppress(StopIteration):
            coro.send(None)

    candidates: list[tuple[str, Callable[[], object]]] = [
        ("whole authenticate_key (driven without a loop)", coroutine_call),
        ("KeyFormat.parse (checks + checksum + SHA-256)", lambda: fmt.parse(key)),
        ("  of which checksum (CRC32 + base62 digits)", lambda: fmt.checksum_ok(key)),
        ("  of which the checksum's _checksum(body)", lambda: fmt._checksum(key[:-n])),
        ("  of which SHA-256 hexdigest", lambda: hashlib.sha256(key.encode()).hexdigest()),
        ("  of which the checksum_length property", lambda: fmt.checksum_length),
        ("MemoryCache.get (LRU move_to_end + TTL check)", lambda: runtime.cache.get(parsed.digest)),
        (
            "for comparison: SHA-256 + MemoryCache.get alone",
            lambda: runtime.cache.get(hashlib.sha256(key.encode()).hexdigest()),
        ),
        ("clock.now() (datetime.now(UTC))", runtime.clock.now),
        ("UsageRecorder.record", lambda: runtime.usage.record("key_x", now, ctx.ip)),
        ("Principal(...) (frozen slots dataclass)", lambda: Principal(**values)),
        (
            "for comparison: same fields, non-frozen slots dataclass",
            lambda: unfrozen(**values),
        ),
    ]
    limited = getattr(auth, "limited", None)  # the rate-limit step, where it exists
    if limited is not None:

        def limits_call() -> None:
            coro = limited(entry, principal)
            with contextlib.suppress(StopIteration):
                coro.send(None)

        candidates[1:1] = [
            ("rate-limit step, auth.limited (no limits set)", limits_call),
            (
                "  of which dataclasses.replace(principal, ...)",
                lambda: dataclasses.replace(principal, context=ctx),
            ),
        ]
    out = []
    for name, fn in candidates:
        number = 20000
        best = min(timeit.repeat(fn, number=number, repeat=5, timer=time.process_time)) / number
        out.append({"step": name, "us": best * 1e6})
    return out


def cprofile_top(bench: Bench, calls: int = 100_000, limit: int = 14) -> list[dict[str, Any]]:
    auth, ctx, key = bench.runtime.auth, bench.context, bench.keys[0]

    async def loop() -> None:
        for _ in range(calls):
            await auth.authenticate_key(key, ctx)

    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(loop())
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = []
    for (file, line, func), (_cc, ncalls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append(
            {
                "function": f"{_short(file)}:{line}({func})",
                "calls_per_verification": ncalls / calls,
                "own_us_per_verification": tottime / calls * 1e6,
                "own_share": tottime / total,
                "cum_us_per_verification": cumtime / calls * 1e6,
            }
        )
    rows.sort(key=lambda r: r["own_us_per_verification"], reverse=True)
    return rows[:limit]


def _short(file: str) -> str:
    for marker in ("site-packages/", "src/", "lib/python3"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def pyinstrument_tree(bench: Bench, calls: int = 200_000) -> str | None:
    try:
        from pyinstrument import Profiler
    except ImportError:
        return None
    auth, ctx, key = bench.runtime.auth, bench.context, bench.keys[0]

    async def loop() -> None:
        for _ in range(calls):
            await auth.authenticate_key(key, ctx)

    profiler = Profiler(interval=0.0001, async_mode="disabled")
    profiler.start()
    asyncio.run(loop())
    profiler.stop()
    text: str = profiler.output_text(unicode=True, color=False, show_all=False)
    return text


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=1.0, help="per repeat (5 repeats)")
    parser.add_argument("--keys", type=int, default=1000, help="keys in the rotation row")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"warning: load average {load:.1f} before starting: other work shares the cores")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    with workdir() as tmp:

        async def run() -> tuple[list[dict[str, Any]], Bench]:
            bench = await prepare(tmp / "bench.db", args.keys)
            return await measure(bench, args.seconds), bench

        rows, bench = asyncio.run(run())
        parts = steps(bench)
        top = cprofile_top(bench)
        tree = pyinstrument_tree(bench)
        asyncio.run(bench.runtime.store.close())

    print(f"\n{'in-process verification (one core)':<44}{'per s':>10}{'µs':>8}{'/target':>9}")
    for r in rows:
        print(f"{r['what']:<44}{r['per_second']:>10,.0f}{r['us']:>8.2f}{r['ratio']:>9.2f}")
    print(f"\n{'step of a warm authenticate_key, alone':<52}{'µs':>8}")
    for p in parts:
        print(f"{p['step']:<52}{p['us']:>8.3f}")
    print("\ncProfile, 100,000 verifications (times inflated by the profiler; compare shares)")
    print(f"{'function':<62}{'calls':>6}{'own µs':>8}{'share':>7}{'cum µs':>8}")
    for t in top:
        print(
            f"{t['function'][:61]:<62}{t['calls_per_verification']:>6.1f}"
            f"{t['own_us_per_verification']:>8.2f}{t['own_share']:>7.0%}"
            f"{t['cum_us_per_verification']:>8.2f}"
        )
    if tree is None:
        print("\npyinstrument not installed: `.venv/bin/pip install pyinstrument` for the tree")
    else:
        print("\npyinstrument, 200,000 verifications:")
        print(tree)
    verdict = rows[1]
    result = {
        "setup": {
            **machine(),
            "pinned_cores": 1,
            "seconds_per_repeat": args.seconds,
            "repeats": REPEATS,
            "keys": args.keys,
            "store": "sqlite (cold path only; warm verifications do no I/O)",
            "load1_before": round(load, 2),
        },
        "target_per_second": TARGET,
        "rows": rows,
        "steps": parts,
        "cprofile_top": top,
        "pyinstrument": tree,
        "target_met": verdict["per_second"] >= TARGET,
    }
    path = save("inprocess", result)
    met = "met" if result["target_met"] else "NOT met"
    print(
        f"target {TARGET:,}/s per core ({verdict['what']}): {met}, "
        f"{verdict['per_second']:,.0f}/s = {verdict['ratio']:.2f}x the target"
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
