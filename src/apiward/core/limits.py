"""Rate limits and usage credits: the pure part (no I/O, no clock of its own).

Rate limits use GCRA, the generic cell rate algorithm (ITU-T I.371): one integer per
key, the *theoretical arrival time* (TAT), instead of a window of counters. A policy
``limit/period`` admits a burst of up to ``limit`` requests and refills one request
every ``period / limit`` (the token bucket it is equivalent to). Consequences a reader
should know, all checked by the property tests:

- over any stretch of time of length ``W``, at most ``limit + W // interval`` units
  are admitted (``interval = period / limit``): a full burst plus what refilled
  meanwhile. So a window of length ``period`` may see up to ``2 * limit`` when a
  full burst is followed by steady use (a fixed window has the same bound across its
  boundary); promising ``limit`` in *every* sliding window takes a log of every
  request (the ``limits`` moving window) or giving up bursts. ``limit`` is exact for
  a burst and for the long-run rate;
- ``remaining`` is exact: that many more requests are admitted at once;
- a denied request consumes nothing, and waiting ``retry_after`` makes it admissible;
- ``remaining`` is always within ``[0, limit]``.

Times are integers on a clock with ``tick`` ticks per second: nanoseconds in process
(``time.monotonic_ns``), microseconds in the Redis script (``TIME``), where Lua's
doubles are exact below 2**53. The emission interval is rounded *up* to a whole tick,
so a policy is never more generous than declared.

Periods are bounded by ``MAX_PERIOD`` (one day), and so is the state a limit keeps: a
TAT is never more than one period ahead of the clock. Limiter keys are bounded by
``MAX_KEY_LENGTH``: a longer key is stored as its head and a digest (``bounded_key``).

Usage credits (a "remaining" balance with a refill) are a plain balance, decremented by
a cost and never below zero, optionally reset to an amount every day or month.
"""

from __future__ import annotations

import calendar
import hashlib
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal, NamedTuple, get_args

from apiward.core.errors import RateLimited

NS = 1_000_000_000
"""Ticks per second of the nanosecond clock used in process."""
US = 1_000_000
"""Ticks per second of the microsecond clock used in Redis."""

MAX_PERIOD = 86_400
"""The longest period a limit may have, in seconds: one day. Longer budgets are usage
credits (a balance with a daily or monthly refill), not rate limits."""
MAX_KEY_LENGTH = 200
"""The longest limiter key stored as it is; longer ones are hashed (``bounded_key``)."""

KeyKind = Literal["org", "credential", "ip", "user", "route"]
Mode = Literal["enforce", "report"]
MODES: tuple[Mode, ...] = ("enforce", "report")
"""``enforce`` refuses past the limit; ``report`` only counts what it would refuse."""
Algorithm = Literal["gcra", "fixed_window", "sliding_window"]
ALGORITHMS: tuple[Algorithm, ...] = ("gcra", "fixed_window", "sliding_window")
KEY_KINDS: tuple[str, ...] = get_args(KeyKind)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}(?:\.own)?$")
OWN_SUFFIX = ".own"
"""Added to a credential's own limit named like one of its plan's (``services.limiting``)."""
_RATE = re.compile(r"^\s*(\d+)\s*(?:/|per)\s*(\d*)\s*([A-Za-z]+)\s*$")
_UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
}


RateLimitExceeded = RateLimited
"""The domain error a denied decision raises (``apiward.core.errors.RateLimited``)."""


# --- policies ------------------------------------------------------------------------


def parse_rate(text: str, *, stored: bool = False) -> tuple[int, int]:
    """Parse ``"1000/hour"``, ``"100/minute"``, ``"10/second"``, ``"5000/day"``, ``"20/15m"``.

    Returns ``(limit, period_seconds)``; raises ``ValueError`` saying what to write. A
    period longer than ``MAX_PERIOD`` is refused, unless the rate was ``stored`` before
    periods were bounded: then it is read as the same rate over one day (at least one).
    """
    match = _RATE.match(text) if isinstance(text, str) else None
    unit = _UNITS.get(match.group(3).lower()) if match else None
    if match is None or unit is None:
        raise ValueError(
            f"Invalid rate {text!r}: write '<count>/<unit>' with a unit of second, minute, "
            "hour or day (for example '1000/hour', '100/minute', or '20/15minutes')."
        )
    limit = int(match.group(1))
    multiple = int(match.group(2) or 1)
    if limit < 1 or multiple < 1:
        raise ValueError(f"Invalid rate {text!r}: the count and the period must be at least 1.")
    if multiple * unit > MAX_PERIOD and stored:
        return max(1, limit * MAX_PERIOD // (multiple * unit)), MAX_PERIOD
    if multiple * unit > MAX_PERIOD:
        raise ValueError(
            f"Invalid rate {text!r}: the period may be at most 1 day ({MAX_PERIOD} seconds); "
            "for a longer budget use usage credits with a refill."
        )
    return limit, multiple * unit


@dataclass(frozen=True, slots=True)
class Policy:
    """A named limit: ``limit`` units per ``period`` seconds for each value of ``key``.

    ``key`` says what is counted: the organisation, the credential, the client IP,
    the user, or the route itself (one budget shared by every caller of the route).
    ``cost`` is what one request spends (a route may declare more).

        >>> Policy.parse("org-hourly", "1000/hour", key="org")
        Policy(name='org-hourly', limit=1000, period=3600.0, key='org', cost=1)
    """

    name: str
    limit: int
    period: float
    key: KeyKind = "org"
    cost: int = 1
    algorithm: Algorithm = "gcra"
    """``gcra`` (a burst of ``limit``, then one every ``period/limit``), ``fixed_window``
    (at most ``limit`` in each window of ``period`` seconds, aligned to the epoch) or
    ``sliding_window`` (the window counter weighted with the previous window's)."""
    own: bool = False
    """Set on one credential by its tenant: counted in that credential's buckets only,
    never in a bucket the plan's limits or other credentials use."""
    mode: Mode = "enforce"
    """``report``: decided in a bucket of its own, beside the enforced limits, and only
    counted as "would refuse" (``WOULD_REFUSE``); it never refuses, spends nothing of
    the enforced limits and shows in no header."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(
                f"Invalid policy name {self.name!r}: use 1 to 64 letters, digits, '_', '.' "
                "or '-', starting with a letter or digit."
            )
        if self.key not in KEY_KINDS:
            raise ValueError(
                f"Invalid key kind {self.key!r} for policy {self.name!r}: "
                f"use one of {', '.join(KEY_KINDS)}."
            )
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise ValueError(f"Policy {self.name!r}: limit must be an integer >= 1.")
        if not math.isfinite(self.period) or not 0.001 <= self.period <= MAX_PERIOD:
            raise ValueError(
                f"Policy {self.name!r}: period must be between 0.001 seconds and 1 day "
                f"({MAX_PERIOD} seconds)."
            )
        if not 1 <= self.cost <= self.limit:
            raise ValueError(
                f"Policy {self.name!r}: cost must be between 1 and the limit ({self.limit})."
            )
        if self.algorithm not in ALGORITHMS:
            raise ValueError(
                f"Policy {self.name!r}: unknown algorithm {self.algorithm!r}; use one of "
                f"{', '.join(ALGORITHMS)}."
            )
        if self.mode not in MODES:
            raise ValueError(
                f"Policy {self.name!r}: unknown mode {self.mode!r}; use 'enforce' (the "
                "default) or 'report' (count what it would refuse, refuse nothing)."
            )
        object.__setattr__(self, "period", float(self.period))

    @classmethod
    def parse(
        cls,
        name: str,
        rate: str,
        *,
        key: KeyKind = "org",
        cost: int = 1,
        algorithm: Algorithm = "gcra",
        stored: bool = False,
        mode: Mode = "enforce",
    ) -> Policy:
        limit, period = parse_rate(rate, stored=stored)
        return cls(name, limit, float(period), key, cost, algorithm, mode=mode)

    @property
    def rate(self) -> str:
        """The policy written back as ``count/period``: ``"1000/3600s"``."""
        return f"{self.limit}/{self.period:g}s"


# --- GCRA ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for one request under one limit, with what the headers need.

    ``remaining`` is what ``X-RateLimit-Remaining`` shows (units admissible right
    now, after this request); ``reset_after`` the seconds until the bucket is full
    again; ``retry_after`` the seconds until this request would be admitted (0 when
    it was). ``tat`` is the theoretical arrival time to store, in clock ticks.
    """

    allowed: bool
    limit: int
    remaining: int
    reset_after: float
    retry_after: float
    tat: int
    period: float = 0.0


DEPLOYMENT = ""
"""The owner of limiter state no organisation owns alone (``Hit.owner``)."""


class Hit(NamedTuple):
    """One limit to check for a request: the namespaced key, its rate and algorithm,
    and who owns its bucket: the organisation whose request it counts, or
    ``DEPLOYMENT``. A bounded in-process table evicts by owner (fair shares), so no
    organisation's keys push out another's."""

    key: str
    limit: int
    period: float
    cost: int = 1
    algorithm: Algorithm = "gcra"
    owner: str = DEPLOYMENT


class Floor(NamedTuple):
    """The least TAT a limiter must assume for a key, as another limiter last knew it:
    ``ahead`` nanoseconds past now (0: none). ``forced``: whatever the limiter holds
    (its state missed hits decided elsewhere, during an outage); otherwise only where
    it holds nothing for the key (it restarted or was flushed)."""

    ahead: int
    forced: bool = False


NO_FLOOR = Floor(0)


def bounded_key(key: str) -> str:
    """``key`` itself when at most ``MAX_KEY_LENGTH`` characters, else its head and a
    SHA-256 digest of the whole, exactly ``MAX_KEY_LENGTH + 1`` characters long: no
    key kept as it is has that length, so a hashed key never meets another key."""
    if len(key) <= MAX_KEY_LENGTH:
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{key[: MAX_KEY_LENGTH - len(digest)]}#{digest}"


def bounded_hits(hits: Sequence[Hit]) -> Sequence[Hit]:
    """``hits`` with every key bounded (``bounded_key``); the same sequence when all are."""
    for hit in hits:
        if len(hit.key) > MAX_KEY_LENGTH:
            return [h._replace(key=bounded_key(h.key)) for h in hits]
    return hits


def interval_ticks(limit: int, period: int) -> int:
    """The emission interval ``period / limit``, rounded up to a whole tick."""
    return -(-period // limit)


def _misuse(limit: int, period: int, cost: int) -> ValueError:
    if limit < 1:
        return ValueError(f"limit must be at least 1, not {limit}")
    if period < limit:
        return ValueError(
            f"period ({period} ticks) is shorter than one tick per unit of limit ({limit}); "
            "use a finer clock or a longer period"
        )
    return ValueError(f"cost must be between 0 and the limit ({limit}), not {cost}")


def gcra(
    tat: int | None,
    now: int,
    limit: int,
    period: int,
    cost: int = 1,
    *,
    tick: int = NS,
) -> Decision:
    """Decide one request: admit it when the bucket holds ``cost`` units.

    ``tat`` is the stored theoretical arrival time (``None`` for a key never seen or
    expired); ``now`` and ``period`` are integers on a clock of ``tick`` ticks per
    second. A cost of 0 reads the state without spending anything. Store
    ``decision.tat`` only when ``decision.allowed``; a denial changes nothing.
    """
    if limit < 1 or period < limit or not 0 <= cost <= limit:
        raise _misuse(limit, period, cost)
    interval = -(-period // limit)
    capacity = interval * limit
    base = now if tat is None or tat < now else tat
    new_tat = base + cost * interval
    allow_at = new_tat - capacity
    seconds = period / tick
    if allow_at <= now:
        remaining = (capacity - (new_tat - now)) // interval
        return Decision(True, limit, remaining, (new_tat - now) / tick, 0.0, new_tat, seconds)
    # The clock may step back below a stored TAT (another process, NTP): clamp to 0.
    remaining = max(0, (capacity - (base - now)) // interval)
    return Decision(
        False, limit, remaining, (base - now) / tick, (allow_at - now) / tick, base, seconds
    )


def gcra_all(
    tats: Sequence[int | None], now: int, hits: Sequence[Hit], *, tick: int = NS
) -> tuple[list[Decision], bool]:
    """Decide several limits for one request, all or nothing.

    Returns the decisions and whether to store their ``tat``: only when every limit
    admits the request. When one denies, the limits that would have admitted it
    spend nothing and report their current state (a cost-0 read), so that a request
    refused by the per-IP limit does not eat the organisation's budget.
    """
    decisions = [
        gcra(tat, now, hit.limit, to_ticks(hit.period, tick), hit.cost, tick=tick)
        for tat, hit in zip(tats, hits, strict=True)
    ]
    if all(d.allowed for d in decisions):
        return decisions, True
    return [
        d if not d.allowed else gcra(tat, now, hit.limit, to_ticks(hit.period, tick), 0, tick=tick)
        for d, tat, hit in zip(decisions, tats, hits, strict=True)
    ], False


# --- windows ---------------------------------------------------------------------------

WindowState = tuple[int, int, int]
"""A window limit's state: the window's index (time // period), what was admitted in it,
and what was admitted in the window before."""


def window(
    state: WindowState | None,
    now: int,
    limit: int,
    period: int,
    cost: int = 1,
    *,
    sliding: bool = False,
    tick: int = NS,
) -> tuple[Decision, WindowState]:
    """Decide one request under a window limit; returns the decision and the state to
    store (only when admitted; a denial changes nothing).

    A fixed window admits at most ``limit`` units in each window ``[k·period,
    (k+1)·period)``; its reset is the window's end. A sliding window also counts the
    previous window, weighted by how much of it the last ``period`` seconds still
    cover (the gateways' sliding-window counter): bursts at a window's edge cannot
    double the rate. Integer arithmetic throughout, in ticks.
    """
    if limit < 1 or period < 1 or not 0 <= cost <= limit:
        raise _misuse(limit, max(period, limit), cost)
    index, into = divmod(now, period)
    current = previous = 0
    if state is not None:
        if state[0] == index:
            current, previous = state[1], state[2]
        elif state[0] == index - 1:
            previous = state[1]
    left = period - into  # ticks to the window's end
    # The previous window's share of the last ``period``: a float, computed in exactly
    # the order the Redis script computes it, so both answer alike.
    carried = previous * (left / period) if sliding else 0.0
    allowed = (current + cost) + carried <= limit
    used = current + carried + (cost if allowed else 0)
    remaining = max(0, math.floor(limit - used))
    seconds = period / tick
    if allowed:
        decision = Decision(True, limit, remaining, left / tick, 0.0, now + left, seconds)
        return decision, (index, current + cost, previous)
    if not sliding:
        wait = left
    elif current + cost > limit:  # not this window: in the next, this one's count decays
        wait = left + max(0, math.ceil(period - (limit - cost) * (period / current)))
    else:  # the previous window's share must decay enough
        wait = max(1, math.ceil(left - (limit - cost - current) * (period / previous)))
    decision = Decision(False, limit, remaining, left / tick, wait / tick, now + left, seconds)
    return decision, (index, current, previous)


def window_refund(
    state: WindowState | None, now: int, period: int, cost: int
) -> WindowState | None:
    """The state after giving back ``cost`` units admitted in the current window."""
    if state is None or state[0] != now // period:
        return state
    return (state[0], max(0, state[1] - cost), state[2])


def decide(
    state: int | WindowState | None, now: int, hit: Hit, *, tick: int = NS, spend: bool = True
) -> tuple[Decision, int | WindowState]:
    """One hit under its algorithm: the decision and the state to store if admitted."""
    period = to_ticks(hit.period, tick)
    cost = hit.cost if spend else 0
    if hit.algorithm == "gcra":
        tat = state if isinstance(state, int) else None
        decision = gcra(tat, now, hit.limit, period, cost, tick=tick)
        return decision, decision.tat
    held = state if isinstance(state, tuple) else None
    return window(
        held, now, hit.limit, period, cost, sliding=hit.algorithm == "sliding_window", tick=tick
    )


def decide_all(
    states: Sequence[int | WindowState | None], now: int, hits: Sequence[Hit], *, tick: int = NS
) -> tuple[list[Decision], list[int | WindowState], bool]:
    """Several limits of any algorithms for one request, all or nothing (as ``gcra_all``)."""
    results = [decide(s, now, h, tick=tick) for s, h in zip(states, hits, strict=True)]
    if all(d.allowed for d, _ in results):
        return [d for d, _ in results], [s for _, s in results], True
    decisions = [
        d if not d.allowed else decide(s, now, h, tick=tick, spend=False)[0]
        for (d, _), s, h in zip(results, states, hits, strict=True)
    ]
    return decisions, list(states), False  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Spent:
    """What one admitted request spent: its limiter hits and its credits, so that a
    request refused later on its way (invalid input) can be given them back."""

    hits: tuple[Hit, ...] = ()
    credits_key: str | None = None
    cost: int = 0


def gcra_refund(tat: int | None, now: int, limit: int, period: int, cost: int = 1) -> int | None:
    """The TAT after giving back ``cost`` units an admitted request spent (a request
    refused later on its way spends nothing); None when the bucket is full again."""
    if tat is None:
        return None
    back = tat - cost * -(-period // limit)
    return back if back > now else None


def to_ticks(seconds: float, tick: int = NS) -> int:
    """Seconds as an integer number of ticks (a float-second clock onto an integer one)."""
    return round(seconds * tick)


# --- reporting -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    """A decision taken under a named policy, for the key it was taken on."""

    policy: Policy
    key: str
    decision: Decision


def _urgency(decision: Decision) -> tuple[int, float, float]:
    if not decision.allowed:
        return (0, -decision.retry_after, -decision.reset_after)
    return (1, decision.remaining / decision.limit, -decision.reset_after)


def choose(decisions: Iterable[Decision]) -> Decision | None:
    """The decision to report: the denial with the longest wait, else the one closest
    to exhaustion (smallest ``remaining / limit``; ties go to the slower refill)."""
    return min(decisions, key=_urgency, default=None)


def report(results: Iterable[PolicyDecision]) -> PolicyDecision | None:
    """``choose`` over decisions taken under named policies."""
    return min(results, key=lambda r: _urgency(r.decision), default=None)


def _sf_string(value: str) -> str:
    # RFC 8941 section 3.3.3: a String is quoted, with '"' and '\' escaped.
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _seconds(value: float) -> int:
    return max(0, math.ceil(value - 1e-9))


def _effective_window(decision: Decision) -> int:
    # draft-ietf-httpapi-ratelimit-headers-11 section 4.1.2 and 6: the seconds within
    # which the client may use no more than ``r``; on a denial it matches Retry-After,
    # which must not point earlier than the end of that window.
    if decision.allowed:
        return _seconds(decision.reset_after)
    return max(1, _seconds(decision.retry_after))


def headers(
    result: PolicyDecision, now: float, *, also: Sequence[PolicyDecision] = ()
) -> dict[str, str]:
    """The response header fields for the reported decision.

    ``now`` is the wall clock in unix seconds (``X-RateLimit-Reset`` is absolute).
    The IETF fields (draft-ietf-httpapi-ratelimit-headers-11 sections 3 and 4) list
    the reported policy first, then any of ``also`` (other policies the request was
    checked against), as Structured Field lists::

        RateLimit-Policy: "org-hourly";q=1000;w=3600
        RateLimit: "org-hourly";r=998;t=8
    """
    decision = result.decision
    fields = {
        "X-RateLimit-Limit": str(decision.limit),
        "X-RateLimit-Remaining": str(decision.remaining),
        "X-RateLimit-Reset": str(math.ceil(now + decision.reset_after - 1e-9)),
    }
    items = [result, *(r for r in also if r.policy.name != result.policy.name)]
    fields["RateLimit-Policy"] = ", ".join(
        f"{_sf_string(r.policy.name)};q={r.policy.limit};w={max(1, round(r.policy.period))}"
        for r in items
    )
    fields["RateLimit"] = ", ".join(
        f"{_sf_string(r.policy.name)};r={r.decision.remaining};t={_effective_window(r.decision)}"
        for r in items
    )
    if not decision.allowed:
        fields["Retry-After"] = str(max(1, _seconds(decision.retry_after)))
    return fields


# --- usage credits -------------------------------------------------------------------

RefillInterval = Literal["daily", "monthly"]
_EPOCH = date(1970, 1, 1).toordinal()


@dataclass(frozen=True, slots=True)
class Refill:
    """Reset the balance to ``amount`` every day (at 00:00 UTC) or every month on ``day``.

    A ``day`` past the end of a month refills on that month's last day (docs/compatibility.md).
    """

    amount: int
    interval: RefillInterval = "monthly"
    day: int = 1

    def __post_init__(self) -> None:
        if self.amount < 0:
            raise ValueError("A refill amount cannot be negative.")
        if self.interval not in ("daily", "monthly"):
            raise ValueError(
                f"Invalid refill interval {self.interval!r}: use 'daily' or 'monthly'."
            )
        if not 1 <= self.day <= 31:
            raise ValueError(f"Invalid refill day {self.day}: use a day of the month, 1 to 31.")

    def period(self, at: datetime) -> int:
        """The index of the refill period holding ``at``: days or months since 1970."""
        at = at.astimezone(UTC)
        if self.interval == "daily":
            return at.toordinal() - _EPOCH
        months = (at.year - 1970) * 12 + at.month - 1
        refill_day = min(self.day, calendar.monthrange(at.year, at.month)[1])
        return months if at.day >= refill_day else months - 1


@dataclass(frozen=True, slots=True)
class Credits:
    """A usage balance; ``refilled`` is the refill period last applied."""

    remaining: int
    refill: Refill | None = None
    refilled: int | None = None

    def __post_init__(self) -> None:
        if self.remaining < 0:
            raise ValueError("Remaining credits cannot be negative.")


@dataclass(frozen=True, slots=True)
class CreditDecision:
    """The answer of a spend: admitted or ``exhausted``, and the balance after it."""

    allowed: bool
    remaining: int
    cost: int = 1

    @property
    def exhausted(self) -> bool:
        return not self.allowed


def refilled(credits: Credits, now: datetime) -> Credits:
    """The balance after any refill due at ``now`` (a first look only records the period)."""
    refill = credits.refill
    if refill is None:
        return credits
    current = refill.period(now)
    if credits.refilled is None:
        return Credits(credits.remaining, refill, current)
    if current > credits.refilled:
        return Credits(refill.amount, refill, current)
    return credits


def spend(credits: Credits, cost: int, now: datetime) -> tuple[CreditDecision, Credits]:
    """Spend ``cost`` credits when the balance covers it; never go below zero."""
    if cost < 0:
        raise ValueError(f"A credit cost cannot be negative, not {cost}.")
    state = refilled(credits, now)
    if state.remaining < cost:
        return CreditDecision(False, state.remaining, cost), state
    after = Credits(state.remaining - cost, state.refill, state.refilled)
    return CreditDecision(True, after.remaining, cost), after
