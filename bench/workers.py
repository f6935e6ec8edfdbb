"""The check's requests per second by worker count, with the Redis limiter deciding
every request, and what one core buys.

    .venv/bin/python -m bench.workers [--seconds 10] [--workers 1 2]

Needs wrk and redis-server. Starts a redis-server of its own on a free port, a SQLite
store, and ``apiward serve --workers N`` for each row; every measurement is wrk with 50
connections and 2 threads against ``GET /v1/auth/check`` (``X-Apiward-Require:
things:read``) after a 2 s warm-up. The rows:

- ``floor``: the bare ASGI app (bench/apps.py ``bare``) under the same uvicorn flags;
- ``no limit``: a key without a rate limit, no Redis;
- ``local limiter``: the key limited (``per-key``, far above the load), no Redis: each
  process decides in its own table;
- ``Redis, admitting``: the same limit on a Redis: one script per request, every one
  admitted;
- ``Redis, refusing``: a limit of 1 an hour on a Redis: after the first request, every
  answer is a 429 (refusals spend nothing, but they are decided).

Beside requests per second and latency, each row records the CPU the apiward processes
and redis-server spent per request (from ``/proc``, over the measured run). wrk, the
servers and Redis share the machine's two cores, so the measured rates at 2 workers
are bounded by the machine; the CPU per request is not, and gives the projection for 4
and 8 workers on as many cores: ``min(N x 1e6 / apiward_us, 1e6 / redis_us)`` (Redis
runs one thread per shard). Prints a table and writes ``bench/results/workers.json``
(``--save NAME``: ``bench/results/NAME.json``). With ``PYTHONPATH`` naming another
checkout's ``src``, the servers run that checkout's apiward (a *before* row).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.common import (
    BIN,
    ROOT,
    apiward,
    bench_env,
    free_port,
    machine,
    others_cpu,
    save,
    spawned,
    tree_cpu,
    wrk,
)
from bench.http import lua, uvicorn_cmd
from bench.redis_faults import Server

CONNECTIONS = 50
THREADS = 2
PROJECTED = (4, 8)
KONG_PER_VCPU = 6_075
"""Requests/s per vCPU published for Kong Gateway 3.10 with key-auth and rate-limiting
(a c5.4xlarge, a limit that never refuses), for the comparison in bench/README.md."""

Row = dict[str, Any]


def keys(env: dict[str, str]) -> dict[str, str]:
    """The organisation and three keys: unlimited, limited far above the load, and
    limited to 1 an hour."""
    apiward(
        env, "init", "--org-name", "Bench", "--email", "bench@apiward.test",
        "--password", "correct horse battery",
    )  # fmt: skip

    def key(name: str, *limit: str) -> str:
        made = apiward(env, "keys", "create", "--name", name, "--scope", "things:read", *limit)
        return str(made["key"])

    return {
        "open": key("open"),
        "high": key("high", "--rate-limit", "per-key=1000000000/hour@credential"),
        "one": key("one", "--rate-limit", "per-key=1/hour@credential"),
    }


def measure(
    cmd: list[str], env: dict[str, str], port: int, script: Path, seconds: int, redis: Server | None
) -> Row:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    with spawned(cmd, {**env, "PYTHONPATH": path}, port, settle=1.5) as (base, process):
        url = f"{base}/v1/auth/check"
        wrk(url, script, connections=CONNECTIONS, threads=THREADS, seconds=2)
        server_before = tree_cpu(process.pid)
        redis_before = tree_cpu(redis.pid) if redis else 0.0
        with others_cpu() as others:
            result = wrk(url, script, connections=CONNECTIONS, threads=THREADS, seconds=seconds)
        server_cpu = tree_cpu(process.pid) - server_before
        redis_cpu = (tree_cpu(redis.pid) - redis_before) if redis else 0.0
    requests = result["requests"]
    return {
        **result,
        **others,
        "apiward_us": round(server_cpu / requests * 1e6, 1),
        "redis_us": round(redis_cpu / requests * 1e6, 1) if redis else None,
    }


def projection(row: Row) -> dict[str, int]:
    """Requests/s on N cores from the CPU per request: N workers' worth, capped by one
    Redis thread."""
    per_core = 1e6 / row["apiward_us"]
    cap = 1e6 / row["redis_us"] if row.get("redis_us") else float("inf")
    return {f"projected_{n}": int(min(n * per_core, cap)) for n in PROJECTED} | {
        "per_core": int(per_core),
        "redis_cap": int(cap) if cap != float("inf") else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--save", default="workers")
    args = parser.parse_args()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="apiward-bench-") as tmp, ExitStack() as stack:
        directory = Path(tmp)
        redis = Server(str(directory))
        redis.start()
        stack.callback(redis.kill)
        plain = bench_env(directory / "plain.db", APIWARD_LOG_LEVEL="warning")
        limited = bench_env(
            directory / "redis.db", APIWARD_LOG_LEVEL="warning", APIWARD_REDIS_URL=redis.url
        )
        subject = {"plain": keys(plain), "redis": keys(limited)}

        def script(key: str) -> Path:
            return lua(
                directory / f"{key[-8:]}.lua",
                headers={"Authorization": f"Bearer {key}", "X-Apiward-Require": "things:read"},
            )

        cases = [
            ("floor", None, plain, subject["plain"]["open"], None),
            ("no limit", "apiward", plain, subject["plain"]["open"], None),
            ("local limiter", "apiward", plain, subject["plain"]["high"], None),
            ("Redis, admitting", "apiward", limited, subject["redis"]["high"], redis),
            ("Redis, refusing", "apiward", limited, subject["redis"]["one"], redis),
        ]
        header = f"{'row':<18}{'workers':>8}{'req/s':>9}{'p50':>7}{'p99':>7}"
        print(header + f"{'apiward us':>11}{'redis us':>9}{'others':>7}", flush=True)
        for n in args.workers:
            for what, server, env, key, used in cases:
                port = free_port()
                if server is None:
                    cmd = uvicorn_cmd("bench.apps:bare", port, n)
                else:
                    cmd = [str(BIN / "apiward"), "serve", f"--port={port}", f"--workers={n}"]
                row = {"what": what, "workers": n}
                row |= measure(cmd, env, port, script(key), args.seconds, used)
                if server is not None:
                    row |= projection(row)
                rows.append(row)
                print(
                    f"{what:<18}{n:>8}{row['rps']:>9,.0f}{row.get('p50_ms', 0):>7.2f}"
                    f"{row.get('p99_ms', 0):>7.2f}{row['apiward_us']:>11.1f}"
                    f"{row['redis_us'] or 0:>9.1f}{row.get('others_cores', 0):>7.2f}",
                    flush=True,
                )
    print("\nprojected from CPU per request (1 worker's rows):")
    for row in rows:
        if row["workers"] == args.workers[0] and "per_core" in row:
            cap = f"{row['redis_cap']:,}" if row["redis_cap"] else "-"
            print(
                f"  {row['what']:<18} per core {row['per_core']:>7,}  "
                + "  ".join(f"{n} cores {row[f'projected_{n}']:>7,}" for n in PROJECTED)
                + f"  one Redis thread {cap} ({row['per_core'] / KONG_PER_VCPU:.2f}x Kong's"
                " published per-vCPU figure)",
                flush=True,
            )
    save(args.save, {"machine": machine(), "seconds": args.seconds, "rows": rows})


if __name__ == "__main__":
    main()
