"""In-process limiter state: theoretical arrival times and window counts.

Right for one process (the embedded default) and as the local fallback when Redis is
down. Each process holds its own state, so N processes admit up to N times a limit.

The table is bounded (``APIWARD_RATE_LIMIT_MAX_KEYS``) and shared fairly: each key
records its owner (``Hit.owner``: the organisation whose requests it counts, or the
deployment), and a full table gives up idle keys first, then the least recently used
keys of the owners holding the most. An owner within its fair share, nine tenths of the
bound divided by the number of owners holding keys, loses none, so no tenant's keys
push out another's (docs/authority.md).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Container, Sequence

from apiward.core.limits import (
    DEPLOYMENT,
    NO_FLOOR,
    NS,
    Decision,
    Floor,
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
from apiward.core.readings import Reading


class MemoryLimiter:
    """GCRA and window limits over dicts, bounded in size (and each key in length:
    ``apiward.core.limits.bounded_key``).

    A GCRA key whose TAT has passed holds a full bucket, which is what a missing key
    means; a window key is dead once its window and the next have passed. Dropping
    such idle keys changes no decision, so when the table is full they go first. If
    it still holds more than nine tenths of ``max_keys`` (a tenth is left free, so a
    table of live keys is not swept on every insert), live keys go: those of the
    owners holding the most, levelled down together, least recently used first
    within each (such a key starts again from a full bucket). An owner within its
    fair share, nine tenths of ``max_keys`` divided by the number of owners holding
    keys, loses none. A key two owners use (one IP behind two tenants' clients)
    becomes the deployment's.
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
        self._lru: dict[str, OrderedDict[str, None]] = {}
        """Each owner's keys, least recently stored first: every key of ``_tats`` and
        ``_windows`` is in exactly one (a key's owner is found here, not in a map of
        its own, which would cost every decision a look-up in a table this large)."""
        self._size = 0
        self._max = max_keys
        self._target = max_keys - max_keys // 10
        """What a full table is brought back to: a tenth is left free, so that a table
        of live keys is not swept on every insert."""
        self.evicted = 0
        """Live keys given up because the table was full (each starts again full)."""
        self._timer = timer

    def __len__(self) -> int:
        return self._size

    @property
    def max_keys(self) -> int:
        """The most keys the table holds."""
        return self._max

    def held(self) -> dict[str, int]:
        """How many keys each owner holds."""
        return {owner: len(keys) for owner, keys in self._lru.items()}

    def readings(self) -> list[Reading]:
        return [
            Reading.gauge(
                "rate_limit_buckets", "Buckets the in-process rate limiter holds.", len(self)
            ),
            Reading.counter(
                "rate_limit_buckets_evicted",
                "Live buckets the in-process rate limiter gave up because its table was full "
                "(APIWARD_RATE_LIMIT_MAX_KEYS); each starts again full.",
                self.evicted,
            ),
        ]

    def _state(self, hit: Hit) -> int | WindowState | None:
        if hit.algorithm == "gcra":
            return self._tats.get(hit.key)
        held = self._windows.get(hit.key)
        return held[0] if held else None

    def _store(self, hit: Hit, state: int | WindowState) -> None:
        self._touch(hit.key, hit.owner)
        if isinstance(state, tuple):
            period = to_ticks(hit.period)
            self._windows[hit.key] = (state, (state[0] + 2) * period)
        else:
            self._tats[hit.key] = state

    def _touch(self, key: str, owner: str) -> None:
        """Record ``key`` as ``owner``'s most recently used, before its state is stored."""
        keys = self._lru.get(owner)
        if keys is not None and key in keys:
            keys.move_to_end(key)
            return
        shared = self._lru.get(DEPLOYMENT)
        if shared is not None and key in shared:
            shared.move_to_end(key)
            return
        if key in self._tats or key in self._windows:  # another owner's: now nobody's alone
            self._unlist(key, self._owner_of(key))
            owner = DEPLOYMENT
            keys = shared
        if keys is None:
            keys = self._lru[owner] = OrderedDict()
        keys[key] = None
        self._size += 1

    def _owner_of(self, key: str, likely: str = DEPLOYMENT) -> str | None:
        for owner in (likely, DEPLOYMENT):
            if key in self._lru.get(owner, ()):
                return owner
        return next((owner for owner, keys in self._lru.items() if key in keys), None)

    def _unlist(self, key: str, owner: str | None) -> None:
        if owner is not None:
            keys = self._lru[owner]
            del keys[key]
            if not keys:
                del self._lru[owner]
            self._size -= 1

    def _drop(self, key: str, owner: str = DEPLOYMENT) -> None:
        """Forget ``key`` (``owner``: who probably holds it)."""
        self._tats.pop(key, None)
        self._windows.pop(key, None)
        self._unlist(key, self._owner_of(key, owner))

    async def hit(self, key: str, limit: int, period: float, cost: int = 1) -> Decision:
        key = bounded_key(key)
        tats = self._tats
        now = self._timer()
        decision = gcra(tats.get(key), now, limit, round(period * NS), cost)
        if decision.allowed and cost:
            self._touch(key, DEPLOYMENT)
            tats[key] = decision.tat
            if self._size > self._max:
                self._make_room(now)
        return decision

    async def hit_all(self, hits: Sequence[Hit], report: Sequence[Hit] = ()) -> list[Decision]:
        if report:
            return await self._with_report(hits, report)
        hits = bounded_hits(hits)
        _unique(hits)
        now = self._timer()
        if all(hit.algorithm == "gcra" for hit in hits):  # the common case, kept lean
            tats = self._tats
            gcras, commit = gcra_all([tats.get(h.key) for h in hits], now, hits)
            if commit:
                touch = self._touch
                for hit, decision in zip(hits, gcras, strict=True):
                    if hit.cost:
                        touch(hit.key, hit.owner)
                        tats[hit.key] = decision.tat
                if self._size > self._max:
                    self._make_room(now)
            return gcras
        decisions, states, commit = decide_all([self._state(h) for h in hits], now, hits)
        if commit:
            for hit, state in zip(hits, states, strict=True):
                if hit.cost and state is not None:
                    self._store(hit, state)
            if self._size > self._max:
                self._make_room(now)
        return decisions

    async def _with_report(self, hits: Sequence[Hit], report: Sequence[Hit]) -> list[Decision]:
        """``hits`` all or nothing, then each of ``report`` on its own: spent where it
        admits the request, and only when ``hits`` admitted it (else what would have
        admitted it reports its current state, a cost-0 read, as in ``gcra_all``)."""
        together = bounded_hits([*hits, *report])
        _unique(together)
        enforced, reported = together[: len(hits)], together[len(hits) :]
        decisions = await self.hit_all(enforced) if enforced else []
        admitted = all(d.allowed for d in decisions)
        now = self._timer()
        for hit in reported:
            held = self._state(hit)
            decision, state = decide(held, now, hit)
            if decision.allowed and not admitted:
                decision = decide(held, now, hit, spend=False)[0]
            elif decision.allowed and hit.cost:
                self._store(hit, state)
            decisions.append(decision)
        if self._size > self._max:
            self._make_room(now)
        return decisions

    async def peek(self, key: str, limit: int, period: float, cost: int = 1) -> Decision:
        hit = Hit(bounded_key(key), limit, period, cost)
        return decide(self._state(hit), self._timer(), hit)[0]

    async def reset(self, key: str) -> None:
        self._drop(bounded_key(key))

    async def refund(self, hits: Sequence[Hit]) -> None:
        hits = bounded_hits(hits)
        now = self._timer()
        for hit in hits:
            if hit.algorithm == "gcra":
                period = to_ticks(hit.period)
                back = gcra_refund(self._tats.get(hit.key), now, hit.limit, period, hit.cost)
                if back is not None:
                    self._tats[hit.key] = back
                elif hit.key in self._tats:
                    self._drop(hit.key, hit.owner)
            elif (held := self._windows.get(hit.key)) is not None:
                state = window_refund(held[0], now, to_ticks(hit.period), hit.cost)
                if state is not None:
                    self._windows[hit.key] = (state, held[1])

    def now(self) -> int:
        """This limiter's clock, in nanoseconds."""
        return self._timer()

    def floors(self, hits: Sequence[Hit], now: int, forced: Container[str] = ()) -> list[Floor]:
        """Each GCRA key's TAT as this table holds it, as a floor for another limiter
        (``forced`` for the keys in ``forced``); window keys have none. ``hits`` are
        bounded already (``bounded_hits``)."""
        tats = self._tats
        floors = []
        for hit in hits:
            tat = tats.get(hit.key)
            if tat is None or tat <= now or hit.algorithm != "gcra":
                floors.append(NO_FLOOR)
            else:
                floors.append(Floor(tat - now, hit.key in forced))
        return floors

    def adopt(self, hits: Sequence[Hit], decisions: Sequence[Decision], now: int) -> None:
        """Take each GCRA key's state from another limiter's decisions, taken at ``now``
        on this clock or earlier (``reset_after`` is the TAT's distance from that
        limiter's clock), never lowering a TAT this table holds: a fallback then starts
        where that limiter left off. ``hits`` are bounded already (``bounded_hits``)."""
        tats, lru = self._tats, self._lru
        for hit, decision in zip(hits, decisions, strict=True):
            tat = now + round(decision.reset_after * NS)
            if tat <= tats.get(hit.key, now) or hit.algorithm != "gcra":
                continue
            keys = lru.get(hit.owner)
            if keys is not None and hit.key in keys:
                keys.move_to_end(hit.key)
            else:
                self._touch(hit.key, hit.owner)
            tats[hit.key] = tat
        if self._size > self._max:
            self._make_room(now)

    async def aclose(self) -> None:
        self._tats.clear()
        self._windows.clear()
        self._lru.clear()
        self._size = 0

    def _make_room(self, now: int) -> None:
        """Bring a full table back to nine tenths of ``max_keys``: idle keys first, then
        live keys, fairly."""
        tats, windows = self._tats, self._windows
        idle = [k for k, tat in tats.items() if tat <= now]
        idle += [k for k, (_, until) in windows.items() if until <= now]
        if idle:
            for key in idle:
                held = tats.get(key)
                if held is not None and held <= now:
                    del tats[key]
                window = windows.get(key)
                if window is not None and window[1] <= now:
                    del windows[key]
            gone = {key for key in idle if key not in tats and key not in windows}
            for owner, keys in list(self._lru.items()):
                for key in [k for k in keys if k in gone]:
                    del keys[key]
                if not keys:
                    del self._lru[owner]
            self._size -= len(gone)
        if self._size > self._target:
            self._evict(self._size - self._target)

    def _evict(self, excess: int) -> None:
        """Level the owners holding the most down to one count, freeing ``excess``
        keys, never below the fair share (nine tenths of ``max_keys`` divided among
        the owners). Levelling every owner to its share alone leaves at most nine
        tenths, so the level reached is never lower."""
        counts = sorted(((len(keys), owner) for owner, keys in self._lru.items()), reverse=True)
        fair = self._target // len(counts)
        level, total = fair, 0
        for i, (count, _) in enumerate(counts, 1):
            total += count
            below = counts[i][0] if i < len(counts) else 0
            # The first i owners levelled to L free total - i * L keys.
            if (lowered := (total - excess) // i) >= below:
                level = max(lowered, fair)
                break
        for count, owner in counts:
            if count <= level:
                break
            keys = self._lru[owner]
            self.evicted += count - level
            self._size -= count - level
            for _ in range(count - level):
                key, _ = keys.popitem(last=False)
                self._tats.pop(key, None)
                self._windows.pop(key, None)
            if not keys:
                del self._lru[owner]


def _unique(hits: Sequence[Hit]) -> None:
    if len({h.key for h in hits}) != len(hits):
        raise ValueError("Each key may appear only once in one hit_all call.")
