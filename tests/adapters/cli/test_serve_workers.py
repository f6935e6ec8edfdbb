"""``apiward serve --workers N`` keeps a worker that a loaded machine leaves without CPU
for seconds: its supervisor takes a worker for hung only after
``WORKER_HEALTHCHECK_SECONDS`` (uvicorn's own 5 s killed such workers, and starting
ones still importing, with the requests they held)."""

from __future__ import annotations

import asyncio
import os
import signal
from contextlib import suppress
from pathlib import Path

import httpx

from apiward.adapters.runtime import build
from tests.conftest import fast_settings
from tests.live import spawn_server


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    with suppress(FileNotFoundError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with suppress(FileNotFoundError):
                for child in map(int, (task / "children").read_text().split()):
                    found += [child, *descendants(child)]
    return found


def signal_all(processes: list[int], sig: signal.Signals) -> None:
    for pid in processes:
        with suppress(ProcessLookupError):
            os.kill(pid, sig)


def test_a_worker_starved_of_cpu_for_seconds_is_not_killed(sqlite_url: str) -> None:
    asyncio.run(starved(sqlite_url))


async def starved(url: str) -> None:
    runtime = build(fast_settings(database_url=url))
    await runtime.start(background=False)  # the schema, before the workers start
    await runtime.stop()
    with spawn_server(url, APIWARD_WORKERS="2") as server:
        workers = descendants(server.process.pid)
        assert len(workers) >= 2, workers
        signal_all(workers, signal.SIGSTOP)  # as a loaded machine would, for 7 s
        try:
            await asyncio.sleep(7)
        finally:
            signal_all(workers, signal.SIGCONT)
        # New connections: an idle one may be closed as the worker wakes (keep-alive).
        async with httpx.AsyncClient(timeout=30) as http:
            assert (await http.get(f"{server.url}/healthz")).status_code == 200
        assert descendants(server.process.pid) == workers
