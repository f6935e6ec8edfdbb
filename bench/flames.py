"""Flame graphs of the hot paths under load, from a live server.

    .venv/bin/python -m bench.flames [--seconds 8]

Starts ``apiward serve`` (uvicorn, one worker) on a throw-away SQLite database, drives
``GET /v1/auth/check`` and ``POST /v1/keys/verify`` with wrk (the requests of
``bench/http.py``), and records each with py-spy (``pip install py-spy``) while the
load runs: ``bench/results/flame-check.svg`` and ``bench/results/flame-verify.svg``.
py-spy samples the process from outside (100 samples a second), so the server runs
at its own speed while it is profiled, not under a profiler's hooks.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import threading

from bench.common import BIN, RESULTS, free_port, workdir
from bench.http import CONNECTIONS, THREADS, apiward_cmd, bench_env, bootstrap, lua, serving

FORMAT = "svg"
"""``svg`` (a flame graph) or ``txt`` (py-spy's collapsed stacks, one line per stack)."""


def record(pid: int, seconds: int, out: str) -> None:
    subprocess.run(
        [
            str(BIN / "py-spy"),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(seconds),
            "--rate",
            "100",
            "--format",
            "raw" if out.endswith(".txt") else "flamegraph",
            "--output",
            out,
            "--nonblocking",
        ],
        check=True,
        capture_output=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--raw", action="store_true", help="collapsed stacks (.txt), not svg")
    args = parser.parse_args()
    global FORMAT
    FORMAT = "txt" if args.raw else "svg"
    if not (BIN / "py-spy").exists() or not shutil.which("wrk"):
        raise SystemExit("needs py-spy (pip install py-spy) and wrk (apt-get install wrk)")
    with workdir() as tmp:
        env = {**bench_env(tmp / "bench.db"), "APIWARD_DOCS_ENABLED": "false"}
        keys = bootstrap(env)
        env["APIWARD_MIGRATE_ON_START"] = "false"
        check = lua(
            tmp / "check.lua",
            headers={
                "Authorization": f"Bearer {keys['reader']}",
                "X-Apiward-Require": "things:read",
            },
        )
        verify = lua(
            tmp / "verify.lua",
            headers={
                "Authorization": f"Bearer {keys['caller']}",
                "Content-Type": "application/json",
            },
            method="POST",
            body=f'{{"key": "{keys["reader"]}"}}',
        )
        port = free_port()
        cmd = apiward_cmd("uvicorn", port, 1)
        with serving(cmd, env, port) as base:
            pid = int(
                subprocess.run(
                    ["pgrep", "-f", "--", f"--port={port}"],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.split()[0]
            )
            for name, path, script in (
                ("check", "/v1/auth/check", check),
                ("verify", "/v1/keys/verify", verify),
            ):
                out = str(RESULTS / f"flame-{name}.{FORMAT}")
                load = [
                    "wrk",
                    f"-t{THREADS}",
                    f"-c{CONNECTIONS}",
                    f"-d{args.seconds + 2}s",
                    "-s",
                    str(script),
                    f"{base}{path}",
                ]
                wrk = threading.Thread(target=subprocess.run, args=(load,), daemon=True)
                wrk.start()
                record(pid, args.seconds, out)
                wrk.join()
                print(f"{name}: {out}")


if __name__ == "__main__":
    main()
