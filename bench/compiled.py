"""What compiling the hot path with mypyc buys, side by side with the same tree in Python.

    .venv/bin/python -m bench.compiled [--requests 4000] [--seconds 5] [--rounds 2]

Copies ``src/`` to a temporary directory and compiles ``MODULES`` there with mypyc (it
ships with mypy; it needs a C compiler and the Python headers), then alternates the two
trees, ``--rounds`` times each: ``bench.endpoints`` (CPU per request in process) and
``bench.http``'s floor, check and verify groups (uvicorn, one worker), each in a child
process with the tree on ``PYTHONPATH``. The children write their results to the
temporary directory (``BENCH_RESULTS``), so ``bench/results/`` keeps the pure tree's;
this script writes ``bench/results/compiled.json`` and prints both sides' rows.

The modules are the check's and the verify API's decision and the request envelope,
the ones a py-spy profile of the check spends its time in (bench/README.md). Route
modules are left in Python: mypyc checks a parameter's default against its annotation,
and FastAPI's ``Query(...)`` defaults are not the annotated types.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, machine, save

MODULES = (
    "apiward/services/auth.py",
    "apiward/services/limiting.py",
    "apiward/services/allowed.py",
    "apiward/adapters/cache/memory.py",
    "apiward/adapters/http/context.py",
    "apiward/adapters/http/middleware.py",
    "apiward/adapters/http/state.py",
    "apiward/adapters/metrics.py",
    "apiward/core/paths.py",
    "apiward/core/scopes.py",
)


def build(where: Path) -> float:
    """A copy of ``src/`` in ``where`` with ``MODULES`` compiled; the seconds it took."""
    shutil.copytree(ROOT / "src", where / "src")
    start = time.monotonic()
    subprocess.run(
        [str(Path(sys.executable).with_name("mypyc")), *MODULES],
        cwd=where / "src",
        check=True,
        capture_output=True,
    )
    built = [m for m in MODULES if list((where / "src").glob(m.replace(".py", ".*.so")))]
    if len(built) != len(MODULES):
        raise RuntimeError(f"mypyc built {len(built)} of {len(MODULES)} modules")
    return time.monotonic() - start


def measure(tree: Path | None, out: Path, requests: int, seconds: int) -> dict[str, Any]:
    """``bench.endpoints`` and three groups of ``bench.http`` with ``tree`` (None: this
    checkout's ``src/``) first on the path."""
    env = {**os.environ, "BENCH_RESULTS": str(out)}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    python = sys.executable
    subprocess.run(
        [python, "-m", "bench.endpoints", "--requests", str(requests)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    groups = ["--only", "floor", "check", "verify", "--workers", "1"]
    subprocess.run(
        [python, "-m", "bench.http", *groups, "--seconds", str(seconds)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    endpoints = json.loads((out / "endpoints.json").read_text())
    http = json.loads((out / "http.json").read_text())
    return {
        "in_process_us": {row["what"]: round(row["us"], 1) for row in endpoints["rows"]},
        "http": [
            {
                k: row.get(k)
                for k in ("group", "what", "server", "rps", "p99_ms", "floor_ratio", "served_us")
            }
            for row in http["rows"]
            if row["server"] == "uvicorn"
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=4000, help="bench.endpoints, per run")
    parser.add_argument("--seconds", type=int, default=5, help="bench.http, per row")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="apiward-compiled-") as tmp:
        work = Path(tmp)
        build_seconds = build(work / "compiled")
        print(f"mypyc: {len(MODULES)} modules in {build_seconds:.0f} s", flush=True)
        for round_ in range(args.rounds):
            for side, tree in (("python", None), ("compiled", work / "compiled" / "src")):
                out = work / f"results-{side}-{round_}"
                out.mkdir()
                result = measure(tree, out, args.requests, args.seconds)
                runs.append({"side": side, "round": round_, **result})
                print(f"\n{side}, round {round_ + 1}", flush=True)
                for what, us in result["in_process_us"].items():
                    print(f"  {what:<62}{us:>8.1f} µs")
                for row in result["http"]:
                    print(
                        f"  {row['what']:<46}{row['rps']:>10,.0f} req/s"
                        f"  p99 {row['p99_ms']:>6.2f} ms  floor {row['floor_ratio']:.2f}"
                        f"  cpu {row['served_us']:>6.1f} µs"
                    )
    data = {
        "setup": {**machine(), "modules": MODULES, "build_seconds": round(build_seconds)},
        "runs": runs,
    }
    print(f"results: {save('compiled', data)}")


if __name__ == "__main__":
    main()
