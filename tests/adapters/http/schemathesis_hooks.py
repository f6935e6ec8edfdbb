"""Schemathesis hooks of test_schemathesis: times at the edges of what a date can hold.

Every ``date-time`` field and parameter of the document is drawn from :data:`TIMES`:
three in four are the first or last instant of year 1, year 9999 or apiward's range, at
offsets up to 23:59 either way (half of them past what a date holds once in UTC). So are
analytics' ``since``/``until``, plain strings in the document as they take spans too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import schemathesis
from hypothesis import strategies as st

MOST = timedelta(hours=23, minutes=59)
OFFSETS = st.one_of(
    st.sampled_from([timezone(MOST), timezone(-MOST), UTC]),
    st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m))),
)
EDGES = st.sampled_from(
    [
        datetime.min,
        datetime.max,
        datetime(1970, 1, 1),
        datetime(9000, 1, 1),
        datetime(8999, 12, 31, 23, 59, 59),
    ]
)


def _rfc3339(moment: datetime) -> str:
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


WEST = st.integers(1, 23 * 60 + 59).map(lambda m: timezone(-timedelta(minutes=m)))
EAST = st.integers(1, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
TIMES = st.one_of(
    st.builds(lambda z: datetime.max.replace(tzinfo=z), WEST),  # past year 9999 in UTC
    st.builds(lambda z: datetime.min.replace(tzinfo=z), EAST),  # before year 1 in UTC
    st.builds(lambda d, z: d.replace(tzinfo=z), EDGES, OFFSETS),
    st.datetimes(timezones=OFFSETS),
).map(_rfc3339)

schemathesis.openapi.format("date-time", TIMES)


def flatmap_query(context: Any, query: dict[str, Any] | None) -> st.SearchStrategy[Any]:
    operation = getattr(context, "operation", None)
    if getattr(operation, "path", None) != "/v1/analytics/verifications":
        return st.just(query)
    spans = st.fixed_dictionaries({}, optional={"since": TIMES, "until": TIMES})
    return spans.map(lambda times: {**(query or {}), **times})


schemathesis.hook(flatmap_query)
