"""The server's periodic jobs: one task a job, each run at its interval, stopped gently.

A job that raises an ``ApiwardError`` (a database that is down, say) is logged and run
again at its next interval; anything else is a bug and ends that job's task loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from apiward.core.errors import ApiwardError

log = structlog.get_logger("apiward.scheduler")

Job = Callable[[], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class Periodic:
    name: str
    seconds: float
    job: Job
    wakeable: bool = False
    """``Scheduler.wake`` ends this job's wait early (a database notification)."""
    interval: Callable[[], float] | None = None
    """The wait before each run, read anew each time (else ``seconds``): the invalidation
    poll waits longer while invalidations are pushed to this process."""

    def wait(self) -> float:
        return self.seconds if self.interval is None else self.interval()


class Scheduler:
    """Runs ``Periodic`` jobs on the current loop from ``start`` until ``stop``."""

    def __init__(self, jobs: list[Periodic], *, stop_grace: float = 5.0) -> None:
        self._jobs = jobs
        self._stop_grace = stop_grace
        self._tasks: list[asyncio.Task[None]] = []
        self._busy: set[asyncio.Task[object]] = set()
        self._closing = False
        self._wakeup = asyncio.Event()

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    def start(self) -> None:
        self._closing = False
        self._tasks = [asyncio.create_task(self._every(job)) for job in self._jobs]

    def wake(self) -> None:
        """End the wait of the wakeable jobs now (their interval stays the safety net)."""
        self._wakeup.set()

    async def stop(self) -> None:
        """Cancel idle jobs at once; a running job gets ``stop_grace`` seconds to finish.

        A task cancelled inside a transaction can leave it open (and SQLite's write lock
        held for the busy timeout), so a running job is not cut short unless it overruns.
        """
        self._closing = True
        busy = [task for task in self._tasks if task in self._busy]
        for task in self._tasks:
            if task not in self._busy:
                task.cancel()
        if busy:
            await asyncio.wait(busy, timeout=self._stop_grace)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _every(self, periodic: Periodic) -> None:
        while not self._closing:
            if periodic.wakeable:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), periodic.wait())
                self._wakeup.clear()
            else:
                await asyncio.sleep(periodic.wait())
            if self._closing:
                return
            current = asyncio.current_task()
            assert current is not None
            self._busy.add(current)
            try:
                await periodic.job()
            except ApiwardError as exc:
                log.warning("background_job_failed", job=periodic.name, error=exc.message)
            except Exception as exc:
                # A driver's error (a store shutting down) must not end the job: it runs
                # again at its next interval, as after one of apiward's own.
                log.warning(
                    "background_job_failed",
                    job=periodic.name,
                    error=f"{type(exc).__name__}: {exc}",
                )
            finally:
                self._busy.discard(current)
