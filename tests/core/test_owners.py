"""Who a credential belongs to: the bounds of ``external_id`` and ``meta``, and a ``meta``
value in a header, which no byte of it can break."""

from __future__ import annotations

import json
import math
import re
from typing import Any
from urllib.parse import unquote

import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st

from apiward.core.errors import InvalidInput
from apiward.core.owners import (
    MAX_META_BYTES,
    MAX_META_PROPERTIES,
    MAX_SAFE_INTEGER,
    check_external_id,
    check_meta,
    forwarded_header,
    frozen,
    header_value,
    serialised,
)

UNRESERVED_OR_ESCAPE = re.compile(r"(?:[A-Za-z0-9\-._~]|%[0-9A-F]{2})*")


@pytest.mark.parametrize(
    "value", ["c", "cus_4QFJOjw2pOmAGJ", "acct/42@eu", "a" * 255, "!~#%&'*+,;=?[]{}|"]
)
def test_an_external_id_of_visible_ascii_is_kept_as_it_is(value: str) -> None:
    assert check_external_id(value) == value


@pytest.mark.parametrize(
    "value", ["", " ", "cus 1", " cus_1", "cus_1\n", "a" * 256, "cüs", "x\x00", "\t", "é"]
)
def test_an_external_id_outside_visible_ascii_or_255_characters_is_refused(value: str) -> None:
    with pytest.raises(InvalidInput, match="external_id must be 1 to 255 visible ASCII"):
        check_external_id(value)


def test_meta_keeps_flat_json_values() -> None:
    meta = {"plan": "pro", "seats": 3, "ratio": 0.25, "trial": True, "note": None}
    assert check_meta(meta) == meta
    assert check_meta({}) == {}


def test_meta_bounds_are_exact() -> None:
    """64 properties and 4096 bytes of compact UTF-8 JSON pass; one more of either does not."""
    most = {f"k{i:02}": i for i in range(MAX_META_PROPERTIES)}
    assert check_meta(most) == most
    with pytest.raises(InvalidInput, match="at most 64 properties; this one has 65"):
        check_meta({**most, "one-more": 1})
    filler = MAX_META_BYTES - len(serialised({"a": ""}))
    full = {"a": "x" * filler}
    assert len(serialised(full)) == MAX_META_BYTES
    assert check_meta(full) == full
    with pytest.raises(InvalidInput, match=r"at most 4096 bytes .* this one is 4097"):
        check_meta({"a": "x" * (filler + 1)})
    # Bytes, not characters: two bytes each in UTF-8.
    with pytest.raises(InvalidInput, match="4096 bytes"):
        check_meta({"a": "é" * (filler // 2 + 1)})


@pytest.mark.parametrize(
    ("meta", "says"),
    [
        ({"nested": {"a": 1}}, "meta.nested: values are strings, numbers, booleans or null"),
        ({"list": [1, 2]}, "meta.list: values are strings"),
        ({"n": math.nan}, "meta.n: numbers must be finite"),
        ({"n": math.inf}, "meta.n: numbers must be finite"),
        ({"n": MAX_SAFE_INTEGER + 1}, "within ±9007199254740991"),
        ({"n": -MAX_SAFE_INTEGER - 1}, "within ±9007199254740991"),
        ({"s": "\ud800"}, "meta.s: the text is not valid Unicode"),
        ({"": 1}, "property names are 1 to 64 characters"),
        ({"k" * 65: 1}, "property names are 1 to 64 characters"),
        ({"a\nb": 1}, "property names are 1 to 64 characters"),
        ({"\ud800": 1}, "property names are 1 to 64 characters"),
        ([("a", 1)], "meta must be a JSON object"),
        ("plan=pro", "meta must be a JSON object"),
    ],
)
def test_meta_outside_its_bounds_is_refused_naming_the_field(meta: Any, says: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(says)):
        check_meta(meta)


def test_a_safe_integer_at_the_bound_is_kept() -> None:
    assert check_meta({"n": MAX_SAFE_INTEGER, "m": -MAX_SAFE_INTEGER}) == {
        "n": MAX_SAFE_INTEGER,
        "m": -MAX_SAFE_INTEGER,
    }


def test_frozen_meta_cannot_be_changed_through_the_principal() -> None:
    meta: dict[str, Any] = {"plan": "pro"}
    view = frozen(meta)
    with pytest.raises(TypeError):
        view["plan"] = "free"  # type: ignore[index]
    assert view == {"plan": "pro"}
    assert frozen({}) is frozen({})  # one shared empty view


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        ("pro", "pro"),
        ("eu-west_1.a~b", "eu-west_1.a~b"),
        ("a b", "a%20b"),
        ("50%", "50%25"),
        ("x\r\nX-Apiward-Org: org_evil", "x%0D%0AX-Apiward-Org%3A%20org_evil"),
        ("日本", "%E6%97%A5%E6%9C%AC"),
        ("\x00", "%00"),
        (True, "true"),
        (False, "false"),
        (42, "42"),
        (-1.5, "-1.5"),
        (1e300, "1e%2B300"),
        (None, ""),
    ],
)
def test_a_meta_value_in_a_header_is_its_text_percent_encoded(value: Any, sent: str) -> None:
    assert header_value(value) == sent


@given(st.text())
def test_no_text_breaks_a_header_and_every_text_comes_back(text: str) -> None:
    """Whatever the text (CR, LF, NUL, non-ASCII, '%'), the header value holds only
    unreserved characters and escapes, an HTTP/1.1 stack accepts it as a field value,
    and a URL decoder gives the text back."""
    sent = header_value(text)
    assert UNRESERVED_OR_ESCAPE.fullmatch(sent), sent
    assert unquote(sent, errors="strict") == text
    request = h11.Request(
        method="GET", target="/", headers=[("Host", "x"), ("X-Apiward-Meta-Plan", sent)]
    )
    assert request.headers[-1] == (b"x-apiward-meta-plan", sent.encode())


@given(st.one_of(st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER), st.floats(allow_nan=False)))
def test_a_number_comes_back_as_its_json_value(number: float) -> None:
    if math.isinf(number):
        return  # refused by ``check_meta``: never stored
    assert json.loads(unquote(header_value(number))) == number


@pytest.mark.parametrize(
    ("name", "header"),
    [
        ("plan", "X-Apiward-Meta-Plan"),
        ("billing_tier", "X-Apiward-Meta-Billing-Tier"),
        ("region-code", "X-Apiward-Meta-Region-Code"),
        ("seats2", "X-Apiward-Meta-Seats2"),
    ],
)
def test_a_forwarded_field_names_its_header(name: str, header: str) -> None:
    assert forwarded_header(name) == header


@pytest.mark.parametrize("name", ["", "a b", "plan:x", "pläne", "a\r\nb", "k" * 65])
def test_a_field_that_cannot_name_a_header_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="it names a header"):
        forwarded_header(name)
