"""The token endpoint's form bodies are read as Starlette's form parser reads them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers
from starlette.formparsers import FormParser
from starlette.testclient import TestClient

from apiward.adapters.http.routes.oauth import MAX_FORM_FIELD_BYTES, MAX_FORM_FIELDS, form_fields
from apiward.core.errors import InvalidRequest
from tests.conftest import Org, examples

REFUSED = "refused"


def starlettes(raw: bytes) -> dict[str, str] | str:
    async def body() -> AsyncGenerator[bytes, None]:
        yield raw
        yield b""

    parser = FormParser(Headers({"content-type": "application/x-www-form-urlencoded"}), body())
    try:
        form = asyncio.run(parser.parse())
    except Exception:
        return REFUSED
    return {k: v for k, v in form.items() if isinstance(v, str)}


def ours(raw: bytes) -> dict[str, str] | str:
    try:
        return form_fields(raw)
    except InvalidRequest:
        return REFUSED


# Separators, escapes (valid, truncated, of UTF-8 and not), plus, and raw non-ASCII bytes.
BYTES = st.sampled_from([*b"&=+%aZ09c3F2; ", 0x00, 0xC3, 0xA9, 0xFF])


@settings(max_examples=examples(2000))
@given(st.lists(BYTES, max_size=48).map(bytes))
def test_any_body_gives_the_fields_starlette_gives(raw: bytes) -> None:
    assert ours(raw) == starlettes(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"&&",
        b"a",
        b"a=",
        b"=b",
        b"=",
        b"a=1&a=2",
        b"a=%zz",
        b"a=%C3%A9",
        b"a=\xe9",
        b"a&b=1",
        b"a==b",
        b"scope=keys%3Aread+keys%3Awrite",
        b"a=1;b=2",
    ],
)
def test_edge_bodies(raw: bytes) -> None:
    assert ours(raw) == starlettes(raw)


def test_the_bounds_are_starlettes() -> None:
    fields = b"&".join(b"f%d=1" % i for i in range(MAX_FORM_FIELDS))
    assert len(ours(fields)) == MAX_FORM_FIELDS == len(starlettes(fields))
    assert ours(fields + b"&one=more") == REFUSED == starlettes(fields + b"&one=more")
    largest = b"a=" + b"x" * (MAX_FORM_FIELD_BYTES - 1)
    assert ours(largest) == starlettes(largest) != REFUSED
    assert ours(largest + b"x") == REFUSED == starlettes(largest + b"x")


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        (None, 400),  # no declared type: no parameters, as Starlette's form() gives none
        ("text/plain", 400),
        ("application/x-www-form-urlencoded", 200),
        ("Application/X-WWW-Form-Urlencoded; charset=utf-8", 200),
    ],
)
def test_a_grant_is_read_from_a_body_declared_a_form_only(
    client: TestClient, org: Org, content_type: str | None, status: int
) -> None:
    form = b"grant_type=password&username=owner%40acme.test&password=correct+horse+battery"
    headers = {"Content-Type": content_type} if content_type else {}
    r = client.post("/v1/auth/token", content=form, headers=headers)
    assert r.status_code == status, r.text
    if status == 400:
        assert r.json()["error"] == "invalid_request"


def test_a_form_of_too_many_fields_is_an_invalid_request(client: TestClient) -> None:
    form = b"&".join(b"f%d=1" % i for i in range(MAX_FORM_FIELDS + 1))
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    r = client.post("/v1/auth/token", content=form, headers=headers)
    assert (r.status_code, r.json()["error"]) == (400, "invalid_request")
