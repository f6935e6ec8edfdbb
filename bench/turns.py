"""What a served request costs its server beyond the app, by how long the app takes,
under uvicorn's own HTTP protocol and under the one ``apiward serve`` runs.

    .venv/bin/python -m bench.turns [--seconds 5] [--busy 0 50 150]

Serves ``bench/apps.py``'s ``busy`` (the floor's constant answer after a fixed spend of
CPU per request) with one worker, uvloop and httptools, once with uvicorn's
``HttpToolsProtocol`` and once with ``apiward.adapters.http.protocol``'s
``BoundedHttpToolsProtocol``, one after the other for each spend, and drives each with
wrk (50 connections). Prints requests per second, latency, and the served process's
CPU per request, less the app's spend: what the server costs a request.

On a loopback or a virtual machine, a write that wakes a reader asleep in ``epoll``
costs the writer most. An app that answers at once (``--busy 0``) is answered while
wrk is still awake; one that takes longer finds it asleep at every answer. The second
protocol holds what a turn of the event loop writes until the turn ends
(docs/architecture.md section 7).
"""

from __future__ import annotations

import argparse
import functools
import os

from bench.common import BIN, ROOT, free_port, save, spawned, tree_cpu, wrk
from bench.http import uvicorn_cmd


def protocol_cmd(target: str, port: int) -> list[str]:
    """``target`` served as ``apiward serve`` serves its app: its protocol, its flags."""
    return [str(BIN / "python"), "-m", "bench.turns", "--serve", target, str(port)]


def serve(target: str, port: int) -> None:
    import uvicorn

    from apiward.adapters.http.protocol import BoundedHttpToolsProtocol, HeadLimits

    uvicorn.run(
        target,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        http=functools.partial(BoundedHttpToolsProtocol, limits=HeadLimits()),  # type: ignore[arg-type]
    )


def measure(busy: int, protocol: str, seconds: int) -> dict[str, float]:
    port = free_port()
    target = "bench.apps:busy"
    cmd = uvicorn_cmd(target, port, 1) if protocol == "uvicorn" else protocol_cmd(target, port)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_BUSY_US": str(busy)}
    with spawned(cmd, env, port) as (base, proc):
        wrk(f"{base}/", seconds=1)
        before = tree_cpu(proc.pid)
        result = wrk(f"{base}/", seconds=seconds)
        cpu_us = (tree_cpu(proc.pid) - before) / result["requests"] * 1e6
    return {**result, "busy_us": busy, "cpu_us": cpu_us, "server_us": cpu_us - busy}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 50, 150])
    parser.add_argument("--serve", nargs=2, metavar=("TARGET", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return
    rows = []
    print(
        f"{'app µs':>7}  {'protocol':<10}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'cpu µs':>8}{'server µs':>11}"
    )
    for busy in args.busy:
        for protocol in ("uvicorn", "apiward"):
            row = {"protocol": protocol, **measure(busy, protocol, args.seconds)}
            rows.append(row)
            print(
                f"{busy:>7}  {protocol:<10}{row['rps']:>9,.0f}{row['p50_ms']:>8.2f}"
                f"{row['p99_ms']:>8.2f}{row['cpu_us']:>8.1f}{row['server_us']:>11.1f}",
                flush=True,
            )
    print(f"results: {save('turns', {'seconds': args.seconds, 'rows': rows})}")


if __name__ == "__main__":
    main()
