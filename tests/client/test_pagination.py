"""``paginate`` walks ``{items, total, page, page_size}`` lists page by page."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from apiward.client import NotFoundError, RateLimitedError, RetryPolicy, UnexpectedResponseError
from apiward.client.testing import FakeApiward
from tests.client.conftest import THINGS, MakeAsyncClient, MakeClient


def pages_asked(fake: FakeApiward, path: str = "/v1/things") -> list[dict[str, str]]:
    return [dict(r.url.params) for r in fake.requests if r.url.path == path]


@pytest.mark.parametrize(("page_size", "requests"), [(10, 5), (45, 1), (100, 1), (1, 45)])
def test_paginate_yields_every_item_once_in_order(
    make_client: MakeClient, fake: FakeApiward, page_size: int, requests: int
) -> None:
    """Items come across pages in order; requests stop when ``total`` is reached."""
    items = list(make_client().paginate("/v1/things", page_size=page_size))
    assert items == THINGS
    assert len(pages_asked(fake)) == requests


@pytest.mark.anyio
async def test_async_paginate_yields_every_item_once_in_order(
    make_async_client: MakeAsyncClient, fake: FakeApiward
) -> None:
    """``async for`` over ``AsyncClient.paginate`` walks the same pages."""
    client = make_async_client()
    items = [item async for item in client.paginate("/v1/things", page_size=20)]
    assert items == THINGS
    assert [p["page"] for p in pages_asked(fake)] == ["1", "2", "3"]


def test_paginate_keeps_the_callers_query_and_sets_page_and_size(
    make_client: MakeClient, fake: FakeApiward
) -> None:
    """``params`` are sent on every page, next to ``page`` and ``page_size``."""
    list(make_client().paginate("/v1/things", params={"status": "active"}, page_size=30))
    assert pages_asked(fake) == [
        {"status": "active", "page": "1", "page_size": "30"},
        {"status": "active", "page": "2", "page_size": "30"},
    ]


def test_paginate_of_an_empty_list_makes_one_request(
    make_client: MakeClient, fake: FakeApiward
) -> None:
    """``total: 0`` ends the walk after the first page."""
    fake.add_collection("/v1/empty", [], scope="things:read")
    assert list(make_client().paginate("/v1/empty")) == []
    assert len(pages_asked(fake, "/v1/empty")) == 1


def test_pages_without_total_end_on_a_short_page(
    make_client: MakeClient, fake: FakeApiward
) -> None:
    """Without ``total``, a page shorter than ``page_size`` is the last one."""
    data = list(range(25))

    def handler(request: httpx.Request) -> httpx.Response:
        page, size = int(request.url.params["page"]), int(request.url.params["page_size"])
        return httpx.Response(200, json={"items": data[(page - 1) * size : page * size]})

    fake.add_route("GET", "/v1/untotalled", handler)
    assert list(make_client().paginate("/v1/untotalled", page_size=10)) == data
    assert len(pages_asked(fake, "/v1/untotalled")) == 3


def test_server_page_size_cap_is_followed(make_client: MakeClient, fake: FakeApiward) -> None:
    """A server answering fewer items than asked (its own cap) is not taken as the end."""
    data = list(range(12))

    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        return httpx.Response(200, json={"items": data[(page - 1) * 5 : page * 5], "page_size": 5})

    fake.add_route("GET", "/v1/capped", handler)
    assert list(make_client().paginate("/v1/capped", page_size=50)) == data


def test_an_error_page_is_raised(make_client: MakeClient, fake: FakeApiward) -> None:
    """A failing page raises its error, even with ``raise_for_status=False``."""
    client = make_client(raise_for_status=False, retry=RetryPolicy(max_attempts=1))
    walk = client.paginate("/v1/things", page_size=20)
    assert next(walk) == THINGS[0]
    fake.rate_limit(retry_after=5)
    with pytest.raises(RateLimitedError):
        list(walk)
    with pytest.raises(NotFoundError):
        list(client.paginate("/v1/nothing-here"))


@pytest.mark.parametrize("answer", [[1, 2], {"data": []}, {"items": "many"}, "text"])
def test_a_body_that_is_not_a_page_is_unexpected(
    make_client: MakeClient, fake: FakeApiward, answer: Any
) -> None:
    """Paginating something that is not a list says so instead of looping."""

    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(answer, str):
            return httpx.Response(200, text=answer)
        return httpx.Response(200, json=answer)

    fake.add_route("GET", "/v1/single", handler)
    with pytest.raises(UnexpectedResponseError, match="did not answer a paginated list"):
        list(make_client().paginate("/v1/single"))


@pytest.mark.parametrize("page_size", [0, 101, -1])
def test_page_size_out_of_bounds_fails_when_called(make_client: MakeClient, page_size: int) -> None:
    """The 1..100 bound is checked when ``paginate`` is called, not at the first item."""
    with pytest.raises(ValueError, match="between 1 and 100"):
        make_client().paginate("/v1/things", page_size=page_size)
