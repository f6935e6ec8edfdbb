"""The one way a time from outside comes in: an aware UTC datetime in range, or a clean
InvalidInput, whatever the year or the offset (RFC 3339 section 5.6 allows up to 23:59)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from apiward.core import times
from apiward.core.errors import InvalidInput

MOST = timedelta(hours=23, minutes=59)
OFFSETS = st.one_of(
    st.timezones(),
    st.sampled_from([timezone(MOST), timezone(-MOST), UTC]),
    st.timedeltas(-MOST, MOST).map(timezone),
)
ANY_TIME = st.datetimes(timezones=st.one_of(st.none(), OFFSETS))
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@given(ANY_TIME)
@example(datetime.max.replace(tzinfo=timezone(-MOST)))
@example(datetime.min.replace(tzinfo=timezone(MOST)))
@example(datetime.max.replace(tzinfo=UTC))
@example(datetime.min)
def test_any_time_is_utc_in_range_or_refused(value: datetime) -> None:
    for given_as in (value, value.isoformat()):
        try:
            got = times.instant(given_as)
        except InvalidInput as exc:
            refused: str | None = exc.message
        else:
            refused = None
        if refused is not None:
            assert "must be between 1970-01-01T00:00:00Z and 9000-01-01T00:00:00Z" in refused
            continue
        assert got.tzinfo is UTC
        assert times.EARLIEST <= got <= times.LATEST
        # the longest duration apiward adds or takes away stays a datetime
        assert got + times.LONGEST > got - times.LONGEST
        if value.tzinfo is None:
            assert got == value.replace(tzinfo=UTC)
        else:
            assert got == value


def test_the_reported_reproductions_are_refused() -> None:
    for text in ("9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "9999-12-31"):
        with pytest.raises(InvalidInput, match="must be between"):
            times.instant(text, name="until")


def test_the_range_is_inclusive_and_offsets_count() -> None:
    assert times.instant("1970-01-01T00:00:00Z") == times.EARLIEST
    assert times.instant("9000-01-01T00:00:00Z") == times.LATEST
    assert times.instant("9000-01-01T01:00:00+01:00") == times.LATEST
    with pytest.raises(InvalidInput):
        times.instant("9000-01-01T00:00:00-00:01")
    with pytest.raises(InvalidInput):
        times.instant("1970-01-01T00:00:00+00:01")


def test_a_zone_can_be_required() -> None:
    assert times.instant("2030-01-01T00:00:00", name="at") == datetime(2030, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidInput, match="at needs a time zone"):
        times.instant("2030-01-01T00:00:00", name="at", zoned=True)


def test_a_date_is_its_midnight_utc() -> None:
    assert times.instant(date(2030, 5, 1)) == datetime(2030, 5, 1, tzinfo=UTC)
    with pytest.raises(InvalidInput):
        times.instant(date(9999, 12, 31))


def test_spans_count_back_from_now_only_when_asked() -> None:
    assert times.instant("24h", now=NOW) == NOW - timedelta(hours=24)
    assert times.instant("90s", now=NOW) == NOW - timedelta(seconds=90)
    with pytest.raises(InvalidInput, match="is not an ISO time"):
        times.instant("24h")
    with pytest.raises(InvalidInput, match="between 0 and"):
        times.instant("999999999999d", now=NOW)
    with pytest.raises(InvalidInput, match="must be between 1970"):
        times.instant("36500d", now=NOW)  # 100 years back: before 1970


@given(st.text(max_size=40))
def test_any_text_is_a_time_or_refused(text: str) -> None:
    try:
        got = times.instant(text, now=NOW)
    except InvalidInput:
        return
    assert got.tzinfo is UTC and times.EARLIEST <= got <= times.LATEST


@given(st.one_of(st.integers(), st.floats(allow_nan=True)))
def test_durations_are_bounded(seconds: float) -> None:
    if not 0 <= seconds <= 3_153_600_000:
        with pytest.raises(InvalidInput, match=r"between 0 and 3153600000 seconds \(36500 days\)"):
            times.duration(seconds)
        return
    got = times.duration(seconds)
    assert timedelta(0) <= got <= times.LONGEST
    assert times.later(NOW, seconds) == NOW + got


def test_a_span_names_a_duration_or_nothing() -> None:
    assert times.span("30d") == timedelta(days=30)
    assert times.span("soon") is None
    with pytest.raises(InvalidInput, match="--expires-in must be between 0 and"):
        times.span("99999999999d", name="--expires-in")
