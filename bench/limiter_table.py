"""What a bounded, fairly shared in-process limiter table costs a decision: this tree's
``MemoryLimiter`` beside the one of an earlier commit (the table that evicted the
oldest keys whoever owned them), in one run, rounds alternating.

Run: ``.venv/bin/python -m bench.limiter_table [--before REV]`` (about 90 s; REV
defaults to 1db80fb, the last commit before owners). Prints a table with the ratio
after/before of each row and writes ``bench/results/limiter_table.json``.

Rows, each one ``hit_all`` call with one GCRA limit (or three, as a request with a
per-IP, a per-organisation and a per-key limit makes), 1000 a day, so that every
bucket stays live through the run and nothing is denied:

- ``rotating``: 1,000 keys in rotation in a table far from full (the common case);
- ``full, known keys``: a full table (``TABLE`` live keys of 100 owners), deciding on
  keys it holds;
- ``full, new keys``: the same full table, every decision on keys never seen (150,000
  of them with one limit, 50,000 requests with three), so the table overflows and is
  brought back (sweep, then eviction) once per tenth of it: the amortized cost of the
  bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from apiward.adapters.limiter.memory import MemoryLimiter
from apiward.core.limits import Decision, Hit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "limiter_table.json"
LIMIT, PERIOD = 1000, 86400.0
"""An admitted decision leaves its bucket live for 86 s (nothing for a sweep to drop, so
a full table must evict), and no row runs long enough for a key to be denied."""
TABLE = 100_000
OWNERS = [f"org_{i:04d}" for i in range(100)]
SECONDS = 1.0
ROUNDS = 5


class Table(Protocol):
    async def hit_all(self, hits: Sequence[Hit]) -> list[Decision]: ...

    def __len__(self) -> int: ...


def previous(rev: str) -> Callable[..., Table]:
    """``MemoryLimiter`` as it was at ``rev``, loaded from git beside this tree's."""
    path = "src/apiward/adapters/limiter/memory.py"
    source = subprocess.run(
        ["git", "show", f"{rev}:{path}"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    module = types.ModuleType("memory_before")
    exec(compile(source, f"{rev}:{path}", "exec"), module.__dict__)  # noqa: S102
    cls: Callable[..., Table] = module.MemoryLimiter
    return cls


def request(i: int, width: int) -> list[Hit]:
    owner = OWNERS[i % len(OWNERS)]
    kinds = ("credential", "ip", "org")[:width]
    return [Hit(f"rl:per-{k}:{k}:{i}", LIMIT, PERIOD, 1, "gcra", owner) for k in kinds]


async def filled(make: Callable[..., Table]) -> Table:
    limiter = make(max_keys=TABLE)
    for i in range(TABLE):
        await limiter.hit_all(request(i, 1))
    return limiter


async def rate(limiter: Table, batch: list[list[Hit]], *, repeat: bool = True) -> float:
    """``hit_all`` calls per second of this process's CPU time over ``batch`` (built
    beforehand, so the timing is the limiter's), in a loop for SECONDS or
    (``repeat=False``) once. CPU time, not wall time: on a shared machine another
    process's work would otherwise count as ours."""
    n, start = 0, time.process_time()
    deadline = start + SECONDS
    while True:
        for hits in batch:
            decisions = await limiter.hit_all(hits)
        assert decisions[0].allowed  # timing decisions, not 429s
        n += len(batch)
        if not repeat or time.process_time() >= deadline:
            return n / (time.process_time() - start)


async def measure(make: Callable[..., Table], fresh: list[int]) -> dict[str, float]:
    """One round of every row; ``fresh`` counts keys used before, run-wide, so that a
    new key is new to either side."""

    def new(width: int, n: int) -> list[list[Hit]]:
        fresh[0] += n
        return [request(TABLE + fresh[0] - i, width) for i in range(n)]

    out = {}
    out["rotating, 1 limit"] = await rate(make(), [request(i, 1) for i in range(1000)])
    out["rotating, 3 limits"] = await rate(make(), [request(i, 3) for i in range(1000)])
    full = await filled(make)
    known = [request(i * 7919 % TABLE, 1) for i in range(20_000)]
    out["full, known keys, 1 limit"] = await rate(full, known)
    out["full, new keys, 1 limit"] = await rate(full, new(1, 3 * TABLE // 2), repeat=False)
    out["full, new keys, 3 limits"] = await rate(full, new(3, TABLE // 2), repeat=False)
    assert len(full) <= TABLE
    return out


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="1db80fb", help="commit to compare with")
    args = parser.parse_args()
    began = time.perf_counter()
    sides: dict[str, Callable[..., Table]] = {"before": previous(args.before)}
    sides["after"] = MemoryLimiter
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    fresh = [0]
    load = os.getloadavg()[0]
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, load {load:.2f}")
    for _ in range(ROUNDS):
        for side, make in sides.items():
            runs[side].append(await measure(make, fresh))
    rows = []
    print(f"\n{'row':<28} {'before/s':>10} {'after/s':>10} {'µs before':>10} {'µs after':>9} ratio")
    for name in runs["after"][0]:
        before = statistics.median(r[name] for r in runs["before"])
        after = statistics.median(r[name] for r in runs["after"])
        rows.append({"row": name, "before_per_second": before, "after_per_second": after})
        print(
            f"{name:<28} {before:>10,.0f} {after:>10,.0f} {1e6 / before:>10.2f} "
            f"{1e6 / after:>9.2f} {after / before:.2f}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": load,
        "before": args.before,
        "table": TABLE,
        "owners": len(OWNERS),
        "rounds": ROUNDS,
        "seconds": round(time.perf_counter() - began, 1),
        "rows": rows,
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nmedians of {ROUNDS} rounds; written to {RESULTS} in {result['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
