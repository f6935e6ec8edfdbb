"""Which hygiene notice a key is due, and the mark that makes it go out once."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from apiward.core.hygiene import (
    CREDITS_LOW,
    DISABLED_UNUSED,
    EXPIRING,
    HygienePolicy,
    credits_due,
    expiry_due,
    unused_due,
)
from apiward.core.limits import Credits, Refill
from apiward.core.models import ApiKey

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
POLICY = HygienePolicy(unused_days=90)


def a_key(**changes: object) -> ApiKey:
    key = ApiKey(
        id="key_1",
        org_id="org_1",
        environment="live",
        name="ci",
        digest="d" * 64,
        prefix="sk_live_",
        last4="abcd",
        scopes=("keys:read",),
        created_by="usr_1",
        created_at=NOW - timedelta(days=400),
        updated_at=NOW - timedelta(days=400),
        last_used_at=NOW - timedelta(days=1),
    )
    return replace(key, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("left", "days"),
    [
        (timedelta(days=31), None),
        (timedelta(days=30), 30),
        (timedelta(days=8), 30),
        (timedelta(days=7), 7),
        (timedelta(days=5), 7),
        (timedelta(hours=23), 1),
        (timedelta(seconds=1), 1),
        (timedelta(0), None),  # expired: nothing to remind
    ],
)
def test_the_nearest_reminder_day_is_due(left: timedelta, days: int | None) -> None:
    due = expiry_due(a_key(expires_at=NOW + left), POLICY, NOW)
    if days is None:
        assert due is None
        return
    assert due is not None
    assert due.kind == EXPIRING
    assert due.data["days"] == days
    assert due.mark == f"{days}d:{(NOW + left).strftime('%Y-%m-%dT%H:%M:%SZ')}"


def test_a_new_expiry_is_a_new_reminder() -> None:
    first = expiry_due(a_key(expires_at=NOW + timedelta(days=6)), POLICY, NOW)
    moved = expiry_due(a_key(expires_at=NOW + timedelta(days=5)), POLICY, NOW)
    assert first is not None and moved is not None
    assert first.mark != moved.mark


def test_no_reminders_without_expiry_or_reminder_days() -> None:
    assert expiry_due(a_key(), POLICY, NOW) is None
    none = HygienePolicy(expiry_days=())
    assert expiry_due(a_key(expires_at=NOW + timedelta(days=1)), none, NOW) is None
    revoked = a_key(expires_at=NOW + timedelta(days=1), revoked_at=NOW)
    assert expiry_due(revoked, POLICY, NOW) is None


MONTHLY = Refill(1000, "monthly")


@pytest.mark.parametrize(
    ("remaining", "percent"),
    [(1000, None), (501, None), (500, 50), (201, 50), (200, 80), (1, 80), (0, 100)],
)
def test_the_highest_share_spent_is_due(remaining: int, percent: int | None) -> None:
    credits = Credits(remaining, MONTHLY, MONTHLY.period(NOW))
    due = credits_due(a_key(credits=credits), POLICY, NOW)
    if percent is None:
        assert due is None
        return
    assert due is not None
    assert due.kind == CREDITS_LOW
    assert due.data["threshold_percent"] == percent
    assert due.mark == f"{percent}:monthly:{MONTHLY.period(NOW)}"


def test_credit_notices_start_again_each_refill_period() -> None:
    spent = a_key(credits=Credits(100, MONTHLY, MONTHLY.period(NOW)))
    this_month = credits_due(spent, POLICY, NOW)
    next_month = NOW + timedelta(days=31)
    # Not yet refilled (no use since): nothing is spent in the new period.
    assert credits_due(spent, POLICY, next_month) is None
    again = a_key(credits=Credits(100, MONTHLY, MONTHLY.period(next_month)))
    later = credits_due(again, POLICY, next_month)
    assert this_month is not None and later is not None
    assert this_month.mark != later.mark


def test_credits_without_refill_have_no_thresholds() -> None:
    assert credits_due(a_key(credits=Credits(0)), POLICY, NOW) is None
    assert credits_due(a_key(), POLICY, NOW) is None


def test_a_key_unused_for_the_limit_is_due_for_disablement() -> None:
    idle = a_key(last_used_at=NOW - timedelta(days=90))
    due = unused_due(idle, POLICY, NOW)
    assert due is not None and due.kind == DISABLED_UNUSED
    assert unused_due(a_key(last_used_at=NOW - timedelta(days=89)), POLICY, NOW) is None


def test_a_never_used_key_counts_from_its_creation() -> None:
    young = a_key(last_used_at=None, created_at=NOW - timedelta(days=10))
    old = a_key(last_used_at=None, created_at=NOW - timedelta(days=100))
    assert unused_due(young, POLICY, NOW) is None
    assert unused_due(old, POLICY, NOW) is not None


@pytest.mark.parametrize(
    "changes",
    [
        {"disabled_at": NOW - timedelta(days=1)},
        {"revoked_at": NOW - timedelta(days=1)},
        {"expires_at": NOW - timedelta(days=1)},
    ],
)
def test_keys_that_no_longer_work_are_left_alone(changes: dict[str, datetime]) -> None:
    idle = a_key(last_used_at=NOW - timedelta(days=200), **changes)
    assert unused_due(idle, POLICY, NOW) is None


def test_without_an_unused_limit_nothing_is_disabled() -> None:
    idle = a_key(last_used_at=NOW - timedelta(days=2000))
    assert unused_due(idle, HygienePolicy(), NOW) is None


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ({"unused_days": 0}, "at least 1"),
        ({"expiry_days": (0,)}, "whole days"),
        ({"credit_percents": (101,)}, "1 to 100"),
    ],
)
def test_a_policy_refuses_nonsense(bad: dict[str, object], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        HygienePolicy(**bad)  # type: ignore[arg-type]


def test_an_organisations_own_policy_only_adds_to_the_operators() -> None:
    operator = HygienePolicy(unused_days=90, expiry_days=(30, 7, 1), credit_percents=(50, 100))
    own = HygienePolicy(unused_days=30, expiry_days=(14,), credit_percents=(95,))
    assert operator.tightened_by(own) == HygienePolicy(
        unused_days=30, expiry_days=(30, 14, 7, 1), credit_percents=(50, 95, 100)
    )
    assert operator.tightened_by(None) == operator
    # Dropping the operator's days or thresholds is impossible: they are always kept.
    assert operator.tightened_by(HygienePolicy(expiry_days=(), credit_percents=())) == operator


@pytest.mark.parametrize(
    ("operator_days", "own_days", "loosens"),
    [(90, 120, True), (90, 90, False), (90, 30, False), (None, 365, False), (90, None, False)],
)
def test_only_a_longer_unused_limit_loosens(
    operator_days: int | None, own_days: int | None, loosens: bool
) -> None:
    said = HygienePolicy(unused_days=operator_days).loosened_by(HygienePolicy(unused_days=own_days))
    assert (said is not None) is loosens
    effective = HygienePolicy(unused_days=operator_days).tightened_by(
        HygienePolicy(unused_days=own_days)
    )
    limits = [d for d in (operator_days, own_days) if d is not None]
    assert effective.unused_days == (min(limits) if limits else None)


def test_shared_key_thresholds_only_tighten() -> None:
    from apiward.core.hygiene import HygienePolicy

    operator = HygienePolicy(shared_networks=20, shared_countries=5)
    own = HygienePolicy(shared_networks=8, shared_disable=True)
    merged = operator.tightened_by(own)
    assert (merged.shared_networks, merged.shared_countries, merged.shared_disable) == (
        8,
        5,
        True,
    )
    assert operator.loosened_by(HygienePolicy(shared_networks=50)) is not None
    assert operator.loosened_by(HygienePolicy(shared_countries=9)) is not None
    assert operator.loosened_by(own) is None
    assert HygienePolicy().tightened_by(HygienePolicy(shared_countries=3)).shared_countries == 3


def test_an_anomaly_is_due_at_the_threshold_and_marked_by_its_day() -> None:
    from apiward.core.addresses import DayFigures
    from apiward.core.hygiene import ANOMALY, HygienePolicy, anomaly_due

    day = 20_429  # 2025-12-07
    policy = HygienePolicy(shared_networks=10, shared_countries=3)
    below = DayFigures(day, 100, 9, True, 2, [], 0)
    assert anomaly_due(below, policy) is None
    due = anomaly_due(DayFigures(day, 100, 10, True, 1, [], 0), policy)
    assert due is not None and due.kind == ANOMALY and due.mark == "2025-12-07"
    assert due.data["networks"] == 10
    assert anomaly_due(DayFigures(day, 100, 2, True, 3, [], 0), policy) is not None
    assert anomaly_due(DayFigures(day, 100, 999, False, 99, [], 0), HygienePolicy()) is None
