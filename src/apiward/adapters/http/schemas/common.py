"""What the bodies of the management API share: strict input, pages, the error body."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from apiward.core.models import Page

T = TypeVar("T")


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PageOut(BaseModel, Generic[T]):
    items: list[T]
    total: int
    page: int
    page_size: int


def page_of(page: Page[Any], items: list[T]) -> dict[str, object]:
    return {"items": items, "total": page.total, "page": page.page, "page_size": page.page_size}
