"""The store contract for the audit outbox, retention, webhooks and leak look-ups.

Like ``test_store_contract.py``: every test runs on SQLite and on PostgreSQL, through the
``Store[Transaction]`` and ``Transaction`` protocols only.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from apiward.core.ids import new_id
from apiward.core.models import (
    AuditEvent,
    AuditFilter,
    OAuthClient,
    Organisation,
    PageRequest,
    User,
)
from apiward.core.webhooks import WebhookDelivery, WebhookEndpoint
from apiward.services.ports import Store, Transaction

pytestmark = pytest.mark.anyio


def _now() -> datetime:
    return datetime.now(UTC)


async def _org(store: Store[Transaction]) -> tuple[Organisation, User]:
    org = Organisation(id=new_id("org"), name=new_id("name"), created_at=_now())
    user = User(new_id("usr"), org.id, f"{new_id('u')}@x.test", "U", None, _now())
    async with store.begin() as tx:
        await tx.insert_org(org)
        await tx.insert_user(user)
    return org, user


def _event(org_id: str, at: datetime | None = None, type: str = "key.created") -> AuditEvent:
    return AuditEvent(
        id=new_id("evt"), org_id=org_id, environment="live", type=type, created_at=at or _now()
    )


def _endpoint(org_id: str, user_id: str, **fields: object) -> WebhookEndpoint:
    now = _now()
    values: dict[str, object] = {
        "id": new_id("wh"),
        "org_id": org_id,
        "environment": "live",
        "url": "https://hooks.example.test/in",
        "events": ("key.created", "key.revoked"),
        "secret_sealed": "sealed",
        "created_by": user_id,
        "created_at": now,
        "updated_at": now,
    }
    values.update(fields)
    return WebhookEndpoint(**values)  # type: ignore[arg-type]


def _delivery(endpoint: WebhookEndpoint, event_id: str, **fields: object) -> WebhookDelivery:
    now = _now()
    values: dict[str, object] = {
        "id": new_id("whd"),
        "endpoint_id": endpoint.id,
        "org_id": endpoint.org_id,
        "event_id": event_id,
        "event_type": "key.created",
        "payload": json.dumps({"id": event_id}),
        "created_at": now,
        "next_attempt_at": now,
    }
    values.update(fields)
    return WebhookDelivery(**values)  # type: ignore[arg-type]


async def test_every_audit_event_is_queued_in_the_outbox_and_taken_once(
    store: Store[Transaction],
) -> None:
    org, _ = await _org(store)
    events = [_event(org.id, _now() + timedelta(seconds=i)) for i in range(5)]
    async with store.begin() as tx:
        for event in events:
            await tx.insert_audit(event)
    async with store.begin() as tx:
        first = await tx.take_outbox(3)
    async with store.begin() as tx:
        rest = await tx.take_outbox(10)
        assert await tx.take_outbox(10) == []
    assert [e.id for e in first + rest] == [e.id for e in events]
    assert first[0] == events[0]


async def test_an_event_whose_transaction_rolls_back_is_never_queued(
    store: Store[Transaction],
) -> None:
    org, _ = await _org(store)

    async def failing_change() -> None:
        async with store.begin() as tx:
            await tx.insert_audit(_event(org.id))
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        await failing_change()
    async with store.begin() as tx:
        assert await tx.take_outbox(10) == []


async def test_concurrent_takers_never_get_the_same_event(store: Store[Transaction]) -> None:
    org, _ = await _org(store)
    async with store.begin() as tx:
        for _ in range(40):
            await tx.insert_audit(_event(org.id))

    async def take() -> list[str]:
        taken: list[str] = []
        for _ in range(10):
            async with store.begin() as tx:
                taken += [e.id for e in await tx.take_outbox(3)]
        return taken

    batches = await asyncio.gather(*(take() for _ in range(4)))
    ids = [i for batch in batches for i in batch]
    assert len(ids) == len(set(ids)) == 40


async def test_prune_audit_deletes_only_older_events(store: Store[Transaction]) -> None:
    org, _ = await _org(store)
    old, new = _event(org.id, _now() - timedelta(days=10)), _event(org.id)
    async with store.begin() as tx:
        await tx.insert_audit(old)
        await tx.insert_audit(new)
    async with store.begin() as tx:
        assert await tx.prune_audit(_now() - timedelta(days=5)) == 1
    async with store.begin() as tx:
        page = await tx.list_audit(org.id, AuditFilter(), PageRequest(1, 10))
    assert [e.id for e in page.items] == [new.id]


async def test_webhooks_round_trip_list_update_and_stay_in_their_org(
    store: Store[Transaction],
) -> None:
    org, user = await _org(store)
    other, other_user = await _org(store)
    live = _endpoint(org.id, user.id)
    test = _endpoint(org.id, user.id, environment="test", description="t")
    theirs = _endpoint(other.id, other_user.id)
    async with store.begin() as tx:
        for endpoint in (live, test, theirs):
            await tx.insert_webhook(endpoint)
    async with store.begin() as tx:
        assert await tx.get_webhook(org.id, live.id) == live
        assert await tx.get_webhook(other.id, live.id) is None
        assert (await tx.list_webhooks(org.id, None, PageRequest(1, 10))).total == 2
        assert [e.id for e in (await tx.list_webhooks(org.id, "test", PageRequest())).items] == [
            test.id
        ]
        disabled = replace(live, disabled_at=_now(), url="https://new.example.test/")
        await tx.update_webhook(disabled)
        await tx.update_webhook(replace(theirs, org_id=org.id, url="https://stolen/"))
    async with store.begin() as tx:
        assert await tx.get_webhook(org.id, live.id) == disabled
        assert {e.id for e in await tx.active_webhooks()} == {test.id, theirs.id}
        unchanged = await tx.get_webhook(other.id, theirs.id)
        assert unchanged is not None and unchanged.url == theirs.url


async def test_deliveries_are_queued_once_per_endpoint_and_event(store: Store[Transaction]) -> None:
    org, user = await _org(store)
    endpoint = _endpoint(org.id, user.id)
    async with store.begin() as tx:
        await tx.insert_webhook(endpoint)
        assert await tx.insert_deliveries([_delivery(endpoint, "evt_1")]) == 1
        assert await tx.insert_deliveries([_delivery(endpoint, "evt_1")]) == 0
        assert await tx.insert_deliveries([_delivery(endpoint, "evt_2")]) == 1
    async with store.begin() as tx:
        assert (await tx.list_deliveries(org.id, endpoint.id, PageRequest())).total == 2
        assert (await tx.list_deliveries(new_id("org"), endpoint.id, PageRequest())).total == 0


async def test_claimed_deliveries_are_leased_then_finished(store: Store[Transaction]) -> None:
    org, user = await _org(store)
    endpoint = _endpoint(org.id, user.id)
    later = _now() + timedelta(hours=1)
    due, not_yet = _delivery(endpoint, "evt_due"), _delivery(endpoint, "evt_later")
    async with store.begin() as tx:
        await tx.insert_webhook(endpoint)
        await tx.insert_deliveries([due, replace(not_yet, next_attempt_at=later)])
    now = _now()
    async with store.begin() as tx:
        claimed = await tx.claim_deliveries(now, now + timedelta(seconds=30), 10)
    assert [d.id for d in claimed] == [due.id]
    async with store.begin() as tx:
        assert await tx.claim_deliveries(now, now + timedelta(seconds=30), 10) == []
    attempt = {"attempt": 1, "at": now.isoformat(), "status": 500, "error": "HTTP 500"}
    retry = replace(
        claimed[0],
        attempts=1,
        last_attempt_at=now,
        response_status=500,
        error="HTTP 500",
        next_attempt_at=now,
        attempt_log=(attempt,),
    )
    async with store.begin() as tx:
        await tx.finish_attempt(retry)
    async with store.begin() as tx:
        [again] = await tx.claim_deliveries(_now(), _now() + timedelta(seconds=30), 10)
    assert again.attempts == 1 and again.attempt_log == (attempt,)
    done = replace(again, status="succeeded", completed_at=_now(), next_attempt_at=None)
    async with store.begin() as tx:
        await tx.finish_attempt(done)
        assert await tx.claim_deliveries(_now(), _now(), 10) == []
    # A lease that ran out (a crashed process) makes a pending delivery claimable again.
    async with store.begin() as tx:
        [lost] = await tx.claim_deliveries(later, later, 10)
        assert lost.id == not_yet.id
    async with store.begin() as tx:
        assert [d.id for d in await tx.claim_deliveries(later, later, 10)] == [not_yet.id]


async def test_a_disabled_endpoints_deliveries_wait(store: Store[Transaction]) -> None:
    org, user = await _org(store)
    endpoint = _endpoint(org.id, user.id, disabled_at=_now())
    async with store.begin() as tx:
        await tx.insert_webhook(endpoint)
        await tx.insert_deliveries([_delivery(endpoint, "evt_x")])
    async with store.begin() as tx:
        assert await tx.claim_deliveries(_now(), _now(), 10) == []


async def test_pruning_keeps_pending_deliveries_and_deleting_an_endpoint_drops_them(
    store: Store[Transaction],
) -> None:
    org, user = await _org(store)
    endpoint = _endpoint(org.id, user.id)
    old = _now() - timedelta(days=40)
    async with store.begin() as tx:
        await tx.insert_webhook(endpoint)
        await tx.insert_deliveries(
            [
                _delivery(endpoint, "evt_old_done", created_at=old, status="succeeded"),
                _delivery(endpoint, "evt_old_pending", created_at=old),
                _delivery(endpoint, "evt_new_done", status="failed"),
            ]
        )
    async with store.begin() as tx:
        assert await tx.prune_deliveries(_now() - timedelta(days=30)) == 1
        assert await tx.delete_webhook(new_id("org"), endpoint.id) is False
    async with store.begin() as tx:
        assert (await tx.list_deliveries(org.id, endpoint.id, PageRequest())).total == 2
        assert await tx.delete_webhook(org.id, endpoint.id) is True
    async with store.begin() as tx:
        assert await tx.get_webhook(org.id, endpoint.id) is None
        assert (await tx.list_deliveries(org.id, endpoint.id, PageRequest())).total == 0


async def test_a_client_is_found_by_its_secret_digest(store: Store[Transaction]) -> None:
    org, user = await _org(store)
    client = OAuthClient(
        id=new_id("client"),
        org_id=org.id,
        environment="live",
        name="c",
        secret_digest="ab" * 32,
        secret_last4="wxyz",
        scopes=("keys:read",),
        created_by=user.id,
        created_at=_now(),
        updated_at=_now(),
    )
    async with store.begin() as tx:
        await tx.insert_client(client)
    async with store.begin() as tx:
        assert await tx.find_client_by_secret("ab" * 32) == client
        assert await tx.find_client_by_secret("cd" * 32) is None
