"""What the bodies of the management API share: strict input, pages, the error body."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from apiward.core import times
from apiward.core.errors import InvalidInput
from apiward.core.models import Page

T = TypeVar("T")


def _checked(zoned: bool) -> AfterValidator:
    def check(value: datetime) -> datetime:
        try:
            return times.instant(value, zoned=zoned)
        except InvalidInput as exc:  # pydantic answers a ValueError as a 400
            raise ValueError(exc.message) from None

    return AfterValidator(check)


_RANGE = f"RFC 3339, {times.EARLIEST:%Y-%m-%dT%H:%M:%SZ} to {times.LATEST:%Y-%m-%dT%H:%M:%SZ}."
Instant = Annotated[
    datetime, _checked(False), Field(description=f"{_RANGE} Without an offset: UTC.")
]
"""A time a request gives (a query's ``since``...), as ``times.instant`` takes it."""
Expiry = Annotated[datetime, _checked(True), Field(description=f"{_RANGE} With an offset.")]
"""An expiry a request sets: a time with an offset, as ``times.instant`` takes it."""


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PageOut(BaseModel, Generic[T]):
    items: list[T]
    total: int
    page: int
    page_size: int


def page_of(page: Page[Any], items: list[T]) -> dict[str, object]:
    return {"items": items, "total": page.total, "page": page.page, "page_size": page.page_size}
