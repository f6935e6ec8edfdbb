"""The pure rate-limit and credit logic: GCRA, policies, reporting, headers, credits."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apiward.core.limits import (
    MAX_KEY_LENGTH,
    MAX_PERIOD,
    NS,
    US,
    Credits,
    Decision,
    Hit,
    Policy,
    PolicyDecision,
    RateLimitExceeded,
    Refill,
    WindowState,
    bounded_key,
    choose,
    gcra,
    gcra_all,
    headers,
    interval_ticks,
    parse_rate,
    refilled,
    report,
    spend,
    to_ticks,
    window,
    window_refund,
)
from tests.conftest import examples

MS = 1000  # a millisecond clock keeps the generated schedules readable


# --- parsing and policies ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1000/hour", (1000, 3600)),
        ("100/minute", (100, 60)),
        ("10/second", (10, 1)),
        ("5000/day", (5000, 86400)),
        ("20/15minutes", (20, 900)),
        ("3 / 2h", (3, 7200)),
        ("7 per DAY", (7, 86400)),
        ("1/s", (1, 1)),
    ],
)
def test_parse_rate_reads_count_and_period(text: str, expected: tuple[int, int]) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize(
    "text", ["", "1000", "hour", "1000/fortnight", "-1/hour", "0/hour", "10/0minutes", "1.5/s"]
)
def test_parse_rate_rejects_bad_input_saying_what_to_write(text: str) -> None:
    with pytest.raises(ValueError, match="Invalid rate"):
        parse_rate(text)


@pytest.mark.parametrize("text", ["1/99999day", "1/2days", "10/25h", "5/1441minutes", "1/86401s"])
def test_a_period_longer_than_a_day_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=rf"'{text}'.*at most 1 day \(86400 seconds\)"):
        parse_rate(text)
    assert parse_rate("1/day") == (1, MAX_PERIOD) == parse_rate("1/86400s")
    with pytest.raises(ValueError, match=r"between 0\.001 seconds and 1 day"):
        Policy("long", 1, MAX_PERIOD + 0.5)


@pytest.mark.parametrize(
    ("text", "read"),
    [("1/99999day", (1, MAX_PERIOD)), ("30000/30days", (1000, MAX_PERIOD)), ("5/hour", (5, 3600))],
)
def test_a_stored_rate_past_the_maximum_is_read_as_its_rate_over_one_day(
    text: str, read: tuple[int, int]
) -> None:
    assert parse_rate(text, stored=True) == read


@given(st.text(max_size=3 * MAX_KEY_LENGTH), st.text(max_size=3 * MAX_KEY_LENGTH))
def test_bounded_keys_are_short_and_meet_only_when_the_keys_do(a: str, b: str) -> None:
    assert len(bounded_key(a)) <= MAX_KEY_LENGTH + 1
    assert (bounded_key(a) == bounded_key(b)) == (a == b)
    if len(a) <= MAX_KEY_LENGTH:
        assert bounded_key(a) == a


def test_a_long_key_keeps_its_head_and_one_length() -> None:
    long = "login:user:" + "x" * 4096
    assert bounded_key(long).startswith("login:user:xxx")
    assert len(bounded_key(long)) == len(bounded_key(long + "y")) == MAX_KEY_LENGTH + 1
    assert bounded_key(long) != bounded_key(long + "y")


def test_policy_parse_builds_a_policy_from_a_rate_string() -> None:
    policy = Policy.parse("org-hourly", "1000/hour", key="org")
    assert (policy.limit, policy.period, policy.key, policy.cost) == (1000, 3600.0, "org", 1)
    assert policy.rate == "1000/3600s"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "has space"}, "Invalid policy name"),
        ({"name": '"quoted"'}, "Invalid policy name"),
        ({"key": "tenant"}, "Invalid key kind"),
        ({"limit": 0}, "limit must be"),
        ({"limit": True}, "limit must be"),
        ({"period": 0.0}, "period must be"),
        ({"period": math.inf}, "period must be"),
        ({"cost": 0}, "cost must be"),
        ({"cost": 11}, "cost must be"),
    ],
)
def test_policy_rejects_misconfiguration_loudly(fields: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"name": "p", "limit": 10, "period": 60.0, "key": "ip"}
    values.update(fields)
    with pytest.raises(ValueError, match=message):
        Policy(**values)  # type: ignore[arg-type]


# --- GCRA: examples ------------------------------------------------------------------


def test_a_fresh_key_admits_a_burst_of_exactly_limit_then_denies() -> None:
    tat, now = None, 10 * NS
    for expected_remaining in range(4, -1, -1):
        d = gcra(tat, now, 5, 60 * NS)
        assert d.allowed and d.remaining == expected_remaining
        tat = d.tat
    denied = gcra(tat, now, 5, 60 * NS)
    assert not denied.allowed and denied.remaining == 0
    assert denied.retry_after == pytest.approx(12.0)  # one unit refills every 60 / 5 s
    assert denied.reset_after == pytest.approx(60.0)


def test_a_denied_request_leaves_the_state_unchanged() -> None:
    full = gcra(None, 0, 1, 10 * NS)
    denied = gcra(full.tat, 3 * NS, 1, 10 * NS)
    assert not denied.allowed and denied.tat == full.tat


def test_waiting_exactly_retry_after_is_admitted_and_a_tick_less_is_not() -> None:
    tat = gcra(None, 0, 2, 10 * NS, 2).tat
    denied = gcra(tat, 1 * NS, 2, 10 * NS)
    wait = round(denied.retry_after * NS)
    assert not gcra(tat, 1 * NS + wait - 1, 2, 10 * NS).allowed
    assert gcra(tat, 1 * NS + wait, 2, 10 * NS).allowed


def test_cost_spends_several_units_and_cost_zero_only_reads() -> None:
    d = gcra(None, 0, 10, 10 * NS, 4)
    assert d.allowed and d.remaining == 6
    read = gcra(d.tat, 0, 10, 10 * NS, 0)
    assert read.allowed and read.remaining == 6 and read.tat == d.tat
    too_much = gcra(d.tat, 0, 10, 10 * NS, 7)
    assert not too_much.allowed and too_much.remaining == 6


def test_the_bucket_refills_one_unit_per_interval_and_is_full_after_reset_after() -> None:
    d = gcra(None, 0, 4, 8 * NS, 4)
    assert gcra(d.tat, 2 * NS, 4, 8 * NS, 0).remaining == 1
    assert gcra(d.tat, 5 * NS, 4, 8 * NS, 0).remaining == 2
    assert gcra(d.tat, round(d.reset_after * NS), 4, 8 * NS, 0).remaining == 4


def test_an_interval_that_does_not_divide_is_rounded_up_never_more_generous() -> None:
    assert interval_ticks(3, 10) == 4
    d = gcra(None, 0, 3, 10, 3, tick=1)
    assert d.allowed and gcra(d.tat, 3, 3, 10, tick=1).allowed is False


def test_a_clock_that_steps_back_below_the_tat_reports_zero_not_negative() -> None:
    d = gcra(None, 100 * NS, 2, 10 * NS, 2)
    earlier = gcra(d.tat, 0, 2, 10 * NS)
    assert not earlier.allowed and earlier.remaining == 0


@pytest.mark.parametrize(
    ("limit", "period", "cost"), [(0, 10, 1), (10, 5, 1), (10, 100, 11), (10, 100, -1)]
)
def test_gcra_rejects_impossible_arguments(limit: int, period: int, cost: int) -> None:
    with pytest.raises(ValueError, match=r"limit|period|cost"):
        gcra(None, 0, limit, period, cost)


def test_a_full_burst_then_steady_use_admits_up_to_twice_the_limit_in_one_period() -> None:
    """GCRA limits a rate with a burst, not every sliding window: this is the bound."""
    limit, period = 4, 8
    tat: int | None = None
    admitted: list[int] = []
    for t in [0, 0, 0, 0, 2, 4, 6, 8]:
        d = gcra(tat, t, limit, period, tick=1)
        if d.allowed:
            tat, admitted = d.tat, [*admitted, t]
    assert len(admitted) == 2 * limit  # all in the closed window [0, 8]


def test_to_ticks_maps_float_seconds_onto_an_integer_clock() -> None:
    assert to_ticks(0.3) == 300_000_000
    assert to_ticks(1.5, US) == 1_500_000


# --- GCRA: properties ----------------------------------------------------------------

schedules = st.tuples(
    st.integers(1, 20),  # limit
    st.integers(1, 40),  # period, in multiples of the limit (so interval >= 1 tick)
    st.lists(
        st.tuples(st.integers(0, 400), st.integers(0, 3)),  # (gap in ticks, cost)
        min_size=1,
        max_size=80,
    ),
)


def _run(limit: int, period: int, steps: list[tuple[int, int]]) -> list[tuple[int, int, Decision]]:
    """Replay requests as an adapter would: store the TAT of admitted requests only."""
    tat: int | None = None
    now, out = 0, []
    for gap, cost in steps:
        now += gap
        d = gcra(tat, now, limit, period, min(cost, limit), tick=MS)
        if d.allowed:
            tat = d.tat
        out.append((now, min(cost, limit), d))
    return out


@given(schedules)
def test_property_any_window_admits_at_most_a_burst_plus_the_refill(
    case: tuple[int, int, list[tuple[int, int]]],
) -> None:
    """For every window [a, b]: admitted units <= limit + (b - a) // interval."""
    limit, multiple, steps = case
    period = limit * multiple + multiple // 2
    interval = interval_ticks(limit, period)
    admitted = [(t, c) for t, c, d in _run(limit, period, steps) if d.allowed]
    for i, (start, _) in enumerate(admitted):
        total = 0
        for end, cost in admitted[i:]:
            total += cost
            assert total <= limit + (end - start) // interval


@given(schedules)
def test_property_remaining_stays_within_zero_and_limit(
    case: tuple[int, int, list[tuple[int, int]]],
) -> None:
    limit, multiple, steps = case
    for _, _, d in _run(limit, limit * multiple, steps):
        assert 0 <= d.remaining <= limit
        assert d.reset_after >= 0 and d.retry_after >= 0
        assert (d.retry_after == 0) == d.allowed


@given(schedules)
def test_property_remaining_is_exactly_what_can_be_spent_at_once(
    case: tuple[int, int, list[tuple[int, int]]],
) -> None:
    limit, multiple, steps = case
    period = limit * multiple
    tat: int | None = None
    now = 0
    for gap, cost in steps:
        now += gap
        d = gcra(tat, now, limit, period, min(cost, limit), tick=MS)
        if d.allowed:
            tat = d.tat
        state = d.tat if d.allowed else tat
        for _ in range(d.remaining):
            burst = gcra(state, now, limit, period, tick=MS)
            assert burst.allowed
            state = burst.tat
        assert not gcra(state, now, limit, period, tick=MS).allowed


@given(schedules, st.booleans())
def test_property_a_client_that_waits_retry_after_is_then_admitted(
    case: tuple[int, int, list[tuple[int, int]]], whole_seconds: bool
) -> None:
    """Waiting the exact retry_after, or the Retry-After header's whole seconds, works."""
    limit, multiple, steps = case
    period = limit * multiple
    tat: int | None = None
    now = 0
    for gap, cost in steps:
        now += gap
        spent = min(cost, limit)
        d = gcra(tat, now, limit, period, spent, tick=MS)
        if d.allowed:
            tat = d.tat
            continue
        wait = round(d.retry_after * MS)
        if whole_seconds:
            wait = math.ceil(d.retry_after) * MS
        assert gcra(tat, now + wait, limit, period, spent, tick=MS).allowed


@given(schedules)
@settings(max_examples=examples(50))
def test_property_gcra_all_spends_on_every_limit_or_on_none(
    case: tuple[int, int, list[tuple[int, int]]],
) -> None:
    limit, multiple, steps = case
    period = 2 * limit * multiple
    hits = [Hit("a", limit, period / MS), Hit("b", 2 * limit, period / MS)]
    tats: list[int | None] = [None, None]
    now = 0
    for gap, _ in steps:
        now += gap
        decisions, commit = gcra_all(tats, now, hits, tick=MS)
        singles = [gcra(t, now, h.limit, period, tick=MS) for t, h in zip(tats, hits, strict=True)]
        assert commit == all(s.allowed for s in singles)
        if commit:
            assert decisions == singles
            tats = [d.tat for d in decisions]
            continue
        for d, s, t, h in zip(decisions, singles, tats, hits, strict=True):
            assert d == (s if not s.allowed else gcra(t, now, h.limit, period, 0, tick=MS))


# --- reporting -----------------------------------------------------------------------


def _decision(allowed: bool, limit: int, remaining: int, retry: float = 0.0) -> Decision:
    return Decision(allowed, limit, remaining, 30.0, retry, 0, 60.0)


@pytest.mark.parametrize(
    ("decisions", "expected"),
    [
        ([], None),
        ([_decision(True, 100, 50)], 0),
        ([_decision(True, 1000, 400), _decision(True, 100, 10)], 1),  # 10% beats 40%
        ([_decision(True, 10, 1), _decision(False, 1000, 0, 5.0)], 1),  # a denial beats all
        ([_decision(False, 10, 0, 3.0), _decision(False, 10, 0, 9.0)], 1),  # longest wait
    ],
)
def test_choose_reports_the_denial_with_the_longest_wait_else_the_closest_to_exhaustion(
    decisions: list[Decision], expected: int | None
) -> None:
    chosen = choose(decisions)
    assert chosen is (None if expected is None else decisions[expected])


def test_report_chooses_among_decisions_under_named_policies() -> None:
    org = PolicyDecision(Policy("org", 1000, 3600), "rl:org:org:o1", _decision(True, 1000, 999))
    ip = PolicyDecision(Policy("ip", 100, 60, "ip"), "rl:ip:ip:1.2.3.4", _decision(True, 100, 3))
    assert report([org, ip]) is ip
    assert report([]) is None


def test_headers_of_an_admitted_request() -> None:
    policy = Policy("org-hourly", 1000, 3600.0)
    d = Decision(True, 1000, 998, 7.2, 0.0, 0, 3600.0)
    assert headers(PolicyDecision(policy, "k", d), now=1_700_000_000.5) == {
        "X-RateLimit-Limit": "1000",
        "X-RateLimit-Remaining": "998",
        "X-RateLimit-Reset": "1700000008",
        "RateLimit-Policy": '"org-hourly";q=1000;w=3600',
        "RateLimit": '"org-hourly";r=998;t=8',
    }


def test_headers_of_a_denied_request_carry_retry_after_rounded_up() -> None:
    policy = Policy("per-ip", 100, 60.0, "ip")
    d = Decision(False, 100, 0, 59.4, 0.3, 0, 60.0)
    fields = headers(PolicyDecision(policy, "k", d), now=1_700_000_000.0)
    assert fields["Retry-After"] == "1"
    assert fields["X-RateLimit-Remaining"] == "0"
    assert fields["X-RateLimit-Reset"] == "1700000060"
    assert fields["RateLimit"] == '"per-ip";r=0;t=1'


def test_headers_can_list_every_policy_with_the_reported_one_first() -> None:
    org = PolicyDecision(Policy("org", 1000, 3600), "a", _decision(True, 1000, 999))
    ip = PolicyDecision(Policy("ip", 100, 60, "ip"), "b", _decision(True, 100, 3))
    fields = headers(ip, 0.0, also=[org, ip])
    assert fields["RateLimit-Policy"] == '"ip";q=100;w=60, "org";q=1000;w=3600'
    assert fields["RateLimit"] == '"ip";r=3;t=30, "org";r=999;t=30'


def test_rate_limit_exceeded_says_when_to_retry_and_carries_the_headers() -> None:
    exc = RateLimitExceeded(2.1, {"Retry-After": "3"}, "per-ip")
    assert exc.code == "RATE_LIMITED"
    assert exc.message == (
        "Too many requests: the 'per-ip' rate limit is exhausted. Retry after 3 seconds."
    )
    assert exc.headers == {"Retry-After": "3"}


# --- usage credits -------------------------------------------------------------------

JAN_31 = datetime(2025, 1, 31, 12, tzinfo=UTC)


def test_spend_decrements_and_is_exhausted_when_the_balance_is_short() -> None:
    credits = Credits(3)
    first, credits = spend(credits, 2, JAN_31)
    assert first.allowed and first.remaining == 1
    second, after = spend(credits, 2, JAN_31)
    assert second.exhausted and second.remaining == 1 and after == credits


@given(st.integers(0, 50), st.lists(st.integers(0, 7), max_size=30))
def test_property_credits_never_go_below_zero_and_spend_exactly(
    start: int, costs: list[int]
) -> None:
    credits = Credits(start)
    spent = 0
    for cost in costs:
        decision, credits = spend(credits, cost, JAN_31)
        assert credits.remaining >= 0
        spent += cost if decision.allowed else 0
    assert credits.remaining == start - spent


def test_a_daily_refill_resets_the_balance_on_the_next_utc_day() -> None:
    credits = refilled(Credits(0, Refill(100, "daily")), JAN_31)  # first look: records
    assert credits.remaining == 0
    assert refilled(credits, JAN_31 + timedelta(hours=11)).remaining == 0
    assert refilled(credits, JAN_31 + timedelta(hours=12)).remaining == 100


@pytest.mark.parametrize(
    ("day", "when", "refills"),
    [
        (1, datetime(2025, 2, 1, 0, tzinfo=UTC), True),
        (15, datetime(2025, 2, 14, 23, tzinfo=UTC), False),
        (15, datetime(2025, 2, 15, 0, tzinfo=UTC), True),
        (31, datetime(2025, 2, 27, tzinfo=UTC), False),
        (31, datetime(2025, 2, 28, tzinfo=UTC), True),  # past the month's end: last day
    ],
)
def test_a_monthly_refill_happens_on_its_day_or_the_months_last(
    day: int, when: datetime, refills: bool
) -> None:
    start = Credits(5, Refill(1000, "monthly", day), Refill(1000, "monthly", day).period(JAN_31))
    assert (refilled(start, when).remaining == 1000) is refills


def test_a_refill_sets_the_balance_rather_than_adding_to_it() -> None:
    credits = Credits(70, Refill(100, "daily"), 0)
    assert refilled(credits, JAN_31).remaining == 100


@pytest.mark.parametrize(
    "bad",
    [
        lambda: Refill(-1),
        lambda: Refill(1, "weekly"),  # type: ignore[arg-type]
        lambda: Refill(1, "monthly", 32),
        lambda: Credits(-1),
        lambda: spend(Credits(1), -1, JAN_31),
    ],
)
def test_credit_misconfiguration_raises_value_error(bad: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match=r"(?i)refill|credit|cost"):
        bad()


def test_credit_decision_exhausted_is_the_opposite_of_allowed() -> None:
    decision = spend(Credits(0), 1, JAN_31)[0]
    assert decision.exhausted and replace(decision, allowed=True).exhausted is False


# --- window limits ---------------------------------------------------------------------


@settings(max_examples=examples(300))
@given(
    sliding=st.booleans(),
    limit=st.integers(1, 20),
    period=st.integers(10, 10_000),
    gaps=st.lists(st.integers(0, 3_000), min_size=1, max_size=120),
)
def test_a_window_limit_admits_at_most_limit_in_each_window(
    sliding: bool, limit: int, period: int, gaps: list[int]
) -> None:
    """Whatever the arrivals, no window [k·period, (k+1)·period) admits more than
    ``limit``; a sliding window also never lets two adjacent windows' admissions weigh
    more than ``limit`` at the moment of an admission."""
    state: WindowState | None = None
    now = 0
    admitted: list[int] = []
    for gap in gaps:
        now += gap
        decision, new = window(state, now, limit, period, sliding=sliding, tick=1)
        if decision.allowed:
            admitted.append(now)
            state = new
            assert decision.reset_after == period - now % period
        else:
            assert decision.retry_after > 0
            again, _ = window(
                state, now + math.ceil(decision.retry_after), limit, period, sliding=sliding, tick=1
            )
            assert again.allowed  # the wait announced is enough
    per_window: dict[int, int] = {}
    for t in admitted:
        per_window[t // period] = per_window.get(t // period, 0) + 1
    assert all(count <= limit for count in per_window.values())


def test_a_fixed_window_refills_at_its_end_not_before() -> None:
    """1000 an hour as a window (the Monaco document): the 1001st waits for the hour's
    end, where GCRA would admit one more every 3.6 s."""
    hour = 3600
    state: WindowState | None = None
    for i in range(1000):
        decision, state = window(state, 10 + i, 1000, hour, tick=1)
        assert decision.allowed and decision.remaining == 999 - i
    late, _ = window(state, 1018, 1000, hour, tick=1)
    assert not late.allowed and late.retry_after == hour - 1018
    assert not window(state, hour - 1, 1000, hour, tick=1)[0].allowed
    assert window(state, hour, 1000, hour, tick=1)[0].allowed


def test_a_sliding_window_weighs_the_previous_window() -> None:
    state: WindowState | None = None
    for t in range(90, 100):  # ten at the very end of the first window
        decision, state = window(state, t, 10, 100, sliding=True, tick=1)
        assert decision.allowed
    # Just after the edge, the previous ten still weigh almost fully: no burst of ten.
    early, _ = window(state, 101, 10, 100, sliding=True, tick=1)
    assert not early.allowed
    # Half way through the next window, half of them still count: five are admitted.
    admitted = 0
    for t in range(150, 160):
        decision, new = window(state, t, 10, 100, sliding=True, tick=1)
        if decision.allowed:
            admitted, state = admitted + 1, new
    assert admitted == 5


def test_a_window_refund_gives_back_the_current_windows_count() -> None:
    _, state = window(None, 5, 3, 100, 2, tick=1)
    assert window_refund(state, 7, 100, 2) == (0, 0, 0)
    assert window_refund(state, 105, 100, 2) == state  # a window that has passed: nothing
