"""An expiry given to the services directly (apiward embedded, the CLI) is held to the
same range as one given over HTTP (README, Times): out of it, InvalidInput, not an
OverflowError from the store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from apiward.core.errors import InvalidInput
from tests.conftest import Org

MOST = timedelta(hours=23, minutes=59)


@pytest.mark.parametrize(
    "expires_at",
    [
        datetime.max.replace(tzinfo=timezone(-MOST)),
        datetime.max.replace(tzinfo=UTC),
        datetime(9000, 1, 1, 0, 1, tzinfo=UTC),
    ],
)
def test_an_expiry_out_of_range_is_invalid_input(org: Org, expires_at: datetime) -> None:
    runtime = org.runtime

    async def attempt() -> list[str]:
        principal = await runtime.operators.principal(org.id)
        refused = []
        for create in (runtime.keys.create, runtime.clients.create):
            try:
                await create(principal, name="x", scopes=["keys:read"], expires_at=expires_at)
            except InvalidInput as exc:
                refused.append(exc.message)
        key = await runtime.keys.create(principal, name="y", scopes=["keys:read"])
        try:
            await runtime.keys.update(principal, key.key.id, expires_at=expires_at)
        except InvalidInput as exc:
            refused.append(exc.message)
        return refused

    refused = org.client.portal.call(attempt)  # type: ignore[union-attr]
    assert len(refused) == 3
    assert all("between 1970-01-01T00:00:00Z and 9000-01-01T00:00:00Z" in m for m in refused)
