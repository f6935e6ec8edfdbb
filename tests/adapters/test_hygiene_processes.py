"""Two server runtimes on one database run their hygiene jobs at the same moment: every
notice goes out once (one audit event, one outbox row for the webhooks, one email)."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from datetime import timedelta

from apiward.adapters.runtime import build
from apiward.core.limits import Credits, Refill
from apiward.core.models import AuditFilter, PageRequest
from tests.conftest import FakeClock, fast_settings
from tests.mailbox import smtp_server

EACH = 15
OWNER = "o@acme.test"
KEY_NAME = re.compile(r"\b(?:idle|expiring|metered)-\d+\b")
KINDS = ("key.disabled_unused", "key.expiring", "key.credits_low")


def test_two_processes_never_send_the_same_notice_twice(database_url: str) -> None:
    with smtp_server() as mailbox:

        async def main() -> None:
            clock = FakeClock()
            settings = fast_settings(
                database_url=database_url,
                smtp_host="127.0.0.1",
                smtp_port=mailbox.port,
                smtp_security="none",
                key_unused_disable_days=90,
            )
            a, b = build(settings, clock=clock), build(settings, clock=clock)
            await a.start(background=False)
            await b.start(background=False)
            try:
                boot = await a.tenancy.bootstrap("Acme", OWNER, "correct horse battery")
                owner = await a.operators.principal(boot.org.id)

                async def make(name: str, **fields: object) -> str:
                    created = await a.keys.create(
                        owner,
                        name=name,
                        scopes=["keys:read"],
                        **fields,  # type: ignore[arg-type]
                    )
                    return created.key.id

                for i in range(EACH):
                    await make(f"idle-{i}")
                clock.advance(100 * 86_400)
                now = clock.now()
                refill = Refill(100, "monthly")
                for i in range(EACH):
                    await make(f"expiring-{i}", expires_at=now + timedelta(days=3))
                    key_id = await make(f"metered-{i}", credits=Credits(100, refill))
                    async with a.store.begin() as tx:
                        await tx.set_key_credits(key_id, Credits(10, refill, refill.period(now)))

                first = await asyncio.gather(a.hygiene.run(), b.hygiene.run())
                assert first[0] + first[1] == Counter(dict.fromkeys(KINDS, EACH))
                again = await asyncio.gather(a.hygiene.run(), b.hygiene.run())
                assert not again[0] and not again[1]

                async with a.store.begin() as tx:
                    events = await tx.list_audit(boot.org.id, AuditFilter(), PageRequest(1, 500))
                    outbox = await tx.take_outbox(10_000)
                audited = Counter(e.type for e in events.items if e.type in KINDS)
                queued = Counter(e.type for e in outbox if e.type in KINDS)
                assert audited == queued == Counter(dict.fromkeys(KINDS, EACH))
                per_key = Counter((e.type, e.target_id) for e in outbox if e.type in KINDS)
                assert set(per_key.values()) == {1}

                await a.postbox.drain()
                await b.postbox.drain()
                mails = Counter(
                    found[0]
                    for m in mailbox.messages
                    if m["To"] == OWNER and (found := KEY_NAME.findall(str(m["Subject"])))
                )
                assert len(mails) == 3 * EACH  # one email per notice, each key once
                assert set(mails.values()) == {1}
            finally:
                await a.stop()
                await b.stop()

        asyncio.run(main())
