"""Helpers for the benchmark scripts: a throw-away apiward server and wrk runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "results"
SECRET = "bench-secret-bench-secret-bench-secret-0123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
POSTGRES_BENCH = "postgresql+asyncpg://postgres@127.0.0.1:5432/apiward_bench"


def fresh_postgres() -> str:
    """An empty ``apiward_bench`` database on the local PostgreSQL; its URL."""
    import asyncpg

    async def reset() -> None:
        conn = await asyncpg.connect(POSTGRES_ADMIN)
        await conn.execute("DROP DATABASE IF EXISTS apiward_bench WITH (FORCE)")
        await conn.execute("CREATE DATABASE apiward_bench")
        await conn.close()

    import asyncio

    asyncio.run(reset())
    return POSTGRES_BENCH


def bench_env(db: Path | str, **extra: str) -> dict[str, str]:
    url = db if isinstance(db, str) else f"sqlite+aiosqlite:///{db}"
    return {
        **os.environ,
        "APIWARD_DATABASE_URL": url,
        "APIWARD_LOG_LEVEL": "warning",
        "APIWARD_SECRET_KEY": SECRET,
        **extra,
    }


def apiward(env: dict[str, str], *args: str) -> dict[str, object]:
    out = subprocess.run(
        [str(BIN / "apiward"), *args, "--json"], env=env, check=True, capture_output=True, text=True
    )
    return dict(json.loads(out.stdout))


@contextmanager
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="apiward-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def server(env: dict[str, str], workers: int = 2) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "apiward"), "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        time.sleep(1.0)  # every worker up
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def need_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        sys.exit("wrk is needed: apt-get install wrk")
    return path


def wrk(
    url: str,
    script: Path | None = None,
    *,
    connections: int = 50,
    seconds: int = 10,
    threads: int = 2,
) -> dict[str, float]:
    """Run wrk and parse requests/s and latency percentiles (ms)."""
    cmd = [need_wrk(), f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script is not None:
        cmd[1:1] = ["-s", str(script)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "90", "99"):
        m = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out)
        if m:
            value = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
            result[f"p{pct}_ms"] = round(value, 2)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non_2xx"] = float(non2xx.group(1)) if non2xx else 0.0
    result["requests"] = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return result


def save(name: str, data: object) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2))
    return path
