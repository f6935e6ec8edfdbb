"""JSON documents: nesting bounded on the way in, JSON types only on the way out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apiward.core.jsontext import plain, rfc3339


class Colour(StrEnum):
    RED = "red"


@dataclass(frozen=True)
class Limit:
    name: str
    until: datetime | None


def test_records_become_json_types() -> None:
    """Times, durations, tuples, sets, enums and dataclasses have one JSON form each."""
    at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    value = {
        "expires_at": at,
        "day": date(2030, 1, 2),
        "grace": timedelta(minutes=2),
        "ip_allow": ("10.0.0.0/8",),
        "spaces": frozenset({"spc_b", "spc_a"}),
        "colour": Colour.RED,
        "limits": (Limit("per-key", at), Limit("other", None)),
    }
    assert plain(value) == {
        "expires_at": "2030-01-02T03:04:05Z",
        "day": "2030-01-02",
        "grace": 120.0,
        "ip_allow": ["10.0.0.0/8"],
        "spaces": ["spc_a", "spc_b"],
        "colour": "red",
        "limits": [
            {"name": "per-key", "until": "2030-01-02T03:04:05Z"},
            {"name": "other", "until": None},
        ],
    }


def test_a_value_without_a_json_form_is_refused_where_it_is_made() -> None:
    with pytest.raises(TypeError, match="object has no JSON form"):
        plain({"x": object()})


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.text()
        | st.datetimes(timezones=st.timezones()),
        lambda inner: st.lists(inner).map(tuple) | st.dictionaries(st.text(), inner),
        max_leaves=20,
    )
)
def test_every_value_serialises(value: object) -> None:
    """Whatever a record holds, its plain form is a JSON document that reads back as
    itself."""
    text = json.dumps(plain(value))
    assert json.loads(text) == plain(value)


@given(st.datetimes(timezones=st.timezones()))
def test_rfc3339_text_reads_back_as_the_same_instant(at: datetime) -> None:
    text = rfc3339(at)
    back = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert back.timestamp() == at.timestamp() and back.utcoffset() == at.utcoffset()
    assert text.endswith("Z") == (at.utcoffset() == timedelta(0))
