"""One store read for a record however many requests miss it at once.

A cold cache under load (a process just started, or a credential's first requests from
many clients at once) would otherwise send every request that misses a record to the
store for the same row: dozens of reads queued for a small pool, each waiting on a
database thread that the busy event loop leaves little time to run, while the requests
that found the record in the cache keep being served. Measured before this existed: the
first request of each of 50 new connections waited 4.5 s (median) for a token grant on
one worker, against 22 ms once one request had warmed the cache (bench/README.md).

``Flights.share(key, epoch, read)``: the first caller for ``key`` starts ``read`` in a
task of its own; every caller that comes while it runs awaits that same task. A flight
is joined only at the cache epoch it started in (``Cache.epoch``): a request that comes
after an invalidation reads the store itself, as it would without sharing, so sharing
never hands out a record read before a change the request could already see. A caller
that stops waiting (its client gone) leaves the read to the others; a read cancelled
itself (the process stopping) is ``ServiceUnavailable`` to the callers still waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from apiward.core.errors import ServiceUnavailable

T = TypeVar("T")


class Flights:
    """The store reads under way in this process, by record and cache epoch."""

    def __init__(self) -> None:
        self._flying: dict[tuple[str, int], asyncio.Task[Any]] = {}
        self.shared = 0
        """Callers that waited for another's read instead of reading."""

    async def share(self, key: str, epoch: int, read: Callable[[], Awaitable[T]]) -> T:
        slot = (key, epoch)
        flight = self._flying.get(slot)
        if flight is None:
            flight = asyncio.ensure_future(read())
            self._flying[slot] = flight
            flight.add_done_callback(lambda done: self._land(slot, done))
        else:
            self.shared += 1
        try:
            result: T = await asyncio.shield(flight)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if flight.cancelled() and task is not None and not task.cancelling():
                # The read was cancelled (the process stopping), not this caller: its
                # request gets an answer, as for a store that cannot be read.
                raise ServiceUnavailable("The store read was cancelled; retry.") from None
            raise
        return result

    def _land(self, slot: tuple[str, int], flight: asyncio.Task[Any]) -> None:
        if self._flying.get(slot) is flight:
            del self._flying[slot]
        if not flight.cancelled():
            flight.exception()  # retrieved: every waiter may have gone
