"""A bounded, expiring LRU map held in the process, in two areas: verified records,
each tagged with its organisation, and credentials known to be unknown."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from apiward.core.readings import Reading
from apiward.services.ports import UNKNOWN


class MemoryCache:
    """LRU with a time-to-live; the TTL is the safety net behind explicit invalidation.

    Verified records (at most ``max_entries``) and unknown credentials (at most
    ``max_unknown``) are bounded separately: a flood of made-up keys or client ids
    recycles the unknown area only and never evicts a verified record. Each record
    carries its organisation, so that a change to one organisation drops its records
    and leaves every other organisation's warm.
    """

    def __init__(
        self,
        max_entries: int = 100_000,
        ttl: float = 60.0,
        timer: Callable[[], float] = time.monotonic,
        *,
        max_unknown: int = 10_000,
        serve_stale: float = 0.0,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if max_unknown < 1:
            raise ValueError("max_unknown must be at least 1")
        self._data: OrderedDict[str, tuple[float, str, Any]] = OrderedDict()
        """key → (expiry, organisation, record)"""
        self._unknown: OrderedDict[str, float] = OrderedDict()
        """key → expiry"""
        self._orgs: dict[str, set[str]] = {}
        """organisation → the keys of its records"""
        self._max = max_entries
        self._max_unknown = max_unknown
        self._ttl = ttl
        self._timer = timer
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        """Verified records dropped to make room for others (not expiries, invalidations)."""
        self._epoch = 0
        self._serve_stale = serve_stale
        self.stale_served = 0
        """Records handed out past their TTL because the store could not be read."""

    @property
    def epoch(self) -> int:
        return self._epoch

    def __len__(self) -> int:
        return len(self._data) + len(self._unknown)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is held (live or not), without counting a look-up."""
        return key in self._data or key in self._unknown

    def get(self, key: str) -> Any | None:
        now = self._timer()
        item = self._data.get(key)
        if item is not None:
            expires, _, value = item
            if expires > now:
                self._data.move_to_end(key)
                self.hits += 1
                return value
            if now - expires >= self._serve_stale:
                self._drop(key)
            # else kept, past its TTL, for ``stale`` while the store cannot be read
        else:
            unknown_until = self._unknown.get(key)
            if unknown_until is not None:
                if unknown_until > now:
                    self._unknown.move_to_end(key)
                    self.hits += 1
                    return UNKNOWN
                del self._unknown[key]
        self.misses += 1
        return None

    def set(self, key: str, value: Any, *, org: str, since: int | None = None) -> None:
        if since is not None and since != self._epoch:
            return  # read before an invalidation: it may be what was invalidated
        self._unknown.pop(key, None)
        held = self._data.get(key)
        if held is not None and held[1] != org:
            self._untag(key, held[1])
        self._data[key] = (self._timer() + self._ttl, org, value)
        self._data.move_to_end(key)
        self._orgs.setdefault(org, set()).add(key)
        while len(self._data) > self._max:
            oldest, (_, oldest_org, _) = self._data.popitem(last=False)
            self._untag(oldest, oldest_org)
            self.evictions += 1

    def stale(self, key: str) -> Any | None:
        """The verified record under ``key`` even past its TTL, by at most
        ``serve_stale`` seconds: what a request may rely on while the store is down. An
        invalidated record is never held, stale or not."""
        item = self._data.get(key)
        if item is None or self._timer() - item[0] >= self._serve_stale:
            return None
        self.stale_served += 1
        return item[2]

    def set_unknown(self, key: str, *, since: int | None = None) -> None:
        if since is not None and since != self._epoch:
            return
        if key in self._data:
            self._drop(key)
        self._unknown[key] = self._timer() + self._ttl
        self._unknown.move_to_end(key)
        while len(self._unknown) > self._max_unknown:
            self._unknown.popitem(last=False)

    def invalidate(self, key: str) -> None:
        self._epoch += 1
        self._drop(key)
        self._unknown.pop(key, None)

    def invalidate_org(self, org: str) -> None:
        self._epoch += 1
        for key in self._orgs.pop(org, ()):
            self._data.pop(key, None)

    def forget_unknown(self) -> None:
        self._epoch += 1
        self._unknown.clear()

    def clear(self) -> None:
        self._epoch += 1
        self._data.clear()
        self._unknown.clear()
        self._orgs.clear()

    def _drop(self, key: str) -> None:
        held = self._data.pop(key, None)
        if held is not None:
            self._untag(key, held[1])

    def _untag(self, key: str, org: str) -> None:
        keys = self._orgs.get(org)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._orgs[org]

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
            Reading.gauge(
                "cache_entries", "Verified records in the verification cache.", len(self._data)
            ),
            Reading.gauge(
                "cache_unknown_entries",
                "Credentials held as unknown, in their own bounded area of the cache.",
                len(self._unknown),
            ),
            Reading.counter(
                "cache_stale_served",
                "Verified records relied on past their TTL while the database was unreachable.",
                self.stale_served,
            ),
            Reading.counter(
                "cache_evictions",
                "Verified records evicted to make room for other verified records.",
                self.evictions,
            ),
        ]
