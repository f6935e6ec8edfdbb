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
from contextlib import contextmanager, suppress
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RESULTS = Path(os.environ.get("BENCH_RESULTS") or ROOT / "bench" / "results")
"""Where results are written (``BENCH_RESULTS``: elsewhere, for a run that is not the tree's)."""
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
def spawned(
    cmd: list[str], env: dict[str, str], port: int, *, settle: float = 1.0
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run a server process listening on ``port`` until the block ends; yields its base
    URL and the process (``tree_cpu(process.pid)`` is what it and its workers spent).

    Fails with the process's output when it exits before accepting connections.
    """
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        output = log.read().decode(errors="replace")[-3000:]
                        raise RuntimeError(f"{' '.join(cmd)} did not start:\n{output}") from None
                    time.sleep(0.1)
            time.sleep(settle)  # every worker up
            yield f"http://127.0.0.1:{port}", proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def spawn(cmd: list[str], env: dict[str, str], port: int, *, settle: float = 1.0) -> Iterator[str]:
    """``spawned``, for a caller that needs the base URL only."""
    with spawned(cmd, env, port, settle=settle) as (base, _):
        yield base


@contextmanager
def server(env: dict[str, str], workers: int = 2) -> Iterator[str]:
    """``apiward serve`` (uvicorn) on a free port."""
    port = free_port()
    cmd = [str(BIN / "apiward"), "serve", "--port", str(port), "--workers", str(workers)]
    with spawn(cmd, env, port) as base:
        yield base


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
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["socket_errors"] = float(sum(map(int, errors.groups()))) if errors else 0.0
    result["requests"] = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return result


def save(name: str, data: object) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2))
    return path


def machine() -> dict[str, object]:
    """What the numbers were measured on, for the JSON and the README."""
    import platform
    from importlib import metadata

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str] = {}
    for package in ("uvicorn", "granian", "uvloop", "httptools", "fastapi", "starlette"):
        with suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    for tool, flag in (("wrk", "-v"), ("nginx", "-v")):
        path = shutil.which(tool) or (
            f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists() else None
        )
        if path:
            done = subprocess.run([path, flag], capture_output=True, text=True, check=False)
            versions[tool] = (done.stdout + done.stderr).strip().splitlines()[0]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def _tick() -> float:
    return float(os.sysconf("SC_CLK_TCK"))


def _machine_busy() -> float:
    """CPU seconds spent in processes on the machine since boot: user, nice and system.

    Interrupt and softirq time (loopback TCP work, charged to no process) and steal are
    left out; guest time is already inside user.
    """
    user, nice, system = (int(v) for v in Path("/proc/stat").read_text().split()[1:4])
    return (user + nice + system) / _tick()


def tree_cpu(root: int) -> float:
    """CPU seconds of process ``root`` and its live descendants, each with its reaped
    children (a worker's, or wrk for this process)."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        pid, ppid = int(entry.name), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        # utime, stime, cutime, cstime
        times[pid] = sum(int(v) for v in fields[11:15]) / _tick()
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        total += times.get(pid, 0.0)
        stack.extend(children.get(pid, []))
    return total


def _own_tree() -> float:
    """CPU seconds of this process, its finished children (wrk) and its live descendants."""
    return tree_cpu(os.getpid())


@contextmanager
def others_cpu() -> Iterator[dict[str, float]]:
    """How many cores processes outside this benchmark used during the block.

    On a machine shared with other work, side-by-side ratios are only as good as this
    number is small; the scripts record it next to every measurement.
    """
    out: dict[str, float] = {}
    if not Path("/proc/stat").exists():
        yield out
        return
    start, busy, own, served = time.monotonic(), _machine_busy(), _own_tree(), _served()
    yield out
    elapsed = time.monotonic() - start
    others = (_machine_busy() - busy) - (_own_tree() - own)
    out["others_cores"] = round(max(others, 0.0) / elapsed, 2) if elapsed > 0 else 0.0
    out["served_cpu_s"] = round(max(_served() - served, 0.0), 3)


def _served() -> float:
    """CPU seconds of this process's live descendants: the servers under test (wrk, a
    child only while it runs, is counted in this process's own reaped-children time)."""
    return tree_cpu(os.getpid()) - sum(os.times()[:4])
