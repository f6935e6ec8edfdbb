"""In-process limiter state: theoretical arrival times and window counts.

Right for one process (the embedded default) and as the local fallback when Redis is
down. Each process holds its own state, so N processes admit up to N times a limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from itertools import islice

from apiward.core.limits import (
    NS,
    Decision,
    Hit,
    WindowState,
    bounded_hits,
    bounded_key,
    decide,
    decide_all,
    gcra,
    gcra_all,
    gcra_refund,
    to_ticks,
    window_refund,
)


class MemoryLimiter:
    """GCRA and window limits over dicts, bounded in size (and each key in length:
    ``apiward.core.limits.bounded_key``).

    A GCRA key whose TAT has passed holds a full bucket, which is what a missing key
    means; a window key is dead once its window and the next have passed. Such idle
    keys are dropped first when the map is full; if every key is live, the oldest
    entries go (they then start again from a full bucket).
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
        self._windows: dict[str, tuple[WindowState, int]] = {}
        """A window key's state, and the tick after which it is forgotten."""
        self._max = max_keys
        self._timer = timer

    def __len__(self) -> int:
        return len(self._tats) + len(self._windows)

    def _state(self, hit: Hit) -> int | WindowState | None:
        if hit.algorithm == "gcra":
            return self._tats.get(hit.key)
        held = self._windows.get(hit.key)
        return held[0] if held else None

    def _store(self, hit: Hit, state: int | WindowState, now: int) -> None:
        if isinstance(state, tuple):
            period = to_ticks(hit.period)
            self._windows[hit.key] = (state, (state[0] + 2) * period)
        else:
            self._tats[hit.key] = state
        if len(self) > self._max:
            self._prune(now)

    async def hit(self, key: str, limit: int, period: float, cost: int = 1) -> Decision:
        key = bounded_key(key)
        tats = self._tats
        now = self._timer()
        decision = gcra(tats.get(key), now, limit, round(period * NS), cost)
        if decision.allowed and cost:
            tats[key] = decision.tat
            if len(tats) > self._max:
                self._prune(now)
        return decision

    async def hit_all(self, hits: Sequence[Hit]) -> list[Decision]:
        hits = bounded_hits(hits)
        _unique(hits)
        now = self._timer()
        if all(hit.algorithm == "gcra" for hit in hits):  # the common case, kept lean
            tats = self._tats
            gcras, commit = gcra_all([tats.get(h.key) for h in hits], now, hits)
            if commit:
                for hit, decision in zip(hits, gcras, strict=True):
                    if hit.cost:
                        tats[hit.key] = decision.tat
                if len(self) > self._max:
                    self._prune(now)
            return gcras
        decisions, states, commit = decide_all([self._state(h) for h in hits], now, hits)
        if commit:
            for hit, state in zip(hits, states, strict=True):
                if hit.cost and state is not None:
                    self._store(hit, state, now)
        return decisions

    async def peek(self, key: str, limit: int, period: float, cost: int = 1) -> Decision:
        hit = Hit(bounded_key(key), limit, period, cost)
        return decide(self._state(hit), self._timer(), hit)[0]

    async def reset(self, key: str) -> None:
        key = bounded_key(key)
        self._tats.pop(key, None)
        self._windows.pop(key, None)

    async def refund(self, hits: Sequence[Hit]) -> None:
        hits = bounded_hits(hits)
        now = self._timer()
        for hit in hits:
            if hit.algorithm == "gcra":
                period = to_ticks(hit.period)
                back = gcra_refund(self._tats.get(hit.key), now, hit.limit, period, hit.cost)
                if back is None:
                    self._tats.pop(hit.key, None)
                else:
                    self._tats[hit.key] = back
            elif (held := self._windows.get(hit.key)) is not None:
                state = window_refund(held[0], now, to_ticks(hit.period), hit.cost)
                if state is not None:
                    self._windows[hit.key] = (state, held[1])

    async def aclose(self) -> None:
        self._tats.clear()
        self._windows.clear()

    def _prune(self, now: int) -> None:
        tats, windows = self._tats, self._windows
        for key in [k for k, tat in tats.items() if tat <= now]:
            del tats[key]
        for key in [k for k, (_, until) in windows.items() if until <= now]:
            del windows[key]
        # Leave a tenth free so that a map of live keys is not swept on every insert.
        excess = len(self) - self._max * 9 // 10
        for live in (windows, tats):
            if excess > 0:
                dropped = list(islice(live, excess))
                for key in dropped:
                    del live[key]
                excess -= len(dropped)


def _unique(hits: Sequence[Hit]) -> None:
    if len({h.key for h in hits}) != len(hits):
        raise ValueError("Each key may appear only once in one hit_all call.")
