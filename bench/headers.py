"""What bounding the request head costs ``apiward serve``, and what it saves.

    .venv/bin/python -m bench.headers [--seconds 5] [--rounds 3] [--mb 64]

Side by side on one SQLite file, one worker each, alternating for ``--rounds`` rounds:

- ``bounded``: ``apiward serve``, whose connections bound the request head
  (``apiward.adapters.http.protocol``: 32 KiB, 100 fields, 10 s);
- ``unbounded``: uvicorn's own httptools protocol on the same app factory, with the
  flags ``apiward serve`` gives it otherwise.

Each is measured with wrk on ``GET /healthz`` with wrk's two headers and with 20 more
(about 1 KB, a browser's worth), then with 8 connections each sending a header of
``--mb`` MB that never ends (the server's peak resident memory over its idle size).

wrk and the servers share the machine, so on a busy one the HTTP rows say little; the
CPU rows do not need a quiet machine as much: both protocols, in process, fed
``--requests`` keep-alive requests on one connection (a transport that discards what
is written, an app answering a constant), CPU time per request, median of ``--rounds``
alternating rounds. Writes ``bench/results/headers.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import socket
import statistics
import time
from pathlib import Path
from typing import Any

import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from apiward.adapters.http.protocol import BoundedHttpToolsProtocol, HeadLimits
from bench.common import BIN, bench_env, free_port, machine, others_cpu, save, spawn, workdir, wrk
from bench.http import lua, uvicorn_cmd


def command(variant: str, port: int) -> list[str]:
    if variant == "bounded":
        return [str(BIN / "apiward"), "serve", f"--port={port}", "--workers=1"]
    return uvicorn_cmd("apiward.adapters.http.app:create_app", port, 1, factory=True)


def server_pid() -> int:
    """The one child of this process (the server; wrk has finished)."""
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me:
                return int(entry.name)
    raise RuntimeError("no server process")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def unfinished_heads(port: int, pid: int, megabytes: int) -> dict[str, float]:
    """8 connections each sending a never-ending header of ``megabytes`` MB (or until
    refused): the server's peak RSS growth and what the clients got to send."""
    before = peak = rss_kib(pid)
    chunk = b"a" * 65_536
    socks = [socket.create_connection(("127.0.0.1", port), timeout=0.5) for _ in range(8)]
    sent = [0] * 8
    started = time.monotonic()
    try:
        for sock in socks:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        live = set(range(8))
        while live and time.monotonic() - started < 60:
            for i in list(live):
                try:
                    socks[i].sendall(chunk)
                    sent[i] += len(chunk)
                except OSError:
                    live.discard(i)
                    continue
                if sent[i] >= megabytes * 1_048_576:
                    live.discard(i)
            peak = max(peak, rss_kib(pid))
        time.sleep(0.5)
        peak = max(peak, rss_kib(pid))
    finally:
        for sock in socks:
            sock.close()
    return {
        "rss_before_mb": round(before / 1024, 1),
        "rss_peak_growth_mb": round((peak - before) / 1024, 1),
        "sent_per_connection_mb": round(max(sent) / 1_048_576, 2),
        "seconds": round(time.monotonic() - started, 1),
    }


class _Sink(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = asyncio.Event()
        self.closing = False

    def write(self, data: Any) -> None:
        self.written.set()

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _constant(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


async def _cpu_us(factory: Any, raw: bytes, requests: int) -> float:
    config = uvicorn.Config(app=_constant, lifespan="off", access_log=False, proxy_headers=False)
    config.load()
    protocol = factory(config=config, server_state=ServerState(), app_state={})
    sink = _Sink()
    protocol.connection_made(sink)
    start = time.process_time()
    for _ in range(requests):
        sink.written.clear()
        protocol.data_received(raw)
        await sink.written.wait()
    return (time.process_time() - start) / requests * 1e6


def protocol_cpu(rounds: int, requests: int) -> dict[str, dict[str, float]]:
    variants: dict[str, Any] = {
        "unbounded": HttpToolsProtocol,
        "bounded": functools.partial(BoundedHttpToolsProtocol, limits=HeadLimits()),
    }
    fields = b"".join(b"X-Field-%02d: %s\r\n" % (i, b"v" * 40) for i in range(20))
    heads = {
        "3 headers": b"GET /v1/auth/check HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\r\n\r\n",
        "22 headers": b"GET /v1/auth/check HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n",
    }
    out: dict[str, dict[str, float]] = {}

    async def run() -> None:
        for label, raw in heads.items():
            got: dict[str, list[float]] = {v: [] for v in variants}
            for round_ in range(rounds):
                order = list(variants.items())
                for name, factory in order if round_ % 2 == 0 else order[::-1]:
                    got[name].append(await _cpu_us(factory, raw, requests))
            median = {name: statistics.median(values) for name, values in got.items()}
            out[label] = {
                "unbounded_us": round(median["unbounded"], 2),
                "bounded_us": round(median["bounded"], 2),
                "extra_us": round(median["bounded"] - median["unbounded"], 2),
            }
            print(f"CPU per request, {label}: {out[label]}", flush=True)

    uvloop.run(run())
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mb", type=int, default=64)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--cpu-only", action="store_true")
    args = parser.parse_args()
    cpu = protocol_cpu(max(args.rounds, 5), args.requests)
    if args.cpu_only:
        save("headers", {"machine": machine(), "args": vars(args), "cpu": cpu})
        return
    variants = ("bounded", "unbounded")
    rps: dict[str, dict[str, list[float]]] = {
        v: {"2 headers": [], "22 headers": []} for v in variants
    }
    p99: dict[str, dict[str, list[float]]] = {
        v: {"2 headers": [], "22 headers": []} for v in variants
    }
    memory: dict[str, Any] = {}
    with workdir() as tmp:
        env = bench_env(tmp / "apiward.db", APIWARD_LOG_LEVEL="warning")
        many = lua(tmp / "many.lua", headers={f"X-Field-{i:02d}": "v" * 40 for i in range(20)})
        for round_ in range(args.rounds):
            for variant in variants if round_ % 2 == 0 else variants[::-1]:
                port = free_port()
                with spawn(command(variant, port), env, port, settle=1.5) as base:
                    url = f"{base}/healthz"
                    wrk(url, connections=50, threads=1, seconds=1)  # warm-up
                    for label, script in (("2 headers", None), ("22 headers", many)):
                        with others_cpu() as others:
                            result = wrk(
                                url, script, connections=50, threads=1, seconds=args.seconds
                            )
                        rps[variant][label].append(result["rps"])
                        p99[variant][label].append(result.get("p99_ms", 0.0))
                        print(
                            f"round {round_} {variant:<10}{label:<12}{result['rps']:>10,.0f}/s "
                            f"p99 {result.get('p99_ms', 0):.2f} ms "
                            f"(others {others.get('others_cores', 0):.2f} cores)",
                            flush=True,
                        )
                    if round_ == args.rounds - 1:
                        memory[variant] = unfinished_heads(port, server_pid(), args.mb)
                        print(f"  {variant}: {args.mb} MB heads x 8: {memory[variant]}", flush=True)
    summary = {
        label: {
            **{f"{v}_rps": statistics.median(rps[v][label]) for v in variants},
            **{f"{v}_p99_ms": statistics.median(p99[v][label]) for v in variants},
            "ratio": round(
                statistics.median(rps["bounded"][label])
                / statistics.median(rps["unbounded"][label]),
                3,
            ),
        }
        for label in ("2 headers", "22 headers")
    }
    for label, row in summary.items():
        print(f"{label}: bounded / unbounded = {row['ratio']:.3f}  {row}")
    path = save(
        "headers",
        {
            "machine": machine(),
            "args": vars(args),
            "cpu": cpu,
            "summary": summary,
            "memory": memory,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
