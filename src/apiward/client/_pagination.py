"""Walking apiward's paginated lists: ``{items, total, page, page_size}``, pages from 1.

``Pages`` holds the walk's state and reads each page without I/O; the clients'
``paginate`` methods fetch the pages, the sync one in a ``for`` loop, the async one in
an ``async for``.
"""

from __future__ import annotations

from typing import Any

import httpx

from apiward.client._errors import APIError, UnexpectedResponseError

__all__ = ["Pages"]

MAX_PAGE_SIZE = 100  # the server's ``page_size`` bound


class Pages:
    """Where a paginated walk stands: the next page's query, and whether it is over."""

    def __init__(self, params: httpx.QueryParams, page_size: int) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}.")
        self.base = params
        self.page = 1
        self.page_size = page_size
        self.seen = 0
        self.done = False

    def params(self) -> httpx.QueryParams:
        return self.base.merge({"page": self.page, "page_size": self.page_size})

    def read(self, response: httpx.Response) -> list[Any]:
        """The items of the page in ``response``; ``done`` is set after the last page."""
        if response.is_error:
            response.read()
            raise APIError.from_response(response)
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise UnexpectedResponseError(
                f"{response.request.method} {response.request.url.path} did not answer a "
                "paginated list: expected a JSON object {items, total, page, page_size}.",
                response=response,
            )
        self.seen += len(items)
        total = body.get("total")
        # The server's own page_size wins: it may cap what was asked for.
        size = body.get("page_size")
        size = size if isinstance(size, int) and size > 0 else self.page_size
        if isinstance(total, int):
            self.done = not items or self.seen >= total
        else:
            self.done = len(items) < size
        self.page += 1
        return items
