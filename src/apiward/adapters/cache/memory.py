"""A bounded, expiring LRU map held in the process."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from apiward.core.readings import Reading


class MemoryCache:
    """LRU with a time-to-live; the TTL is the safety net behind explicit invalidation."""

    def __init__(
        self,
        max_entries: int = 100_000,
        ttl: float = 60.0,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._data: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._max = max_entries
        self._ttl = ttl
        self._timer = timer
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str) -> Any | None:
        item = self._data.get(key)
        if item is None:
            self.misses += 1
            return None
        expires, value = item
        if expires <= self._timer():
            del self._data[key]
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return value

    def set(self, key: str, value: Any) -> None:
        self._data[key] = (self._timer() + self._ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self._max:
            self._data.popitem(last=False)

    def invalidate(self, key: str) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()

    def readings(self) -> list[Reading]:
        looked = self.hits + self.misses
        return [
            Reading.counter("cache_hits", "Verification cache hits.", self.hits),
            Reading.counter("cache_misses", "Verification cache misses.", self.misses),
            Reading.gauge(
                "cache_hit_ratio",
                "Hits over look-ups of the verification cache since start (0 before any).",
                self.hits / looked if looked else 0.0,
            ),
            Reading.gauge("cache_entries", "Entries in the verification cache.", len(self)),
        ]
