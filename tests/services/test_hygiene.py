"""Hygiene runs on a real store and SMTP server, moved by the injected clock: each notice
is an audit event (so a webhook), an email to the key's creator, and goes out once."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from apiward.adapters.runtime import Runtime, build
from apiward.core.errors import DisabledCredential
from apiward.core.limits import Credits, Refill
from apiward.core.models import ApiKey, AuditFilter, PageRequest, Principal, RequestContext
from apiward.services.keys import CreatedKey
from tests.conftest import FakeClock, fast_settings
from tests.mailbox import Mailbox, smtp_server

T = TypeVar("T")
DAY = 86_400.0
OWNER = "o@acme.test"


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with smtp_server() as box:
        yield box


def settings(database_url: str, mailbox: Mailbox, **overrides: Any) -> Any:
    return fast_settings(
        database_url=database_url,
        smtp_host="127.0.0.1",
        smtp_port=mailbox.port,
        smtp_security="none",
        **overrides,
    )


class World:
    def __init__(self, runtime: Runtime, owner: Principal, clock: FakeClock) -> None:
        self.runtime = runtime
        self.owner = owner
        self.clock = clock

    async def create(self, **fields: Any) -> CreatedKey:
        return await self.runtime.keys.create(
            self.owner, name=fields.pop("name", "ci"), scopes=["keys:read"], **fields
        )

    async def key(self, **fields: Any) -> ApiKey:
        return (await self.create(**fields)).key

    async def events(self, kind: str) -> list[dict[str, object]]:
        async with self.runtime.store.begin() as tx:
            page = await tx.list_audit(
                self.owner.org_id, AuditFilter(type=kind), PageRequest(1, 100)
            )
        return [{"target": e.target_id, **e.data} for e in page.items]

    async def run(self) -> Counter[str]:
        sent = await self.runtime.hygiene.run()
        await self.runtime.postbox.drain()
        return sent


def within(
    tmp_path: Path, mailbox: Mailbox, test: Callable[[World], Awaitable[T]], **overrides: Any
) -> T:
    async def main() -> T:
        clock = FakeClock()
        url = f"sqlite+aiosqlite:///{tmp_path / 'apiward.db'}"
        runtime = build(settings(url, mailbox, **overrides), clock=clock)
        await runtime.start(background=False)
        try:
            boot = await runtime.tenancy.bootstrap("Acme", OWNER, "correct horse battery")
            owner = await runtime.operators.principal(boot.org.id)
            return await test(World(runtime, owner, clock))
        finally:
            await runtime.stop()

    return asyncio.run(main())


def subjects(mailbox: Mailbox) -> list[str]:
    return [str(m["Subject"]) for m in mailbox.messages if m["To"] == OWNER]


def test_expiry_reminders_go_out_at_30_7_and_1_days_once_each(
    tmp_path: Path, mailbox: Mailbox
) -> None:
    async def test(w: World) -> None:
        hook = await w.runtime.webhooks.create(
            w.owner, url="http://127.0.0.1:9/hooks", events=["key.expiring"]
        )
        expires = w.clock.now() + timedelta(days=40)
        key = await w.key(expires_at=expires)
        assert await w.run() == Counter()
        for days_left, expected in ((30, 30), (29, None), (7, 7), (6.5, None), (1, 1)):
            w.clock.current = expires - timedelta(days=days_left)
            sent = await w.run()
            assert sent == (Counter({"key.expiring": 1}) if expected else Counter())
            assert await w.run() == Counter()  # a second run sends nothing again
        events = await w.events("key.expiring")
        assert sorted(e["days"] for e in events) == [1, 7, 30]  # type: ignore[type-var]
        assert {e["target"] for e in events} == {key.id}
        assert subjects(mailbox) == [f"API key ci expires in {d} day(s)" for d in (30, 7, 1)]
        # Each reminder is a webhook delivery to an endpoint subscribed to key.expiring.
        assert await w.runtime.webhooks.fan_out() == 3
        found = await w.runtime.webhooks.deliveries(w.owner, hook.endpoint.id, PageRequest())
        bodies = [json.loads(d.payload) for d in found.items]
        assert sorted((b["type"], b["data"]["days"]) for b in bodies) == [
            ("key.expiring", 1),
            ("key.expiring", 7),
            ("key.expiring", 30),
        ]
        assert {b["target"]["id"] for b in bodies} == {key.id}
        # Expired: nothing more.
        w.clock.current = expires + timedelta(days=1)
        assert await w.run() == Counter()

    within(tmp_path, mailbox, test)


def test_a_key_created_close_to_its_expiry_gets_the_nearest_reminder_only(
    tmp_path: Path, mailbox: Mailbox
) -> None:
    async def test(w: World) -> None:
        await w.key(expires_at=w.clock.now() + timedelta(days=5))
        assert await w.run() == Counter({"key.expiring": 1})
        assert [e["days"] for e in await w.events("key.expiring")] == [7]

    within(tmp_path, mailbox, test)


def test_an_unused_key_is_disabled_announced_and_refused(tmp_path: Path, mailbox: Mailbox) -> None:
    async def test(w: World) -> None:
        created = await w.create(name="idle")
        idle = created.key
        await w.runtime.auth.authenticate_key(created.plaintext, RequestContext())  # cached
        used = await w.key(name="busy")
        w.clock.advance(60 * DAY)
        async with w.runtime.store.begin() as tx:
            await tx.touch_keys([(used.id, w.clock.now(), "203.0.113.9")])
        w.clock.advance(31 * DAY)
        assert await w.run() == Counter({"key.disabled_unused": 1})
        assert await w.run() == Counter()
        got = await w.runtime.keys.get(w.owner, idle.id)
        assert got.disabled_at == w.clock.now()
        assert (await w.runtime.keys.get(w.owner, used.id)).disabled_at is None
        # Audited as its own event, with the key's name and the limit.
        [event] = await w.events("key.disabled_unused")
        assert event["target"] == idle.id and event["unused_days"] == 90
        assert subjects(mailbox) == ["Unused API key idle was disabled"]
        with pytest.raises(DisabledCredential):
            await w.runtime.auth.authenticate_key(created.plaintext, RequestContext())

        # Enabled again by a person: not disabled again for the same idleness.
        await w.runtime.keys.enable(w.owner, idle.id)
        w.clock.advance(DAY)
        assert await w.run() == Counter()

    within(tmp_path, mailbox, test, key_unused_disable_days=90)


def test_credit_thresholds_go_out_once_per_refill_period(tmp_path: Path, mailbox: Mailbox) -> None:
    refill = Refill(1000, "daily")

    async def spend_to(w: World, key: ApiKey, remaining: int) -> None:
        period = refill.period(w.clock.now())
        async with w.runtime.store.begin() as tx:
            await tx.set_key_credits(key.id, Credits(remaining, refill, period))

    async def test(w: World) -> None:
        key = await w.key(credits=Credits(1000, refill))
        await spend_to(w, key, 600)
        assert await w.run() == Counter()
        await spend_to(w, key, 450)
        assert await w.run() == Counter({"key.credits_low": 1})
        await spend_to(w, key, 400)
        assert await w.run() == Counter()  # still 50%: already announced
        await spend_to(w, key, 0)  # 80% skipped between runs: the highest goes out
        assert await w.run() == Counter({"key.credits_low": 1})
        percents = [e["threshold_percent"] for e in await w.events("key.credits_low")]
        assert sorted(percents) == [50, 100]  # type: ignore[type-var]
        # The next day the balance is refilled; its first 50% is news again.
        w.clock.advance(DAY)
        await spend_to(w, key, 500)
        assert await w.run() == Counter({"key.credits_low": 1})
        assert subjects(mailbox) == [
            f"API key ci has spent {p}% of its credits" for p in (50, 100, 50)
        ]

    within(tmp_path, mailbox, test)
