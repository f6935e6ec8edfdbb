"""The token endpoint's form bodies are read as Starlette's form parser reads them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers
from starlette.formparsers import FormParser

from apiward.adapters.http.routes.oauth import MAX_FORM_FIELD_BYTES, MAX_FORM_FIELDS, form_fields
from apiward.core.errors import InvalidRequest
from tests.conftest import examples

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
