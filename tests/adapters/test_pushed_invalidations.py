"""With Redis, invalidations are pushed: a revocation committed by one runtime reaches
another's warm cache through pub/sub, with the log's poll an hour away; when the
subscription is lost the poll runs fast again, and the push comes back after it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from apiward.adapters.http.routes.root import readyz
from apiward.adapters.pubsub import CHANNEL, Publisher, Subscription, decode, encode
from apiward.adapters.runtime import Runtime, build
from apiward.core.errors import ApiwardError
from apiward.core.models import Invalidation, RequestContext
from apiward.services.keys import CreatedKey
from tests.adapters.limiter.conftest import start_private_redis
from tests.conftest import fast_settings, migrated_sqlite, require_postgres
from tests.redis_sentinel import SentinelGroup, private_sentinel_group  # noqa: F401 (a fixture)
from tests.redis_topologies import RedisClusterServers, running_cluster

pytestmark = [pytest.mark.anyio, pytest.mark.redis]
CTX = RequestContext(ip="127.0.0.1")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def postgres_url() -> str:
    return require_postgres()


async def until(condition: Callable[[], object], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.005)


@asynccontextmanager
async def two_runtimes(
    database_url: str, redis_url: str, poll: float, **extra: object
) -> AsyncIterator[tuple[Runtime, Runtime]]:
    """Two runtimes (two processes' parts) on one store and one Redis, both subscribed."""
    settings = fast_settings(
        database_url=database_url,
        redis_url=redis_url,
        invalidation_poll_seconds=poll,
        invalidation_backstop_seconds=3600,
        **extra,
    )
    a, b = build(settings), build(settings)
    await a.start()
    await b.start()
    try:
        await until(lambda: all(r.subscription and r.subscription.connected for r in (a, b)))
        yield a, b
    finally:
        await b.stop()
        await a.stop()


async def readiness(runtime: Runtime) -> dict[str, str]:
    """The checks ``/readyz`` answers with on ``runtime``."""
    checks: dict[str, str] = json.loads(bytes((await readyz(runtime)).body))["checks"]
    return checks


async def new_key(runtime: Runtime, name: str) -> tuple[CreatedKey, str]:
    boot = await runtime.tenancy.bootstrap(name, f"o@{name}.test", "correct horse battery")
    owner = await runtime.operators.principal(boot.org.id)
    return await runtime.keys.create(owner, name=name, scopes=["keys:read"]), boot.org.id


async def revoke(runtime: Runtime, org_id: str, key_id: str) -> None:
    await runtime.keys.revoke(await runtime.operators.principal(org_id), key_id)


@pytest.mark.postgres
async def test_a_revocation_is_pushed_to_another_runtime(tmp_path: Path, postgres_url: str) -> None:
    """B refuses a key A revoked once A's message arrives, the poll being an hour away
    and PostgreSQL's notifications not waking it while the push is up."""
    redis = start_private_redis(tmp_path)
    try:
        async with two_runtimes(postgres_url, redis.url, poll=3600) as (a, b):
            assert b.subscription is not None
            assert b.invalidation_poll_seconds() == 3600
            created, org = await new_key(a, "acme")
            await b.auth.authenticate_key(created.plaintext, CTX)  # B's cache is warm
            measured, received = b.invalidations.delays.count, b.subscription.received
            await revoke(a, org, created.key.id)
            await until(lambda: b.subscription is not None and b.subscription.received > received)
            with pytest.raises(ApiwardError):
                await b.auth.authenticate_key(created.plaintext, CTX)
            assert b.invalidations.delays.count == measured + 1  # measured on arrival
    finally:
        redis.kill()


def shard_channel_owner(cluster: RedisClusterServers) -> int:
    """The port of the node that holds the invalidation channel's slot."""
    name = f"{CHANNEL}:0"
    for port in cluster.ports:
        if "MOVED" not in cluster.cli(port, "SPUBLISH", name, "probe"):
            return port
    raise AssertionError("no node holds the channel's slot")


async def test_a_revocation_is_pushed_through_a_redis_cluster_on_a_shard_channel(
    tmp_path: Path, redis_cluster: RedisClusterServers
) -> None:
    """On a Cluster the runtimes subscribe to a shard channel at the node that holds its
    slot (not the node their URL names), and a message goes there alone. On SQLite,
    with the poll an hour away, only the push can make B refuse the key."""
    database = migrated_sqlite(tmp_path / "cluster.db")
    owner = shard_channel_owner(redis_cluster)
    named = next(port for port in redis_cluster.ports if port != owner)
    url = f"redis://127.0.0.1:{named}"
    async with two_runtimes(database, url, poll=3600, redis_cluster=True) as (a, b):
        assert b.subscription is not None
        for port in redis_cluster.ports:
            shard = redis_cluster.cli(port, "PUBSUB", "SHARDNUMSUB", f"{CHANNEL}:0").split()
            plain = redis_cluster.cli(port, "PUBSUB", "NUMSUB", f"{CHANNEL}:0").split()
            assert shard[-1] == ("2" if port == owner else "0"), (port, owner, shard)
            assert plain[-1] == "0"
        created, org = await new_key(a, "acme")
        await b.auth.authenticate_key(created.plaintext, CTX)  # B's cache is warm
        received = b.subscription.received
        await revoke(a, org, created.key.id)
        await until(lambda: b.subscription is not None and b.subscription.received > received)
        with pytest.raises(ApiwardError):
            await b.auth.authenticate_key(created.plaintext, CTX)


async def test_the_shard_channel_follows_its_slot_to_another_node(tmp_path: Path) -> None:
    """The channel's slot moved to another node (a resharding, a failover): the old node
    ends the shard subscriptions, every runtime subscribes again where the slot now is,
    and a revocation after the move still reaches B by the push alone (its poll an hour
    away)."""
    database = migrated_sqlite(tmp_path / "cluster.db")
    name = f"{CHANNEL}:0"
    with running_cluster() as cluster:
        owner = shard_channel_owner(cluster)
        target = next(port for port in cluster.ports if port != owner)
        async with two_runtimes(database, cluster.url, poll=3600, redis_cluster=True) as (a, b):
            assert a.subscription is not None and b.subscription is not None
            created, org = await new_key(a, "acme")
            await b.auth.authenticate_key(created.plaintext, CTX)
            slot = cluster.cli(owner, "CLUSTER", "KEYSLOT", name).strip()
            node = cluster.cli(target, "CLUSTER", "MYID").strip()
            for port in cluster.ports:
                assert "OK" in cluster.cli(port, "CLUSTER", "SETSLOT", slot, "NODE", node)
            await until(lambda: all(r.subscription.losses >= 1 for r in (a, b) if r.subscription))
            await until(lambda: all(r.subscription.connected for r in (a, b) if r.subscription))
            await until(
                lambda: cluster.cli(target, "PUBSUB", "SHARDNUMSUB", name).split()[-1] == "2"
            )
            received = b.subscription.received
            await revoke(a, org, created.key.id)
            await until(lambda: b.subscription is not None and b.subscription.received > received)
            with pytest.raises(ApiwardError):
                await b.auth.authenticate_key(created.plaintext, CTX)


async def test_losing_the_node_of_the_shard_channel_falls_back_to_the_fast_poll(
    tmp_path: Path,
) -> None:
    """The node that holds the channel's slot killed (a cluster that serves the slots it
    still has): the subscription is lost, the poll runs at its fast interval and carries
    A's revocation to B."""
    database = migrated_sqlite(tmp_path / "cluster.db")
    with running_cluster(require_full_coverage=False) as cluster:
        owner = shard_channel_owner(cluster)
        named = next(port for port in cluster.ports if port != owner)
        url = f"redis://127.0.0.1:{named}"
        async with two_runtimes(database, url, poll=0.05, redis_cluster=True) as (a, b):
            assert b.subscription is not None
            created, org = await new_key(a, "acme")
            await b.auth.authenticate_key(created.plaintext, CTX)
            cluster.processes[cluster.ports.index(owner)].kill()
            await until(lambda: b.subscription is not None and not b.subscription.connected)
            assert b.invalidation_poll_seconds() == 0.05
            await revoke(a, org, created.key.id)
            await until_refused(b, created.plaintext)


async def test_a_lost_subscription_falls_back_to_the_fast_poll(tmp_path: Path) -> None:
    """Redis killed: B's subscription is lost, its poll runs at the fast interval and
    carries A's revocation (SQLite: no database notification could); Redis back: the
    subscription is made again and the poll slows down to the backstop."""
    redis = start_private_redis(tmp_path)
    database = f"sqlite+aiosqlite:///{tmp_path / 'apiward.db'}"
    try:
        async with two_runtimes(database, redis.url, poll=0.05) as (a, b):
            assert b.subscription is not None
            assert b.invalidation_poll_seconds() == 3600
            first, org = await new_key(a, "acme")
            await b.auth.authenticate_key(first.plaintext, CTX)
            redis.kill()
            await until(lambda: b.subscription is not None and not b.subscription.connected)
            assert b.invalidation_poll_seconds() == 0.05
            assert (await readiness(b))["invalidation_push"] == "degraded"
            await revoke(a, org, first.key.id)
            assert a.publisher is not None
            await until(lambda: a.publisher is not None and a.publisher.failures >= 1)
            await until_refused(b, first.plaintext)

            redis.start()
            await until(lambda: b.subscription is not None and b.subscription.connected)
            assert b.subscription.losses == 1
            assert b.invalidation_poll_seconds() == 3600
            assert (await readiness(b))["invalidation_push"] == "ok"
    finally:
        redis.kill()


async def test_the_push_follows_a_sentinel_failover(
    tmp_path: Path,
    private_sentinel_group: SentinelGroup,  # noqa: F811
) -> None:
    """Behind Sentinel, revocations are pushed before and after the master is killed and
    the replica promoted: the subscription is lost, then made again on the new master."""
    group = private_sentinel_group
    database = f"sqlite+aiosqlite:///{tmp_path / 'apiward.db'}"
    async with two_runtimes(database, group.url(), poll=3600) as (a, b):
        assert b.subscription is not None
        before, org = await new_key(a, "acme")
        after = await a.keys.create(
            await a.operators.principal(org), name="after", scopes=["keys:read"]
        )
        for created in (before, after):
            await b.auth.authenticate_key(created.plaintext, CTX)
        received = b.subscription.received
        await revoke(a, org, before.key.id)
        await until(lambda: b.subscription is not None and b.subscription.received > received)
        with pytest.raises(ApiwardError):
            await b.auth.authenticate_key(before.plaintext, CTX)

        group.kill_master()
        await until(lambda: b.subscription is not None and not b.subscription.connected)
        await asyncio.to_thread(group.wait_for_promotion)
        await until(lambda: b.subscription is not None and b.subscription.connected, 20)
        received = b.subscription.received
        await revoke(a, org, after.key.id)
        await until(lambda: b.subscription is not None and b.subscription.received > received)
        with pytest.raises(ApiwardError):
            await b.auth.authenticate_key(after.plaintext, CTX)
        assert b.subscription.losses == 1


async def until_refused(runtime: Runtime, plaintext: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            await runtime.auth.authenticate_key(plaintext, CTX)
        except ApiwardError:
            return
        assert time.monotonic() < deadline, "the key was still accepted"
        await asyncio.sleep(0.01)


async def test_a_forged_or_foreign_message_drops_a_cache_entry_at_most(tmp_path: Path) -> None:
    """Messages that are not invalidations are counted and ignored; a forged drop of a
    key's entry makes the next request read it again, and the key still works; a forged
    revocation revokes nothing: it only asks for the log to be read."""
    redis = start_private_redis(tmp_path)
    database = f"sqlite+aiosqlite:///{tmp_path / 'apiward.db'}"
    try:
        async with two_runtimes(database, redis.url, poll=3600) as (a, b):
            assert b.subscription is not None
            created, _ = await new_key(a, "acme")
            verified = await b.auth.authenticate_key(created.plaintext, CTX)
            client = aioredis.Redis.from_url(redis.url)
            try:
                now = datetime.now(UTC)
                for message in (
                    b"not json",
                    json.dumps({"seq": 1, "kind": "key"}),
                    encode(Invalidation(10**9, "key", created.key.digest, now)),
                ):
                    await client.publish(f"{CHANNEL}:0", message)
                await until(lambda: b.subscription is not None and b.subscription.received == 1)
            finally:
                await client.aclose()
            assert b.subscription.rejected == 2
            again = await b.auth.authenticate_key(created.plaintext, CTX)
            assert again.credential_id == verified.credential_id

            forged = Invalidation(10**9 + 1, "revocation", "jti:some-token", now)
            assert b.invalidations.receive(forged) is True  # read the log now, nothing else
            assert ("jti", "some-token") not in b.revocations
            await b.invalidations.poll()
            assert ("jti", "some-token") not in b.revocations
    finally:
        redis.kill()


def test_a_message_carries_the_row_and_nothing_else() -> None:
    """A row survives the trip; anything else (too long, naive time, wrong types) is no
    row at all."""
    row = Invalidation(7, "key", "d" * 64, datetime(2026, 1, 1, tzinfo=UTC))
    assert json.loads(encode(row)) == {
        "seq": 7,
        "kind": "key",
        "target": "d" * 64,
        "at": "2026-01-01T00:00:00+00:00",
    }
    assert decode(encode(row)) == row
    for bad in (
        b"x" * 600,
        b"[]",
        json.dumps({"seq": "7", "kind": "key", "target": "t", "at": row.created_at.isoformat()}),
        json.dumps({"seq": 7, "kind": "key", "target": "t", "at": "2026-01-01T00:00:00"}),
        json.dumps({"seq": 7, "kind": "key", "target": "t" * 129, "at": "2026-01-01T00:00:00Z"}),
    ):
        assert decode(bad) is None


async def test_a_hung_redis_is_a_lost_subscription(tmp_path: Path) -> None:
    """A Redis that keeps its connections open but answers nothing (SIGSTOP) is noticed
    by the unanswered ping after ``idle`` seconds of silence; once it answers again the
    subscription is made again and rows arrive."""
    redis = start_private_redis(tmp_path)
    changes: list[bool] = []
    rows: list[Invalidation] = []
    subscription = Subscription(
        redis.url, rows.append, changes.append, timeout=0.2, idle=0.3, min_delay=0.05
    )
    subscription.start()
    try:
        await until(lambda: subscription.connected)
        redis.hang()
        try:
            await until(lambda: not subscription.connected)
        finally:
            redis.resume()
        await until(lambda: subscription.connected)
        assert changes == [True, False, True] and subscription.losses == 1
        publisher = Publisher(redis.url, timeout=1.0)
        row = Invalidation(1, "org", "org_1", datetime.now(UTC))
        await publisher.publish([row])
        await publisher.aclose()
        await until(lambda: rows == [row])
    finally:
        await subscription.stop()
        redis.kill()
