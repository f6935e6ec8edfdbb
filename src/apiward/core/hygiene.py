"""Key hygiene: which notice a key is due, and the mark that makes it happen once.

Four policies look after keys over time (README, "Keeping keys healthy"):

- a key not used for ``unused_days`` (its last use, or its creation when never used)
  is disabled;
- a key about to expire is reminded at each of ``expiry_days`` before its expiry;
- a key whose credits refill is announced when ``credit_percents`` of the refill amount
  are spent, once per refill period;
- a key whose requests of one UTC day came from ``shared_networks`` networks or
  ``shared_countries`` countries (``core.addresses``) is announced as ``key.anomaly``,
  once per day, and disabled when ``shared_disable`` says so.

The operator sets the defaults; an organisation may add its own policy, which only
tightens them (``HygienePolicy.tightened_by``): a shorter unused limit, more reminder
days, more credit thresholds, lower shared-key thresholds, disabling a shared key. The
operator's days and thresholds always stay.

Each notice carries a *mark*: a text naming the occasion (``7d:<expiry>``,
``80:<period>``, ``<last use>``). The store keeps one row per (key, kind, mark) under a
unique constraint, inserted in the notice's own transaction, so that of any number of
processes exactly one sends it. When several reminders are due at once (a key created
five days before its expiry, or one spending 90% between two runs) only the nearest one
is sent: the most urgent news, never a burst of stale ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from apiward.core.addresses import DayFigures
from apiward.core.limits import Credits
from apiward.core.scope_usage import date_of

EXPIRING = "key.expiring"
CREDITS_LOW = "key.credits_low"
DISABLED_UNUSED = "key.disabled_unused"
ANOMALY = "key.anomaly"


class Kept(Protocol):
    """What the policies read of a key (``core.models.ApiKey``, which holds this module's
    ``HygienePolicy`` on its organisation)."""

    @property
    def created_at(self) -> datetime: ...
    @property
    def expires_at(self) -> datetime | None: ...
    @property
    def disabled_at(self) -> datetime | None: ...
    @property
    def revoked_at(self) -> datetime | None: ...
    @property
    def last_used_at(self) -> datetime | None: ...
    @property
    def credits(self) -> Credits | None: ...


@dataclass(frozen=True, slots=True)
class HygienePolicy:
    """What the operator set (``APIWARD_KEY_*``)."""

    unused_days: int | None = None
    """None: unused keys are left alone."""
    expiry_days: tuple[int, ...] = (30, 7, 1)
    credit_percents: tuple[int, ...] = (50, 80, 100)
    shared_networks: int | None = None
    """A key's requests from this many networks (/24, /48) in a UTC day send
    ``key.anomaly``; None: never."""
    shared_countries: int | None = None
    """A key's requests from this many countries in a UTC day send ``key.anomaly``."""
    shared_disable: bool = False
    """Whether ``key.anomaly`` also disables the key."""

    def __post_init__(self) -> None:
        if self.unused_days is not None and self.unused_days < 1:
            raise ValueError("unused_days must be at least 1 (or None: never).")
        if any(d < 1 for d in self.expiry_days):
            raise ValueError("Expiry reminders are whole days before the expiry, at least 1.")
        if any(not 1 <= p <= 100 for p in self.credit_percents):
            raise ValueError("Credit thresholds are percentages spent, 1 to 100.")
        for limit in (self.shared_networks, self.shared_countries):
            if limit is not None and limit < 2:
                raise ValueError("A shared-key threshold is at least 2 networks or countries.")

    def tightened_by(self, own: HygienePolicy | None) -> HygienePolicy:
        """The policy in force for an organisation whose own is ``own``: the shorter
        unused limit, and every reminder day and threshold of both."""
        if own is None:
            return self
        limits = [d for d in (self.unused_days, own.unused_days) if d is not None]
        return HygienePolicy(
            unused_days=min(limits) if limits else None,
            expiry_days=tuple(sorted({*self.expiry_days, *own.expiry_days}, reverse=True)),
            credit_percents=tuple(sorted({*self.credit_percents, *own.credit_percents})),
            shared_networks=_lower(self.shared_networks, own.shared_networks),
            shared_countries=_lower(self.shared_countries, own.shared_countries),
            shared_disable=self.shared_disable or own.shared_disable,
        )

    def loosened_by(self, own: HygienePolicy) -> str | None:
        """What in ``own`` would loosen this (the operator's) policy, said for a person;
        None when it only tightens. Days and thresholds only add, so only a longer
        unused limit or a higher shared-key threshold loosens."""
        for name in ("shared_networks", "shared_countries"):
            mine, theirs = getattr(self, name), getattr(own, name)
            if mine is not None and theirs is not None and theirs > mine:
                return (
                    f"{name} {theirs} is higher than the operator's {mine}; an "
                    "organisation may only lower it."
                )
        if (
            own.unused_days is not None
            and self.unused_days is not None
            and own.unused_days > self.unused_days
        ):
            return (
                f"unused_days {own.unused_days} is longer than the operator's "
                f"{self.unused_days}; an organisation may only shorten it."
            )
        return None

    @property
    def reminds_within(self) -> timedelta | None:
        """How far ahead expiries are looked for; None: no reminders."""
        return timedelta(days=max(self.expiry_days)) if self.expiry_days else None


def _lower(a: int | None, b: int | None) -> int | None:
    both = [x for x in (a, b) if x is not None]
    return min(both) if both else None


@dataclass(frozen=True, slots=True)
class Due:
    """A notice a key is due: its kind (the event type), mark and figures."""

    kind: str
    mark: str
    data: dict[str, object]


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def expiry_due(key: Kept, policy: HygienePolicy, now: datetime) -> Due | None:
    """The nearest reminder day the key's expiry is within, when it has not expired."""
    if key.expires_at is None or key.expires_at <= now or key.revoked_at is not None:
        return None
    left = key.expires_at - now
    within = [d for d in policy.expiry_days if left <= timedelta(days=d)]
    if not within:
        return None
    days = min(within)
    return Due(
        EXPIRING,
        f"{days}d:{_stamp(key.expires_at)}",
        {"days": days, "expires_at": key.expires_at},
    )


def credits_due(key: Kept, policy: HygienePolicy, now: datetime) -> Due | None:
    """The highest share of the refill amount spent in the current refill period.

    Only keys whose credits refill have a period and an amount to measure against; a
    key's balance set once (no refill) is announced by ``credits.low`` alone.
    """
    credits = key.credits
    if credits is None or credits.refill is None or key.revoked_at is not None:
        return None
    refill = credits.refill
    period = refill.period(now)
    if credits.refilled != period or refill.amount <= 0:
        return None  # refilled at its next use: nothing is spent in this period yet
    spent = max(0, refill.amount - credits.remaining)
    percent = spent * 100 // refill.amount
    crossed = [p for p in policy.credit_percents if percent >= p]
    if not crossed:
        return None
    threshold = max(crossed)
    return Due(
        CREDITS_LOW,
        f"{threshold}:{refill.interval}:{period}",
        {
            "threshold_percent": threshold,
            "spent": spent,
            "remaining": credits.remaining,
            "refill_amount": refill.amount,
            "refill_interval": refill.interval,
        },
    )


def unused_due(key: Kept, policy: HygienePolicy, now: datetime) -> Due | None:
    """Disablement when the key's last use (else its creation) is ``unused_days`` old.

    The mark is that last use: a key a person enables again is not disabled again for
    the same idleness, only after it has been used and left unused once more.
    """
    if policy.unused_days is None or key.disabled_at is not None or key.revoked_at is not None:
        return None
    if key.expires_at is not None and key.expires_at <= now:
        return None
    last = key.last_used_at or key.created_at
    if now - last < timedelta(days=policy.unused_days):
        return None
    return Due(
        DISABLED_UNUSED,
        _stamp(last),
        {
            "unused_days": policy.unused_days,
            "last_used_at": key.last_used_at,
        },
    )


def anomaly_due(figures: DayFigures, policy: HygienePolicy) -> Due | None:
    """``key.anomaly`` when one day's networks or countries reach the policy's threshold;
    the mark is the day, so that it is sent once per key and day."""
    networks, countries = policy.shared_networks, policy.shared_countries
    over_networks = networks is not None and figures.networks >= networks
    over_countries = countries is not None and (figures.countries or 0) >= countries
    if not (over_networks or over_countries):
        return None
    return Due(
        ANOMALY,
        date_of(figures.day).isoformat(),
        {
            "day": date_of(figures.day).isoformat(),
            "networks": figures.networks,
            "networks_exact": figures.exact,
            "countries": figures.countries,
            "requests": figures.requests,
            "threshold_networks": networks,
            "threshold_countries": countries,
            "disabled": policy.shared_disable,
        },
    )
