"""Work finished after the answer is sent: audit writes of refused sign-ins, and the
portal's address-dependent work, whose duration must not show in the answer's timing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

from apiward.core.errors import ApiwardError


async def cancel(task: asyncio.Task[Any] | None) -> None:
    """Cancel a background task and wait until it has ended (nothing when None)."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class TaskSet:
    """Tasks started without waiting for them, kept referenced until they end.

    ``drain`` waits on a snapshot of what is pending and removes what finished itself,
    so it ends even when every task is already done and their done-callbacks have not
    run yet (where ``gather`` over finished tasks completes without yielding to the
    loop, a loop waiting for those callbacks would never end).
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait until every task, including those started meanwhile, has ended."""
        while self._tasks:
            batch = tuple(self._tasks)
            await asyncio.wait(batch)
            self._tasks.difference_update(batch)
            for task in batch:  # as gather(return_exceptions=True) did: seen, not raised
                if not task.cancelled():
                    task.exception()


class Background:
    """Runs coroutines on the current loop past the answer, and waits for them at the end."""

    def __init__(self, log: Any) -> None:
        self._log = log
        self._tasks = TaskSet()

    def later(self, work: Coroutine[Any, Any, None], what: str) -> None:
        self._tasks.start(self._run(work, what))

    async def _run(self, work: Coroutine[Any, Any, None], what: str) -> None:
        try:
            await work
        except ApiwardError as exc:
            self._log.warning("background_work_failed", work=what, error=exc.message)

    async def drain(self) -> None:
        """Wait for every deferred piece of work (at shutdown, and in tests)."""
        await self._tasks.drain()
