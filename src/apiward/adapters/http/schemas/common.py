"""What the bodies of the management API share: strict input, pages, the error body."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from apiward.core import owners, times
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


ExternalId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=owners.MAX_EXTERNAL_ID,
        description="Your own id of the customer or account this credential is for: 1 to "
        f"{owners.MAX_EXTERNAL_ID} visible ASCII characters (no spaces). Searchable.",
        examples=["cus_4QFJOjw2pOmAGJ"],
        json_schema_extra={"pattern": "^[!-~]+$"},  # documented; checked by core.owners
    ),
]
"""A credential's ``external_id`` (checked by ``apiward.core.owners``, which says why)."""
_META_VALUES = {"type": ["string", "number", "boolean", "null"]}
Meta = Annotated[
    dict[str, Any],
    Field(
        description=f"Your own data about this credential: a flat JSON object of at most "
        f"{owners.MAX_META_PROPERTIES} properties (names of 1 to {owners.MAX_META_NAME} "
        "characters), whose values are strings, numbers, booleans or null, at most "
        f"{owners.MAX_META_BYTES} bytes as compact JSON.",
        examples=[{"plan": "pro", "region": "eu"}],
        json_schema_extra={
            "maxProperties": owners.MAX_META_PROPERTIES,
            "additionalProperties": _META_VALUES,
        },
    ),
]
"""A credential's ``meta`` (checked by ``apiward.core.owners``: every bound is a 400
naming it, from the service, so the API, the CLI and the dashboard refuse alike)."""


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def set_meta(body: BaseModel) -> dict[str, Any] | None:
    """The ``meta`` an update sets: the object sent, ``{}`` for ``null``, None (no change)
    when the field is absent."""
    meta: dict[str, Any] | None = getattr(body, "meta", None)
    if meta is None and "meta" in body.model_fields_set:
        return {}
    return meta


class PageOut(BaseModel, Generic[T]):
    items: list[T]
    total: int
    page: int
    page_size: int


def page_of(page: Page[Any], items: list[T]) -> dict[str, object]:
    return {"items": items, "total": page.total, "page": page.page, "page_size": page.page_size}
