"""Refresh rotation under concurrency, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from apiward.adapters.runtime import Runtime, build
from apiward.core.errors import ApiwardError, InvalidGrant
from apiward.core.models import RequestContext
from tests.conftest import FakeClock, fast_settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def runtime(database_url: str, clock: FakeClock) -> AsyncIterator[Runtime]:
    rt = build(fast_settings(database_url=database_url), clock=clock)
    await rt.start(background=False)
    await rt.tenancy.bootstrap("Acme", "owner@acme.test", "correct horse battery")
    try:
        yield rt
    finally:
        await rt.stop()


async def test_fifty_concurrent_refreshes_get_one_pair(runtime: Runtime, clock: FakeClock) -> None:
    """50 refreshes of one token at once: no error, one new pair for all; a later replay
    outside the grace window revokes the family."""
    ctx = RequestContext(ip="127.0.0.1")
    first = await runtime.tokens.password_grant(
        "owner@acme.test",
        "correct horse battery",
        scope=None,
        org_id=None,
        environment=None,
        context=ctx,
    )
    assert first.refresh_token is not None

    async def attempt() -> object:
        try:
            return await runtime.tokens.refresh(first.refresh_token or "", scope=None, context=ctx)
        except ApiwardError as exc:
            return exc

    answers = await asyncio.gather(*(attempt() for _ in range(50)))
    errors = [a for a in answers if isinstance(a, Exception)]
    assert errors == []
    pairs = {(a.access_token, a.refresh_token) for a in answers}  # type: ignore[attr-defined]
    assert len(pairs) == 1
    ((_access, refresh),) = pairs
    assert refresh != first.refresh_token

    clock.advance(runtime.settings.refresh_grace_seconds + 1)
    with pytest.raises(InvalidGrant, match="already used"):
        await runtime.tokens.refresh(first.refresh_token, scope=None, context=ctx)
    with pytest.raises(InvalidGrant, match="revoked"):
        await runtime.tokens.refresh(refresh or "", scope=None, context=ctx)
