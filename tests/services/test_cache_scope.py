"""The verification cache under change and under a flood: a change to one organisation
drops that organisation's records only, in this process and (through the invalidation
log) in another one on the same database; unknown keys and client ids never evict a
verified record. Two runtimes on one database stand for two server processes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from apiward.adapters.runtime import Runtime, build
from apiward.core.errors import (
    DisabledCredential,
    InvalidClient,
    InvalidCredential,
    RateLimited,
    RevokedCredential,
)
from apiward.core.keys import digest
from apiward.core.models import RequestContext
from apiward.core.readings import Histogram, Reading
from apiward.services.clients import client_cache_key
from tests.conftest import FakeClock, fast_settings

pytestmark = pytest.mark.anyio

CTX = RequestContext(ip="203.0.113.7")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Tenant:
    org_id: str
    key: str
    key_id: str


async def tenant(runtime: Runtime, name: str, email: str, *, another: bool) -> Tenant:
    boot = await runtime.tenancy.bootstrap(
        name, email, "correct horse battery", allow_another=another
    )
    owner = await runtime.operators.principal(boot.org.id)
    created = await runtime.keys.create(owner, name="k", scopes=["*", "owner:*"])
    return Tenant(boot.org.id, created.plaintext, created.key.id)


@pytest.fixture
async def pair(database_url: str, clock: FakeClock) -> AsyncIterator[tuple[Runtime, Runtime]]:
    """Two runtimes ("processes" A and B) on one database, with one clock."""
    a = build(fast_settings(database_url=database_url), clock=clock)
    await a.start(background=False)
    b = build(fast_settings(database_url=database_url), clock=clock)
    try:
        await b.start(background=False)
        try:
            yield a, b
        finally:
            await b.stop()
    finally:
        await a.stop()


async def test_a_change_to_one_org_leaves_the_others_warm(
    pair: tuple[Runtime, Runtime],
) -> None:
    a, b = pair
    acme = await tenant(a, "Acme", "o@acme.test", another=False)
    globex = await tenant(a, "Globex", "o@globex.test", another=True)
    await b.invalidations.poll()  # B has seen everything written so far
    for runtime in (a, b):
        for org in (acme, globex):
            await runtime.auth.authenticate_key(org.key, CTX)  # warm
    owner = await a.operators.principal(acme.org_id)
    await a.tenancy.create_space(owner, "Second")  # a change to Acme only
    assert await b.invalidations.poll() == 1
    for runtime in (a, b):
        misses = runtime.cache.misses
        await runtime.auth.authenticate_key(globex.key, CTX)
        assert runtime.cache.misses == misses, "Globex's record was dropped by Acme's change"
        await runtime.auth.authenticate_key(acme.key, CTX)
        assert runtime.cache.misses > misses, "Acme's record survived Acme's change"
    assert digest(globex.key) in b.cache and digest(acme.key) in b.cache


async def test_a_revocation_in_one_process_is_refused_by_the_other(
    pair: tuple[Runtime, Runtime],
) -> None:
    a, b = pair
    acme = await tenant(a, "Acme", "o@acme.test", another=False)
    globex = await tenant(a, "Globex", "o@globex.test", another=True)
    owner = await a.operators.principal(acme.org_id)
    ann = await a.tenancy.create_user(owner, "ann@acme.test", role="admin")
    ann_key = (await a.keys.create(owner, name="ann", scopes=["*"], user_id=ann.id)).plaintext
    await b.invalidations.poll()
    for key in (acme.key, ann_key, globex.key):
        await b.auth.authenticate_key(key, CTX)  # B's cache is warm

    await a.keys.revoke(owner, acme.key_id)
    await b.invalidations.poll()
    with pytest.raises(RevokedCredential):
        await b.auth.authenticate_key(acme.key, CTX)

    # An org-wide change (the user a key acts as disabled) reaches B's cached key.
    await a.tenancy.update_user(owner, ann.id, name=None, disabled=True)
    await b.invalidations.poll()
    with pytest.raises(DisabledCredential):
        await b.auth.authenticate_key(ann_key, CTX)
    misses = b.cache.misses
    await b.auth.authenticate_key(globex.key, CTX)
    assert b.cache.misses == misses


async def test_unknown_keys_and_clients_never_evict_a_verified_key(
    database_url: str, clock: FakeClock
) -> None:
    settings = fast_settings(
        database_url=database_url,
        cache_max_entries=20,
        cache_max_unknown=50,
        auth_failure_limit="100000/minute",
    )
    runtime = build(settings, clock=clock)
    await runtime.start(background=False)
    try:
        acme = await tenant(runtime, "Acme", "o@acme.test", another=False)
        await runtime.auth.authenticate_key(acme.key, CTX)
        for n in range(1_000):
            with pytest.raises(InvalidClient):
                await runtime.tokens.client_credentials(
                    f"client_unknown{n}", "awcs_live_wrong", scope=None, context=CTX
                )
            with pytest.raises(InvalidCredential):
                await runtime.auth.authenticate_key(settings.key_format.generate("live"), CTX)
        assert runtime.cache.evictions == 0
        assert digest(acme.key) in runtime.cache
        assert client_cache_key("client_unknown999") in runtime.cache
        assert client_cache_key("client_unknown0") not in runtime.cache  # recycled
        misses = runtime.cache.misses
        await runtime.auth.authenticate_key(acme.key, CTX)
        assert runtime.cache.misses == misses
        unknown = {r.name: r.samples[0][1] for r in runtime.cache.readings()}
        assert unknown["cache_unknown_entries"] == 50
    finally:
        await runtime.stop()


async def test_failed_client_authentications_spend_the_failure_budget(
    database_url: str, clock: FakeClock
) -> None:
    runtime = build(
        fast_settings(database_url=database_url, auth_failure_limit="5/hour"), clock=clock
    )
    await runtime.start(background=False)
    try:
        outcomes: list[str] = []
        for n in range(2_500):
            try:
                await runtime.tokens.client_credentials(
                    f"client_bogus{n}", "awcs_live_wrong", scope=None, context=CTX
                )
            except InvalidClient:
                outcomes.append("401")
            except RateLimited:
                outcomes.append("429")
        assert outcomes.count("401") == 5
        assert outcomes.count("429") == 2_495
        # Another address has its own budget.
        with pytest.raises(InvalidClient):
            await runtime.tokens.client_credentials(
                "client_bogus", "awcs_live_wrong", scope=None, context=RequestContext(ip="::1")
            )
    finally:
        await runtime.stop()


async def test_each_process_measures_how_long_a_change_took_to_reach_it(
    pair: tuple[Runtime, Runtime], clock: FakeClock
) -> None:
    """The delay histogram counts, per process, from the change's transaction to the
    poll that applied it there: by the injected clock, to the bucket."""
    a, b = pair
    acme = await tenant(a, "Acme", "o@acme.test", another=False)
    await b.invalidations.poll()
    owner = await a.operators.principal(acme.org_id)
    before = b.invalidations.delays.count
    await a.keys.disable(owner, acme.key_id)
    clock.advance(0.3)
    assert await b.invalidations.poll() == 1
    delays = b.invalidations.delays
    assert delays.count == before + 1
    assert delays.total == pytest.approx(0.3)
    (reading,) = b.invalidations.readings()
    cumulative = {bound: n for (bound,), n in reading.samples}
    assert cumulative["0.25"] == before and cumulative["0.5"] == before + 1
    assert cumulative["+Inf"] == delays.count


def test_a_histogram_counts_a_value_on_a_bound_in_that_bound() -> None:
    histogram = Histogram((0.1, 1.0))
    for value in (0.0, 0.1, 0.10001, 1.0, 7.0):
        histogram.observe(value)
    assert histogram.counts == [2, 2, 1]
    assert Reading.histogram("h", "help", histogram).samples == (
        (("0.1",), 2.0),
        (("1.0",), 4.0),
        (("+Inf",), 5.0),
    )
