"""Work finished after the answer is sent: audit writes of refused sign-ins, and the
portal's address-dependent work, whose duration must not show in the answer's timing."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from apiward.core.errors import ApiwardError


class Background:
    """Runs coroutines on the current loop past the answer, and waits for them at the end."""

    def __init__(self, log: Any) -> None:
        self._log = log
        self._pending: set[asyncio.Task[None]] = set()

    def later(self, work: Coroutine[Any, Any, None], what: str) -> None:
        task = asyncio.get_running_loop().create_task(self._run(work, what))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _run(self, work: Coroutine[Any, Any, None], what: str) -> None:
        try:
            await work
        except ApiwardError as exc:
            self._log.warning("background_work_failed", work=what, error=exc.message)

    async def drain(self) -> None:
        """Wait for every deferred piece of work (at shutdown, and in tests)."""
        while self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
