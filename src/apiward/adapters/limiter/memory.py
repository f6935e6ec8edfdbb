"""In-process limiter state: a dict of theoretical arrival times, and usage credits.

Right for one process (the embedded default) and as the local fallback when Redis is
down. Each process holds its own state, so N processes admit up to N times a limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from itertools import islice

from apiward.core.limits import (
    NS,
    CreditDecision,
    Credits,
    Decision,
    Hit,
    gcra,
    gcra_all,
    gcra_refund,
    spend,
    to_ticks,
)


class MemoryLimiter:
    """GCRA over a dict, bounded in size.

    A key whose TAT has passed holds a full bucket, which is what a missing key
    means: such idle keys are dropped first when the map is full; if every key is
    live, the oldest entries go (they then start again from a full bucket).
    """

    def __init__(
        self,
        *,
        max_keys: int = 1_000_000,
        timer: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._tats: dict[str, int] = {}
        self._max = max_keys
        self._timer = timer

    def __len__(self) -> int:
        return len(self._tats)

    async def hit(self, key: str, limit: int, period: float, cost: int = 1) -> Decision:
        tats = self._tats
        decision = gcra(tats.get(key), self._timer(), limit, round(period * NS), cost)
        if decision.allowed and cost:
            tats[key] = decision.tat
            if len(tats) > self._max:
                self._prune()
        return decision

    async def hit_all(self, hits: Sequence[Hit]) -> list[Decision]:
        _unique(hits)
        tats = self._tats
        decisions, commit = gcra_all([tats.get(h.key) for h in hits], self._timer(), hits)
        if commit:
            for hit, decision in zip(hits, decisions, strict=True):
                if hit.cost:
                    tats[hit.key] = decision.tat
            if len(tats) > self._max:
                self._prune()
        return decisions

    async def peek(self, key: str, limit: int, period: float, cost: int = 1) -> Decision:
        return gcra(self._tats.get(key), self._timer(), limit, round(period * NS), cost)

    async def reset(self, key: str) -> None:
        self._tats.pop(key, None)

    async def refund(self, hits: Sequence[Hit]) -> None:
        tats, now = self._tats, self._timer()
        for hit in hits:
            back = gcra_refund(tats.get(hit.key), now, hit.limit, to_ticks(hit.period), hit.cost)
            if back is None:
                tats.pop(hit.key, None)
            else:
                tats[hit.key] = back

    async def aclose(self) -> None:
        self._tats.clear()

    def _prune(self) -> None:
        now = self._timer()
        tats = self._tats
        for key in [k for k, tat in tats.items() if tat <= now]:
            del tats[key]
        # Leave a tenth free so that a map of live keys is not swept on every insert.
        excess = len(tats) - self._max * 9 // 10
        if excess > 0:
            for key in list(islice(tats, excess)):
                del tats[key]


def _unique(hits: Sequence[Hit]) -> None:
    if len({h.key for h in hits}) != len(hits):
        raise ValueError("Each key may appear only once in one hit_all call.")


class MemoryCredits:
    """Usage credits in a dict; atomic because nothing awaits between read and write."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._credits: dict[str, Credits] = {}
        self._clock = clock

    async def put(self, key: str, credits: Credits) -> None:
        self._credits[key] = credits

    async def get(self, key: str) -> Credits | None:
        return self._credits.get(key)

    async def spend(self, key: str, cost: int = 1) -> CreditDecision | None:
        credits = self._credits.get(key)
        if credits is None:
            return None
        decision, self._credits[key] = spend(credits, cost, self._clock())
        return decision

    async def delete(self, key: str) -> None:
        self._credits.pop(key, None)
