"""Two server runtimes on one database count the same keys' networks and flush at the
same moment: the counts add up, the overflow sketches merge, and a shared key is
announced (key.anomaly) once."""

from __future__ import annotations

import asyncio
from collections import Counter

from apiward.adapters.runtime import Runtime, build
from apiward.core.addresses import EXACT_CAP
from apiward.core.models import AuditFilter, PageRequest, RequestContext
from tests.conftest import FakeClock, fast_settings

SHARED = EXACT_CAP + 36
"""Networks of the shared key: past the exact cap in each process."""


async def requests(runtime: Runtime, key: str, ips: list[str]) -> None:
    for ip in ips:
        await runtime.auth.authenticate(f"Bearer {key}", RequestContext(ip=ip))


def test_two_processes_merge_their_counts_and_announce_a_shared_key_once(
    database_url: str,
) -> None:
    async def main() -> None:
        clock = FakeClock()
        settings = fast_settings(database_url=database_url, key_shared_networks=40)
        a, b = build(settings, clock=clock), build(settings, clock=clock)
        await a.start(background=False)
        await b.start(background=False)
        try:
            boot = await a.tenancy.bootstrap("Acme", "o@acme.test", "correct horse battery")
            owner = await a.operators.principal(boot.org.id)
            shared = await a.keys.create(owner, name="shared", scopes=["keys:read"])
            calm = await a.keys.create(owner, name="calm", scopes=["keys:read"])
            spread = [f"10.{i // 256}.{i % 256}.1" for i in range(SHARED)]
            for _ in range(3):  # each process sees every network: they overlap wholly
                await asyncio.gather(
                    requests(a, shared.plaintext, spread),
                    requests(b, shared.plaintext, list(reversed(spread))),
                    requests(a, calm.plaintext, ["192.0.2.1", "192.0.2.2"]),
                    requests(b, calm.plaintext, ["192.0.2.3", "198.51.100.1"]),
                )
                await asyncio.gather(a.flush_addresses(), b.flush_addresses())
            async with a.store.begin() as tx:
                uses = await tx.address_uses(boot.org.id, "live", calm.key.id, 0, 10**6)
                assert {(u.prefix, u.count) for u in uses} == {
                    ("192.0.2.0/24", 9),
                    ("198.51.100.0/24", 3),
                }
                kept = await tx.address_uses(boot.org.id, "live", shared.key.id, 0, 10**6)
                (over,) = await tx.address_overflows(boot.org.id, "live", shared.key.id, 0, 10**6)
            assert sum(u.count for u in kept) + over.requests == 2 * 3 * SHARED
            assert len(kept) <= 2 * EXACT_CAP
            days = await a.addresses.of_key(owner, shared.key.id, None)
            (day,) = days[2]
            assert not day.exact
            assert abs(day.networks - SHARED) <= 0.15 * SHARED  # the two processes' union

            sent = await asyncio.gather(a.hygiene.run(), b.hygiene.run())
            assert sent[0]["key.anomaly"] + sent[1]["key.anomaly"] == 1
            again = await asyncio.gather(a.hygiene.run(), b.hygiene.run())
            assert not again[0]["key.anomaly"] and not again[1]["key.anomaly"]
            async with a.store.begin() as tx:
                events = await tx.list_audit(boot.org.id, AuditFilter(), PageRequest(1, 500))
                outbox = await tx.take_outbox(10_000)
            audited = Counter(e.target_id for e in events.items if e.type == "key.anomaly")
            queued = Counter(e.target_id for e in outbox if e.type == "key.anomaly")
            assert audited == queued == Counter({shared.key.id: 1})
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(main())
