"""The periodic jobs: run at their interval, survive a failing store, stop gently."""

from __future__ import annotations

import asyncio

import pytest

from apiward.core.errors import ServiceUnavailable
from apiward.services.scheduler import Periodic, Scheduler

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_job_runs_again_after_a_domain_error() -> None:
    runs: list[int] = []

    async def flaky() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise ServiceUnavailable()

    scheduler = Scheduler([Periodic("flaky", 0.01, flaky)])
    scheduler.start()
    for _ in range(200):
        if len(runs) >= 3:
            break
        await asyncio.sleep(0.01)
    await scheduler.stop()
    assert len(runs) >= 3
    assert not scheduler.running


@pytest.mark.parametrize(
    "error",
    [ConnectionResetError("the database went away"), OSError("connect failed"), ValueError()],
)
async def test_a_job_runs_again_after_any_error(error: Exception) -> None:
    """A driver's error (a database shutting down) ended the job's task for good:
    nothing more was written until a restart."""
    runs: list[int] = []

    async def flaky() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise error

    scheduler = Scheduler([Periodic("flaky", 0.01, flaky)])
    scheduler.start()
    for _ in range(500):
        if len(runs) >= 3:
            break
        await asyncio.sleep(0.01)
    await scheduler.stop()
    assert len(runs) >= 3


async def test_stop_lets_a_running_job_finish_and_cancels_idle_ones() -> None:
    started = asyncio.Event()
    finished: list[str] = []

    async def slow() -> None:
        started.set()
        await asyncio.sleep(0.2)
        finished.append("slow")

    async def idle() -> None:
        finished.append("idle")

    scheduler = Scheduler([Periodic("slow", 0.0, slow), Periodic("idle", 3600, idle)])
    scheduler.start()
    await started.wait()
    await scheduler.stop()
    assert finished == ["slow"]


async def test_a_job_overrunning_the_grace_is_cancelled() -> None:
    started = asyncio.Event()

    async def stuck() -> None:
        started.set()
        await asyncio.sleep(3600)

    scheduler = Scheduler([Periodic("stuck", 0.0, stuck)], stop_grace=0.05)
    scheduler.start()
    await started.wait()
    await asyncio.wait_for(scheduler.stop(), 5)
    assert not scheduler.running


async def test_wake_ends_the_wait_of_wakeable_jobs_only() -> None:
    woken: list[str] = []

    async def record(name: str) -> None:
        woken.append(name)

    scheduler = Scheduler(
        [
            Periodic("poll", 3600, lambda: record("poll"), wakeable=True),
            Periodic("other", 3600, lambda: record("other")),
        ]
    )
    scheduler.start()
    await asyncio.sleep(0.01)
    scheduler.wake()
    for _ in range(100):
        if woken:
            break
        await asyncio.sleep(0.01)
    await scheduler.stop()
    assert woken == ["poll"]
