"""The rate limiter through Redis faults: what a hung Redis costs a request, and how much
a key admits when Redis hangs, comes back, and restarts empty.

    .venv/bin/python -m bench.redis_faults [--rounds 5] [--hot-path]

Starts a redis-server of its own on a free port (never the shared one), in a temporary
directory, and drives ``FallbackLimiter`` over it with one client asking every 10 ms
(a client hammering its key, which is what a limit is for). Time is scaled down 30
times from the reported case (20/minute over 60 s): a limit of 20 per 2 s, so GCRA's
own bound over any 2 s is ``limit + 2 s / interval`` = 40.

- ``open, switches``: fail open; Redis hung (SIGSTOP) from 1 s to 2 s, killed at 3 s
  and started empty at 3.5 s, hung again from 4.5 s to 5 s; 6 s of requests;
- ``closed, restarted empty``: fail closed; Redis killed at 1 s, started empty at 1.2 s;
  4 s of requests;
- ``hung``: Redis hung for 200 requests 20 ms apart: how many requests waited (over
  50 ms), the longest wait, and how long a readiness ping takes;
- ``hot path``: decisions per second (one task, two limits per decision) and the CPU per
  decision with Redis up, the check path's cost of going through the fallback;
- ``fallback layer``: the CPU of ``FallbackLimiter`` itself per decision, over a primary
  that answers at once, and of one ``asyncio.timeout`` block (what bounding a call adds).

Each fault row gives what was admitted, the most admitted in one period against GCRA's
bound, and the window of any length where admissions most exceed the bound. ``--hot-path``
runs the last two rows alone (and writes nothing). Prints a table and writes
``bench/results/redis_faults.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from apiward.adapters.limiter.fallback import FailureMode, FallbackLimiter
from apiward.adapters.limiter.memory import MemoryLimiter
from apiward.adapters.limiter.redis import RedisLimiter, connect
from apiward.core.errors import ServiceUnavailable
from apiward.core.limits import Decision, Hit
from bench.common import RESULTS, free_port

LIMIT, PERIOD = 20, 2.0
BOUND = LIMIT + LIMIT  # GCRA over any window of one period: a burst plus the refill
SPACING = 0.01
NO_DISK = ("--save", "", "--appendonly", "no", "--dir")


class Server:
    """A redis-server of the benchmark's own, which it hangs, kills and restarts."""

    def __init__(self, directory: str) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._directory = directory
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self._process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", *NO_DISK, self._directory],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self._listening():
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.01)

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def hang(self) -> None:
        assert self._process is not None
        os.kill(self._process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        os.kill(self._process.pid, signal.SIGCONT)

    def kill(self) -> None:
        if self._process is not None:
            os.kill(self._process.pid, signal.SIGCONT)
            self._process.kill()
            self._process.wait()
            self._process = None

    def _listening(self) -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0


def _limiter(server: Server, mode: FailureMode) -> FallbackLimiter:
    return FallbackLimiter(
        RedisLimiter(connect(server.url), prefix="bench:"), MemoryLimiter(), mode=mode
    )


def most_in_a_window(times: list[float], window: float) -> int:
    """The most admitted times in any window of ``window`` seconds."""
    best, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def worst_window(asked: list[float], answered: list[float]) -> tuple[int, float, int]:
    """The window where admissions most exceed GCRA's bound ``limit + length / interval``:
    (admitted, its length, the bound). The ``i``-th admitted request was decided between
    ``asked[i]`` and ``answered[i]``; a window is taken at its longest (from the first
    one's asking to the last one's answer), so an excess is never an artefact of when
    an answer was read."""
    interval = PERIOD / LIMIT
    worst = (0, 0.0, LIMIT)
    for i, first in enumerate(asked):
        for j in range(i, len(asked)):
            length = answered[j] - first
            bound = LIMIT + int(length / interval + 1e-9)
            if j - i + 1 - bound > worst[0] - worst[2]:
                worst = (j - i + 1, length, bound)
    return worst


async def hammer(
    limiter: FallbackLimiter,
    seconds: float,
    schedule: list[tuple[float, Callable[[], None]]],
    key: str,
) -> dict[str, Any]:
    """Ask every ``SPACING`` for ``seconds`` while ``schedule`` acts on Redis."""
    admitted: list[float] = []
    asked: list[float] = []
    waits: list[float] = []
    refused = unavailable = 0
    start = time.monotonic()

    async def faults() -> None:
        for at, action in schedule:
            await asyncio.sleep(max(0.0, start + at - time.monotonic()))
            await asyncio.to_thread(action)

    task = asyncio.create_task(faults())
    while (now := time.monotonic()) - start < seconds:
        try:
            decision = await limiter.hit(key, LIMIT, PERIOD)
        except ServiceUnavailable:
            unavailable += 1
        else:
            if decision.allowed:
                asked.append(now - start)
                admitted.append(time.monotonic() - start)
            else:
                refused += 1
        waits.append(time.monotonic() - now)
        await asyncio.sleep(max(0.0, SPACING - (time.monotonic() - now)))
    await task
    most, length, bound = worst_window(asked, admitted)
    return {
        "admitted": len(admitted),
        "refused": refused,
        "unavailable": unavailable,
        "most_in_a_period": most_in_a_window(admitted, PERIOD),
        "bound": BOUND,
        "worst_window": f"{most} in {length:.2f} s against {bound}",
        "waited_over_50ms": sum(w > 0.05 for w in waits),
        "longest_wait_ms": round(max(waits) * 1000, 1),
    }


async def open_switches(directory: str) -> dict[str, Any]:
    server = Server(directory)
    server.start()
    limiter = _limiter(server, "open")
    schedule = [
        (1.0, server.hang),
        (2.0, server.resume),
        (3.0, server.kill),
        (3.5, server.start),
        (4.5, server.hang),
        (5.0, server.resume),
    ]
    try:
        return await hammer(limiter, 6.0, schedule, "switches")
    finally:
        await limiter.aclose()
        server.kill()


async def closed_restart(directory: str) -> dict[str, Any]:
    server = Server(directory)
    server.start()
    limiter = _limiter(server, "closed")
    try:
        return await hammer(limiter, 4.0, [(1.0, server.kill), (1.2, server.start)], "restart")
    finally:
        await limiter.aclose()
        server.kill()


async def hung(directory: str) -> dict[str, Any]:
    server = Server(directory)
    server.start()
    limiter = _limiter(server, "open")
    try:
        await limiter.hit("hung", 1_000_000, PERIOD)
        server.hang()
        waits = []
        for _ in range(200):
            began = time.monotonic()
            await limiter.hit("hung", 1_000_000, PERIOD)
            waits.append(time.monotonic() - began)
            await asyncio.sleep(0.02)
        began = time.monotonic()
        ready = await _ready(limiter)
        ping = time.monotonic() - began
        return {
            "requests": len(waits),
            "waited_over_50ms": sum(w > 0.05 for w in waits),
            "longest_wait_ms": round(max(waits) * 1000, 1),
            "median_wait_us": round(statistics.median(waits) * 1e6, 1),
            "readiness_ping_ms": round(ping * 1000, 1),
            "readiness": ready,
        }
    finally:
        server.kill()
        await limiter.aclose()


async def _ready(limiter: FallbackLimiter) -> bool:
    """What ``/readyz`` asks: the fallback's own check when it has one, else a ping."""
    check: Callable[[], Awaitable[bool]] | None = getattr(limiter, "ping", None)
    if check is not None:
        return await check()
    primary = limiter.primary
    assert isinstance(primary, RedisLimiter)
    try:
        await primary.ping()
    except ServiceUnavailable:
        return False
    return True


async def hot_path(directory: str, rounds: int) -> dict[str, Any]:
    server = Server(directory)
    server.start()
    limiter = _limiter(server, "open")
    hits = [Hit("org:1", 1_000_000_000, 3600.0), Hit("credential:1", 1_000_000_000, 3600.0)]
    rates, cpu = [], []
    try:
        for _ in range(rounds):
            n, wall, proc = 0, time.perf_counter(), time.process_time()
            while time.perf_counter() - wall < 1.0:
                await limiter.hit_all(hits)
                n += 1
            rates.append(n / (time.perf_counter() - wall))
            cpu.append((time.process_time() - proc) / n)
        return {
            "decisions_per_second": round(statistics.median(rates)),
            "cpu_us_per_decision": round(statistics.median(cpu) * 1e6, 1),
        }
    finally:
        await limiter.aclose()
        server.kill()


class Instant:
    """A primary that answers at once with fixed decisions: the fallback layer's own cost."""

    def __init__(self, decisions: list[Decision]) -> None:
        self._decisions = decisions

    async def hit_all(self, hits: Sequence[Hit]) -> list[Decision]:
        return self._decisions

    async def decide(self, hits: Sequence[Hit], floors: object, *, store: bool) -> list[Decision]:
        return self._decisions

    async def aclose(self) -> None:
        pass


async def layer(rounds: int) -> dict[str, Any]:
    """CPU per decision in ``FallbackLimiter`` itself (the primary answers at once), and
    per ``asyncio.timeout`` block (what bounding each Redis call adds)."""
    hits = [Hit("org:1", 1000, 3600.0), Hit("credential:1", 1000, 3600.0)]
    decisions = [Decision(True, 1000, 999, 3.6, 0.0, 0, 3600.0)] * 2
    limiter = FallbackLimiter(Instant(decisions), MemoryLimiter())  # type: ignore[arg-type]
    per_decision, per_timeout = [], []
    for _ in range(rounds):
        began = time.process_time()
        for _ in range(20_000):
            await limiter.hit_all(hits)
        per_decision.append((time.process_time() - began) / 20_000)
        began = time.process_time()
        for _ in range(20_000):
            async with asyncio.timeout(0.5):  # noqa: ASYNC100 (its own cost is measured)
                pass
        per_timeout.append((time.process_time() - began) / 20_000)
    await limiter.aclose()
    return {
        "fallback_us_per_decision": round(statistics.median(per_decision) * 1e6, 2),
        "timeout_block_us": round(statistics.median(per_timeout) * 1e6, 2),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="hot-path rounds of 1 s")
    parser.add_argument("--hot-path", action="store_true", help="the hot path alone")
    args = parser.parse_args()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as directory:
        if not args.hot_path:
            results["open, switches"] = await open_switches(directory)
            results["closed, restarted empty"] = await closed_restart(directory)
            results["hung"] = await hung(directory)
        results["hot path"] = await hot_path(directory, args.rounds)
        results["fallback layer"] = await layer(args.rounds)
    for name, row in results.items():
        print(f"{name:26} " + ", ".join(f"{k} {v}" for k, v in row.items()))
    if not args.hot_path:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "redis_faults.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
