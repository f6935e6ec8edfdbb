"""CPU cost of one request through each ASGI app, in-process: no sockets, no server.

    .venv/bin/python -m bench.endpoints [--requests 5000]

bench/http.py says how far each endpoint is from the floor; this says where the time
goes. Each app is called directly with an HTTP scope (as a server would call it), on
one core, after its lifespan has started and the verification cache is warm, so the
numbers are the application's own microseconds per request, free of the load
generator and of the other processes sharing the machine. Then one cProfile of
``GET /v1/auth/check``. Prints both and writes ``bench/results/endpoints.json``.

Times are CPU time of this process (``time.process_time``), so other work on the
machine does not inflate them. The ``what-if`` row is not the product: the check
endpoint's decision as a raw ASGI callable (bench/apps.py ``raw_check``), to price
what serving it without FastAPI would gain.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Request
from starlette.types import ASGIApp, Message, Scope

from bench.common import apiward, bench_env, machine, save, workdir
from bench.http import bootstrap

App = Callable[..., Awaitable[None]]


def http_scope(path: str, headers: dict[str, str], method: str = "GET") -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


class Driver:
    """Calls an ASGI app the way a server does, and times it."""

    def __init__(self, requests: int) -> None:
        self.requests = requests

    async def once(
        self, app: ASGIApp, path: str, headers: dict[str, str], method: str, body: bytes
    ) -> int:
        status = 0

        async def receive() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(http_scope(path, headers, method), receive, send)
        return status

    async def cost(
        self,
        app: ASGIApp,
        path: str,
        headers: dict[str, str],
        *,
        method: str = "GET",
        body: bytes = b"",
    ) -> float:
        """Best of 3 runs, CPU microseconds per request; every answer must be a 200."""
        for _ in range(300):
            status = await self.once(app, path, headers, method, body)
            if status != 200:
                raise RuntimeError(f"{method} {path} answered {status}")
        best = float("inf")
        for _ in range(3):
            start = time.process_time()
            for _ in range(self.requests):
                await self.once(app, path, headers, method, body)
            best = min(best, (time.process_time() - start) / self.requests)
        return best * 1e6


def breakdown_apps() -> tuple[FastAPI, FastAPI]:
    """What ``init_app`` and ``require`` add, one piece at a time, with public API only.

    The first app has apiward's middleware and error answers but none of its routes;
    the second has its routes too (as ``protected_app``) and the route guarded three
    ways: a no-op dependency, ``Depends(authenticate)``, and ``require``.
    """
    from apiward.server import Apiward, Principal, authenticate

    bare_init = FastAPI()
    Apiward().init_app(bare_init, auth_routes=False)

    @bare_init.get("/open")
    async def open_() -> dict[str, bool]:
        return {"ok": True}

    app = FastAPI()
    Apiward().init_app(app)

    async def nothing(request: Request) -> None:
        return None

    @app.get("/noop")
    async def noop(_: None = Depends(nothing)) -> dict[str, bool]:
        return {"ok": True}

    @app.get("/authenticate")
    async def authenticated(_: Principal = Depends(authenticate)) -> dict[str, bool]:
        return {"ok": True}

    return bare_init, app


def profile_rows(
    profiler: cProfile.Profile, requests: int, limit: int = 24
) -> list[dict[str, Any]]:
    stats = pstats.Stats(profiler)
    total = max(cum for (_cc, _n, _tt, cum, _callers) in stats.stats.values())  # type: ignore[attr-defined]
    rows = []
    for (file, line, func), (_cc, ncalls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        share = cumtime / total
        if 0.02 <= share < 0.55:  # below the middleware and router wrappers
            rows.append(
                {
                    "function": f"{_short(file)}:{line}({func})",
                    "calls_per_request": ncalls / requests,
                    "cum_share": share,
                    "own_share": tottime / total,
                }
            )
    rows.sort(key=lambda r: r["cum_share"], reverse=True)
    return rows[:limit]


def _short(file: str) -> str:
    for marker in ("site-packages/", "src/", "lib/python3.11/", "lib/python3"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


async def measure(keys: dict[str, str], requests: int) -> dict[str, Any]:
    from apiward.adapters.http.app import create_app
    from bench.apps import bare, handwritten_app, plain_app, protected_app, raw_check

    driver = Driver(requests)
    full = create_app()
    protected = protected_app()
    os.environ["BENCH_HANDWRITTEN_KEY"] = keys["reader"]
    handwritten = handwritten_app()
    raw = raw_check()
    no_routes, pieces = breakdown_apps()
    check_headers = {
        "Authorization": f"Bearer {keys['reader']}",
        "X-Apiward-Require": "things:read",
    }
    reader = {"Authorization": f"Bearer {keys['reader']}"}
    body = json.dumps({"key": keys["reader"]}).encode()
    verify_headers = {
        "Authorization": f"Bearer {keys['caller']}",
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
    }
    rows: list[dict[str, Any]] = []

    async def row(what: str, app: ASGIApp, path: str, headers: dict[str, str], **kw: Any) -> None:
        us = await driver.cost(app, path, headers, **kw)
        rows.append({"what": what, "us": us})
        print(f"  {what:<62}{us:>8.1f}", flush=True)

    async with (
        full.router.lifespan_context(full),
        protected.router.lifespan_context(protected),
        no_routes.router.lifespan_context(no_routes),
        pieces.router.lifespan_context(pieces),
    ):
        raw.runtime = await raw.stack.enter_async_context(raw.apiward.running())
        await row("bare ASGI constant (bench/apps.py)", bare, "/open", reader)
        await row("FastAPI without apiward, /open", plain_app(), "/open", reader)
        await row(
            "FastAPI, /protected by a hand-written dependency", handwritten, "/protected", reader
        )
        await row("init_app(auth_routes=False), /open: middleware only", no_routes, "/open", reader)
        await row("init_app, /open", protected, "/open", reader)
        await row("init_app, /open + a no-op dependency", pieces, "/noop", reader)
        await row("init_app, /open + Depends(authenticate)", pieces, "/authenticate", reader)
        await row('init_app, /protected require("things:read")', protected, "/protected", reader)
        await row("apiward app, GET /v1/auth/check", full, "/v1/auth/check", check_headers)
        await row(
            "apiward app, POST /v1/keys/verify",
            full,
            "/v1/keys/verify",
            verify_headers,
            method="POST",
            body=body,
        )
        grant = {"grant_type": "client_credentials", "scope": "keys:read"}
        form = urlencode(
            {**grant, "client_id": keys["client_id"], "client_secret": keys["client_secret"]}
        ).encode()
        await row(
            "apiward app, POST /v1/auth/token (form, client_credentials)",
            full,
            "/v1/auth/token",
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "Content-Length": str(len(form)),
            },
            method="POST",
            body=form,
        )
        await row("what-if: check's decision in raw ASGI", raw, "/v1/auth/check", check_headers)

        profiler = cProfile.Profile()
        profiled = max(requests // 2, 1000)
        profiler.enable()
        for _ in range(profiled):
            await driver.once(full, "/v1/auth/check", check_headers, "GET", b"")
        profiler.disable()
        await raw.stack.aclose()
    return {"rows": rows, "check_profile": profile_rows(profiler, profiled)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=5000, help="per timed run (3 runs)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    load = os.getloadavg()[0]
    print(f"{'µs of CPU per request, in-process (one core)':<64}{'µs':>8}")
    with workdir() as tmp:
        env = {**bench_env(tmp / "bench.db"), "APIWARD_DOCS_ENABLED": "false"}
        keys = bootstrap(env)
        client = apiward(env, "clients", "create", "--name", "bench", "--scope", "keys:read")
        keys.update(client_id=str(client["client_id"]), client_secret=str(client["client_secret"]))
        os.environ.update({k: v for k, v in env.items() if k.startswith("APIWARD_")})
        os.environ["APIWARD_MIGRATE_ON_START"] = "false"
        os.environ["APIWARD_INVALIDATION_POLL_SECONDS"] = "3600"  # no background I/O
        os.environ["APIWARD_LAST_USED_FLUSH_SECONDS"] = "3600"
        result = asyncio.run(measure(keys, args.requests))
    print("\ncProfile of GET /v1/auth/check through the apiward app (share of its time)")
    print(f"{'function':<78}{'calls':>6}{'cum':>6}{'own':>6}")
    for p in result["check_profile"]:
        print(
            f"{p['function'][:77]:<78}{p['calls_per_request']:>6.1f}"
            f"{p['cum_share']:>6.0%}{p['own_share']:>6.0%}"
        )
    data = {
        "setup": {**machine(), "pinned_cores": 1, "requests": args.requests, "load1_before": load},
        **result,
    }
    print(f"results: {save('endpoints', data)}")


if __name__ == "__main__":
    main()
