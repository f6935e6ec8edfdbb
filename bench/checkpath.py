"""CPU per forward-auth check through the app: the fast path against the route, side by side.

    .venv/bin/python -m bench.checkpath [--calls 3000] [--rounds 6]

Builds the server app twice on one runtime (one store, one verification cache): as
``create_app`` gives it, where ``/v1/auth/check`` is answered by ``FastPath`` ahead of
FastAPI's router, and the same app without that middleware, where the route answers.
Each is called in process as an ASGI app (no sockets), with a valid key and a required
scope, the access log at ``info`` written to /dev/null. The two alternate for
``--rounds`` rounds of ``--calls`` checks; the medians are compared. Writes
``bench/results/checkpath.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any, TextIO

from fastapi import FastAPI

from apiward.adapters import logging as logs
from apiward.adapters.http.app import create_app
from apiward.adapters.http.routes import check
from apiward.adapters.settings import Settings
from bench.common import SECRET, machine, save, workdir


async def _started(app: FastAPI) -> asyncio.Task[None]:
    """Run the app's lifespan until startup completes; the task keeps it open."""
    started: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    asked: list[int] = []

    async def receive() -> dict[str, Any]:
        if not asked:
            asked.append(1)
            return {"type": "lifespan.startup"}
        await asyncio.Event().wait()
        return {}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set_result(True)

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(app(scope, receive, send))  # type: ignore[arg-type]
    await started
    return task


async def _call(app: FastAPI, headers: list[tuple[bytes, bytes]]) -> None:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/v1/auth/check",
        "raw_path": b"/v1/auth/check",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)  # type: ignore[arg-type]
    if status != [200]:
        raise RuntimeError(f"the check answered {status}")


async def run(calls: int, rounds: int, sink: TextIO) -> dict[str, Any]:
    with workdir() as tmp:
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{tmp / 'bench.db'}",
            secret_key=SECRET,
            log_level="info",
            argon2_time_cost=1,
            argon2_memory_kib=1024,
            argon2_parallelism=1,
        )
        fast = create_app(settings)
        lifespan = await _started(fast)
        logs.configure("info", "json", sink, secret_prefixes=("aw",))
        runtime = fast.state.runtime
        boot = await runtime.tenancy.bootstrap("Bench", "o@bench.test", "bench password 1")
        operator = await runtime.operators.principal(boot.org.id)
        key = (await runtime.keys.create(operator, name="k", scopes=["things:read"])).plaintext
        headers = [
            (b"host", b"127.0.0.1:8000"),
            (b"authorization", f"Bearer {key}".encode()),
            (b"x-apiward-require", b"things:read"),
        ]
        routed = create_app(settings)
        fast_path: object = check.FastPath
        routed.user_middleware[:] = [m for m in routed.user_middleware if m.cls is not fast_path]
        routed.state.runtime = runtime
        apps = {"fast path": fast, "route": routed, "fast path, not counted": fast}
        counting = runtime.verifications

        def count_or_not(name: str) -> None:
            # Analytics off for one variant: the counter's method shadowed by a no-op.
            if name.endswith("not counted"):
                counting.count = lambda *args, **kwargs: None
            else:
                counting.__dict__.pop("count", None)

        for name, app in apps.items():
            count_or_not(name)
            for _ in range(500):
                await _call(app, headers)
        micros: dict[str, list[float]] = {name: [] for name in apps}
        for _ in range(rounds):
            for name, app in apps.items():
                count_or_not(name)
                start = time.process_time()
                for _ in range(calls):
                    await _call(app, headers)
                micros[name].append((time.process_time() - start) / calls * 1e6)
        count_or_not("counted")
        lifespan.cancel()
        await runtime.stop()
    medians = {name: statistics.median(values) for name, values in micros.items()}
    return {
        "setup": {**machine(), "calls": calls, "rounds": rounds},
        "cpu_us_per_check": {k: round(v, 1) for k, v in medians.items()},
        "rounds_us": {k: [round(x, 1) for x in v] for k, v in micros.items()},
        "route_over_fast_path": round(medians["route"] / medians["fast path"], 2),
        "counting_cost": round(medians["fast path"] / medians["fast path, not counted"] - 1, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    with open(os.devnull, "w") as sink:  # the access log's lines are written, to nowhere
        result = asyncio.run(run(args.calls, args.rounds, sink))
    for name, value in result["cpu_us_per_check"].items():
        print(f"{name:<10} {value:8.1f} µs of CPU per check (median of {args.rounds} rounds)")
    print(f"the route costs {result['route_over_fast_path']}x the fast path")
    cost = result["counting_cost"] * 100
    print(f"analytics counting adds {cost:.1f}% CPU to a check (target: at most 2%)")
    print(f"results: {save('checkpath', result)}")


if __name__ == "__main__":
    main()
