"""CPU per request on the hot paths: the edge's fast paths against the routes, and what
each observability feature costs, side by side.

    .venv/bin/python -m bench.checkpath [--calls 3000] [--rounds 6]

Builds the server app several times on one runtime (one store, one verification
cache) and calls each in process as an ASGI app (no sockets), with a valid key (and a
required scope for the check), the logs at ``info`` written to /dev/null:

- ``check``/``verify``: the app as ``create_app`` gives it, where ``/v1/auth/check``
  and ``/v1/keys/verify`` are answered by the edge (``apiward.adapters.http.edge``)
  ahead of FastAPI, with the default access log (``errors``: no line for a 200);
- ``... route``: the same app with the request envelope but without the fast paths,
  where FastAPI's routes answer;
- ``check, access log all``: a line for every request (``APIWARD_ACCESS_LOG=all``);
- ``check, no metrics``: the request metrics' ``observe`` shadowed by a no-op;
- ``check, not counted``: the analytics' share of the allowed requests (added when the
  tallies drain for their flush, ``services/allowed.py``) shadowed by a no-op;
- ``check, scopes not counted``: the scope usage tally's share (the scopes each key's
  allowed requests used) shadowed by a no-op;
- ``check, networks not counted``: the network tally's share (the /24 or /48 each key's
  allowed requests came from, for shared-key detection and impact) shadowed by a no-op;
- ``check, nothing counted``: the one count an allowed request makes on the request path
  shadowed (nothing reaches any tally), against which ``check`` gives what all the
  counting of a request costs (``--counting`` runs only these and the check, each
  counter's cost the median of its rounds paired with the check's);
- ``check, traced``: tracing on (``APIWARD_TRACING=true``), on a second runtime over the
  same database (its periodic jobs stopped), its spans batched to an exporter that drops
  them (what the SDK does up to the network). ``check`` itself is tracing off, the
  default;
- ``check, envoy``/``check, envoy route``: ``APIWARD_FORWARD_AUTH_PROXY=envoy``, the check
  as Envoy's ``ext_authz`` asks it (``GET /v1/auth/check/v1/things``: the original path
  after the prefix, read from the raw path), by its fast path and by its route, on a
  second runtime over the same database (its periodic jobs stopped), against
  ``check, X-Original-URI`` and ``check route, X-Original-URI``: the same original path
  in nginx's header.

The variants alternate for ``--rounds`` rounds of ``--calls`` requests; the medians are
compared. Writes ``bench/results/checkpath.json`` (with ``--counting``,
``bench/results/checkpath_counting.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Sequence
from typing import Any, TextIO

from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from apiward.adapters import logging as logs
from apiward.adapters.http import edge
from apiward.adapters.http.app import create_app
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


Call = tuple[str, str, list[tuple[bytes, bytes]], bytes]
"""A request: method, path, headers, body."""


async def _call(app: Any, call: Call) -> None:
    method, path, headers, body = call
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    if status != [200]:
        raise RuntimeError(f"{path} answered {status}")


def _on_runtime(settings: Settings, runtime: Any, *, fast_paths: bool = True) -> FastAPI:
    """The server app on an already running runtime, with or without the fast paths."""
    app = create_app(settings)
    app.state.runtime = runtime
    if not fast_paths:
        app.middleware_stack = edge.stack(
            FastAPI.build_middleware_stack(app), settings, app.state.error_style, {}
        )
    return app


async def run(
    calls: int, rounds: int, sink: TextIO, *, counting_only: bool = False
) -> dict[str, Any]:
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
        runtime = fast.state.runtime
        boot = await runtime.tenancy.bootstrap("Bench", "o@bench.test", "bench password 1")
        operator = await runtime.operators.principal(boot.org.id)
        key = (await runtime.keys.create(operator, name="k", scopes=["things:read"])).plaintext
        verifier = await runtime.keys.create(operator, name="v", scopes=["keys:verify"])
        host = (b"host", b"127.0.0.1:8000")
        check_call: Call = (
            "GET",
            "/v1/auth/check",
            [
                host,
                (b"authorization", f"Bearer {key}".encode()),
                (b"x-apiward-require", b"things:read"),
            ],
            b"",
        )
        verify_call: Call = (
            "POST",
            "/v1/keys/verify",
            [
                host,
                (b"authorization", f"Bearer {verifier.plaintext}".encode()),
                (b"content-type", b"application/json"),
            ],
            json.dumps({"key": key, "scopes": ["things:read"]}).encode(),
        )
        traced = create_app(
            settings.model_copy(update={"tracing": True}),
            span_processor=BatchSpanProcessor(_Dropped()),
        )
        traced_lifespan = await _started(traced)
        # Its periodic jobs would run between every variant's requests, and be counted.
        await traced.state.runtime.scheduler.stop()
        behind_envoy = settings.model_copy(update={"forward_auth_proxy": "envoy"})
        envoy = create_app(behind_envoy)
        envoy_lifespan = await _started(envoy)
        await envoy.state.runtime.scheduler.stop()
        envoy_routed = _on_runtime(behind_envoy, envoy.state.runtime, fast_paths=False)
        # After every app's start, each of which configures the logs to standard output.
        logs.configure("info", "json", sink, secret_prefixes=("aw",))
        envoy_call: Call = ("GET", "/v1/auth/check/v1/things", check_call[2], b"")
        # The same original path, in nginx's header: what the envoy variants compare with.
        original = [*check_call[2], (b"x-original-uri", b"/v1/things")]
        nginx_call: Call = ("GET", "/v1/auth/check", original, b"")
        routed = _on_runtime(settings, runtime, fast_paths=False)
        logged = _on_runtime(settings.model_copy(update={"access_log": "all"}), runtime)
        # What each tally makes of the allowed requests, when it drains (the flush's
        # spill); and the one count on the request path, which feeds all three.
        shadowed: dict[str, tuple[tuple[object, str], ...]] = {
            "check, no metrics": ((runtime.metrics, "observe"),),
            "check, not counted": ((runtime.verifications, "add"),),
            "check, scopes not counted": ((runtime.scope_tally, "add"),),
            "check, networks not counted": ((runtime.address_tally, "add"),),
            "check, nothing counted": ((runtime.auth.allowed, "count"),),
        }
        every: dict[str, tuple[Any, Call]] = {
            "check": (fast, check_call),
            "check route": (routed, check_call),
            "check, access log all": (logged, check_call),
            "check, no metrics": (fast, check_call),
            "check, not counted": (fast, check_call),
            "check, scopes not counted": (fast, check_call),
            "check, networks not counted": (fast, check_call),
            "check, nothing counted": (fast, check_call),
            "check, traced": (traced, check_call),
            "check, X-Original-URI": (fast, nginx_call),
            "check route, X-Original-URI": (routed, nginx_call),
            "check, envoy": (envoy, envoy_call),
            "check, envoy route": (envoy_routed, envoy_call),
            "verify": (fast, verify_call),
            "verify route": (routed, verify_call),
        }
        kept = ("check", *COUNTING.values()) if counting_only else tuple(every)
        variants = {name: every[name] for name in kept}

        def shadow(name: str) -> None:
            # Features off for a variant: their methods shadowed by no-ops on their objects.
            off = set(shadowed.get(name, ()))
            for parts in shadowed.values():
                for owner, method in parts:
                    if (owner, method) in off:
                        owner.__dict__[method] = _nothing
                    else:
                        owner.__dict__.pop(method, None)

        for name, (app, call) in variants.items():
            shadow(name)
            for _ in range(500):
                await _call(app, call)
        micros: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(rounds):
            for name, (app, call) in variants.items():
                shadow(name)
                start = time.process_time()
                for _ in range(calls):
                    await _call(app, call)
                micros[name].append((time.process_time() - start) / calls * 1e6)
        shadow("")
        lifespan.cancel()
        traced_lifespan.cancel()
        envoy_lifespan.cancel()
        await runtime.stop()
        await traced.state.runtime.stop()
        await envoy.state.runtime.stop()
    medians = {name: statistics.median(values) for name, values in micros.items()}
    check = medians["check"]
    counting = _counting_costs(micros)
    if counting_only:
        return {
            "setup": {**machine(), "calls": calls, "rounds": rounds, "counting_only": True},
            "cpu_us_per_request": {k: round(v, 1) for k, v in medians.items()},
            "rounds_us": {k: [round(x, 1) for x in v] for k, v in micros.items()},
            "cost_over_check": counting,
        }
    return {
        "setup": {**machine(), "calls": calls, "rounds": rounds},
        "cpu_us_per_request": {k: round(v, 1) for k, v in medians.items()},
        "rounds_us": {k: [round(x, 1) for x in v] for k, v in micros.items()},
        "check_route_over_fast_path": round(medians["check route"] / check, 2),
        "verify_route_over_fast_path": round(medians["verify route"] / medians["verify"], 2),
        "envoy_check_over_check": round(
            medians["check, envoy"] / medians["check, X-Original-URI"], 2
        ),
        "envoy_route_over_check_route": round(
            medians["check, envoy route"] / medians["check route, X-Original-URI"], 2
        ),
        "cost_over_check": {
            "access log line": round(medians["check, access log all"] / check - 1, 4),
            "request metrics": round(check / medians["check, no metrics"] - 1, 4),
            **counting,
            "tracing": round(medians["check, traced"] / check - 1, 4),
        },
    }


COUNTING = {
    "analytics counting": "check, not counted",
    "scope usage counting": "check, scopes not counted",
    "network counting": "check, networks not counted",
    "all counting": "check, nothing counted",
}
"""What each counter costs: the check against the variant with it off."""


def _counting_costs(micros: dict[str, list[float]]) -> dict[str, float]:
    """Each counter's cost as the median, over rounds, of the check's CPU against the
    variant without it in the same round: the two ran one after the other, so the
    machine's load, which moves between rounds, weighs on both alike."""
    return {
        what: round(
            statistics.median(
                on / off - 1 for on, off in zip(micros["check"], micros[v], strict=True)
            ),
            4,
        )
        for what, v in COUNTING.items()
    }


def _nothing(*args: object, **kwargs: object) -> None:
    return None


class _Dropped(SpanExporter):
    """An exporter that takes every batch and sends it nowhere."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument(
        "--counting",
        action="store_true",
        help="Only the check with every counter on against each one off (and all off).",
    )
    args = parser.parse_args()
    with open(os.devnull, "w") as sink:  # the log lines are written, to nowhere
        result = asyncio.run(run(args.calls, args.rounds, sink, counting_only=args.counting))
    if args.counting:
        for name, value in result["cpu_us_per_request"].items():
            print(f"{name:<26} {value:8.1f} µs of CPU per request (median of {args.rounds} rounds)")
        for feature, cost in result["cost_over_check"].items():
            print(f"{feature} adds {cost * 100:.1f}% CPU to a check (median of paired rounds)")
        print(f"results: {save('checkpath_counting', result)}")
        return
    for name, value in result["cpu_us_per_request"].items():
        print(f"{name:<24} {value:8.1f} µs of CPU per request (median of {args.rounds} rounds)")
    print(f"the check route costs {result['check_route_over_fast_path']}x its fast path")
    print(f"the verify route costs {result['verify_route_over_fast_path']}x its fast path")
    envoy, route = result["envoy_check_over_check"], result["envoy_route_over_check_route"]
    print(f"the check as Envoy asks it costs {envoy}x the check with X-Original-URI")
    print(f"its route costs {route}x the check's route with X-Original-URI")
    for feature, cost in result["cost_over_check"].items():
        print(f"{feature} adds {cost * 100:.1f}% CPU to a check")
    print(f"results: {save('checkpath', result)}")


if __name__ == "__main__":
    main()
