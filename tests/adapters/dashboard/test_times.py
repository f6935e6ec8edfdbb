"""Dates in dashboard query strings and forms: any date is a page or a message on it,
never a 500; out of range (docs: 1970-01-01 to 9000-01-01 UTC) is said so."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.adapters.dashboard.conftest import Browser
from tests.conftest import Org, examples

RANGE = "between 1970-01-01T00:00:00Z and 9000-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("query", "name"),
    [("until=9999-12-31", "until"), ("since=0001-01-01", "since"), ("since=9999-12-31", "since")],
)
def test_an_audit_date_out_of_range_is_explained_and_ignored(
    owner: Browser, query: str, name: str
) -> None:
    r = owner.get(f"/dashboard/audit?{query}")
    assert r.status_code == 200, r.text[:300]
    assert f"The {name} date must be {RANGE}; it was ignored." in r.text


def test_the_last_day_in_range_is_a_filter(owner: Browser) -> None:
    r = owner.get("/dashboard/audit?since=1970-01-01&until=8999-12-31")
    assert r.status_code == 200
    assert "flash-error" not in r.text


@settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(since=st.dates(), until=st.dates())
@example(since=date.min, until=date.max)
def test_any_audit_dates_give_the_page(owner: Browser, since: date, until: date) -> None:
    r = owner.get(f"/dashboard/audit?since={since.isoformat()}&until={until.isoformat()}")
    assert r.status_code == 200, (since, until, r.text[:300])


@pytest.mark.parametrize("form", ["/dashboard/keys", "/dashboard/clients"])
@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01"])
def test_an_expiry_date_out_of_range_is_shown_on_the_form(
    owner: Browser, org: Org, form: str, day: str
) -> None:
    fields = {"name": "x", "env": "live", "scope": ["keys:read"], "expires": "date"}
    r = owner.post(form, {**fields, "expires_on": day})
    assert r.status_code == 400, r.text[:300]
    assert 'class="flash flash-error"' in r.text
    assert f"The expiry date must be {RANGE}." in r.text


@settings(
    max_examples=examples(30),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(day=st.dates(), form=st.sampled_from(["/dashboard/keys", "/dashboard/clients"]))
@example(day=date.max, form="/dashboard/keys")
def test_any_expiry_date_is_a_key_or_a_message(owner: Browser, day: date, form: str) -> None:
    fields = {"name": "x", "env": "live", "scope": ["keys:read"], "expires": "date"}
    r = owner.post(form, {**fields, "expires_on": day.isoformat()})
    assert r.status_code in (200, 201, 303, 400), (day, r.status_code, r.text[:300])
