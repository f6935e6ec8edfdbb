"""Refresh rotation under concurrency, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from apiward.adapters.runtime import Runtime, build
from apiward.core.errors import ApiwardError, InvalidGrant
from apiward.core.models import AuditFilter, PageRequest, RequestContext
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
    # The successor is unused: a retry whose answer was lost rotates the family again.
    retried = await runtime.tokens.refresh(first.refresh_token, scope=None, context=ctx)
    assert retried.refresh_token not in (None, refresh)
    newest = await runtime.tokens.refresh(retried.refresh_token or "", scope=None, context=ctx)
    # Once its successor was used, the replay is reuse: the whole family is revoked.
    with pytest.raises(InvalidGrant, match="already used"):
        await runtime.tokens.refresh(first.refresh_token, scope=None, context=ctx)
    with pytest.raises(InvalidGrant, match="revoked"):
        await runtime.tokens.refresh(newest.refresh_token or "", scope=None, context=ctx)


async def _signed_in(runtime: Runtime) -> str:
    answer = await runtime.tokens.password_grant(
        "owner@acme.test",
        "correct horse battery",
        scope=None,
        org_id=None,
        environment=None,
        context=RequestContext(ip="127.0.0.1"),
    )
    assert answer.refresh_token is not None
    return answer.refresh_token


async def test_a_refresh_whose_answer_was_lost_is_retried_until_its_successor_is_used(
    runtime: Runtime, clock: FakeClock
) -> None:
    """A client whose refresh was committed but never answered (a crash, a dropped
    connection) retries after the grace window with the token it still holds: the
    family is rotated again for it, not logged out, and the successor it never received
    becomes a tripwire."""
    ctx = RequestContext(ip="127.0.0.1")
    first = await _signed_in(runtime)
    lost = await runtime.tokens.refresh(first, scope=None, context=ctx)  # never received
    clock.advance(60)
    retried = await runtime.tokens.refresh(first, scope=None, context=ctx)
    assert retried.refresh_token not in (None, lost.refresh_token)
    assert retried.access_token != lost.access_token
    events = await runtime.audit.list(
        await runtime.operators.principal((await runtime.tenancy.list_orgs())[0].id),
        AuditFilter(type="refresh_token.retried"),
        PageRequest(),
    )
    assert len(events.items) == 1
    # The family goes on from the retried token.
    newer = await runtime.tokens.refresh(retried.refresh_token or "", scope=None, context=ctx)
    # Whoever holds the successor handed out before (here: nobody legitimate) sets off
    # the tripwire: the family is revoked.
    with pytest.raises(InvalidGrant, match="already used"):
        await runtime.tokens.refresh(lost.refresh_token or "", scope=None, context=ctx)
    with pytest.raises(InvalidGrant, match="revoked"):
        await runtime.tokens.refresh(newer.refresh_token or "", scope=None, context=ctx)


async def test_a_thief_replaying_a_used_token_is_caught_when_the_client_refreshes(
    runtime: Runtime, clock: FakeClock
) -> None:
    """The client rotated normally and holds an unused successor; a thief replays the
    used token within the retry window and gets a live token, but the client's next
    refresh presents the tripwire: reuse is detected and the thief's token dies."""
    ctx = RequestContext(ip="127.0.0.1")
    stolen = await _signed_in(runtime)
    client = await runtime.tokens.refresh(stolen, scope=None, context=ctx)
    clock.advance(runtime.settings.refresh_grace_seconds + 60)
    thief = await runtime.tokens.refresh(stolen, scope=None, context=ctx)
    assert thief.refresh_token != client.refresh_token
    with pytest.raises(InvalidGrant, match="already used"):
        await runtime.tokens.refresh(client.refresh_token or "", scope=None, context=ctx)
    with pytest.raises(InvalidGrant, match="revoked"):
        await runtime.tokens.refresh(thief.refresh_token or "", scope=None, context=ctx)
    org = (await runtime.tenancy.list_orgs())[0].id
    found = await runtime.audit.list(
        await runtime.operators.principal(org),
        AuditFilter(type="refresh_token.reuse_detected"),
        PageRequest(),
    )
    assert len(found.items) == 1


async def test_a_thief_and_a_client_alternating_are_caught_at_the_first_overlap(
    runtime: Runtime, clock: FakeClock
) -> None:
    """A thief who stole a used token and refreshes from it while the client also
    refreshes never gets two lines of one family: the second presentation of anything
    handed out before revokes the family."""
    ctx = RequestContext(ip="127.0.0.1")
    stolen = await _signed_in(runtime)
    held = (await runtime.tokens.refresh(stolen, scope=None, context=ctx)).refresh_token or ""
    clock.advance(runtime.settings.refresh_grace_seconds + 1)
    await runtime.tokens.refresh(stolen, scope=None, context=ctx)  # the thief
    clock.advance(60)
    with pytest.raises(InvalidGrant):
        await runtime.tokens.refresh(held, scope=None, context=ctx)  # the client: caught
    clock.advance(60)
    with pytest.raises(InvalidGrant):
        await runtime.tokens.refresh(stolen, scope=None, context=ctx)


async def test_past_the_retry_window_a_used_token_is_reuse(
    runtime: Runtime, clock: FakeClock
) -> None:
    ctx = RequestContext(ip="127.0.0.1")
    first = await _signed_in(runtime)
    lost = await runtime.tokens.refresh(first, scope=None, context=ctx)
    clock.advance(runtime.settings.refresh_retry_seconds + 1)
    with pytest.raises(InvalidGrant, match="already used"):
        await runtime.tokens.refresh(first, scope=None, context=ctx)
    with pytest.raises(InvalidGrant, match="revoked"):
        await runtime.tokens.refresh(lost.refresh_token or "", scope=None, context=ctx)


async def test_a_revoked_successor_is_never_handed_out_again(
    runtime: Runtime, clock: FakeClock
) -> None:
    ctx = RequestContext(ip="127.0.0.1")
    first = await _signed_in(runtime)
    lost = await runtime.tokens.refresh(first, scope=None, context=ctx)
    await runtime.tokens.revoke(lost.refresh_token or "", "refresh_token", ctx)
    clock.advance(600)
    with pytest.raises(InvalidGrant):
        await runtime.tokens.refresh(first, scope=None, context=ctx)
