"""The Redis limiter on a real Redis Cluster: keys grouped by subject, decisions that
span slots spending all or nothing, and what a failing node costs.

The contract suite (``test_contract.py``) runs on the cluster too; these tests cover
what only a cluster has: hash tags, the reservation given back, the cancellation run
once, and exactness under concurrency across limiters that share nothing but Redis.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator

import pytest
from redis.crc import key_slot

from apiward.adapters.limiter.redis import RedisLimiter, _by_slot, connect_cluster
from apiward.core.errors import ServiceUnavailable
from apiward.core.limits import Hit, Policy
from apiward.services.limiting import key_subject, limit_key
from tests.adapters.limiter.conftest import cluster_limiter
from tests.redis_topologies import RedisClusterServers, running_cluster

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

DAY = 86400.0


@pytest.fixture
async def limiter(redis_cluster: RedisClusterServers, prefix: str) -> AsyncIterator[RedisLimiter]:
    async with cluster_limiter(redis_cluster, prefix, subject=key_subject) as limiter:
        yield limiter


def slot(limiter: RedisLimiter, key: str) -> int:
    return key_slot(limiter._name(key).encode())


def keys_in_order(limiter: RedisLimiter, *names: str) -> list[str]:
    """``names`` as limit keys of distinct subjects, sorted by their slot."""
    keys = [limit_key(Policy(n, 10, DAY, "ip"), "ip", f"10.0.0.{i}") for i, n in enumerate(names)]
    assert len({slot(limiter, k) for k in keys}) == len(keys), "pick subjects in other slots"
    return sorted(keys, key=lambda k: slot(limiter, k))


def test_a_subject_is_the_kind_and_value_of_a_limit_key() -> None:
    second = Policy("per-second", 10, 1.0, "credential")
    day = Policy("per-day", 1000, DAY, "credential", algorithm="fixed_window")
    assert key_subject(limit_key(second, "credential", "k1")) == "credential:k1"
    assert key_subject(limit_key(day, "credential", "k1")) == "credential:k1"
    assert key_subject(limit_key(second, "ip", "::1", within="o.org1")) == "ip:::1"
    assert key_subject("login:user:alice") == "login:user:alice"


async def test_the_limits_of_one_subject_share_a_slot(limiter: RedisLimiter) -> None:
    second = limit_key(Policy("per-second", 10, 1.0, "credential"), "credential", "k1")
    day = limit_key(
        Policy("per-day", 1000, DAY, "credential", algorithm="sliding_window"), "credential", "k1"
    )
    org = limit_key(Policy("org", 1000, DAY, "org"), "org", "o1")
    assert slot(limiter, second) == slot(limiter, day)
    assert len(_by_slot([limiter._name(k) for k in (second, day, org)])) == 2


async def test_a_subject_with_braces_or_a_long_value_still_gets_one_tag(
    limiter: RedisLimiter,
) -> None:
    route = limit_key(Policy("r", 10, DAY, "route"), "route", "GET /items/{id}}")
    long = limit_key(Policy("r", 10, DAY, "route"), "route", "/" + "x" * 5000)
    for key in (route, long):
        name = limiter._name(key)
        assert name.count("{") >= 1 and name.index("}") > name.index("{") + 1
        assert (await limiter.hit_all([Hit(key, 1, DAY)]))[0].allowed
        assert not (await limiter.hit(key, 1, DAY)).allowed


async def test_a_refusal_in_a_later_slot_gives_back_what_earlier_slots_reserved(
    limiter: RedisLimiter,
) -> None:
    first, middle, last = keys_in_order(limiter, "a", "b", "c")
    await limiter.hit(last, 2, DAY, 2)  # the last slot's limit is spent
    decisions = await limiter.hit_all(
        [Hit(first, 10, DAY), Hit(middle, 5, DAY, 2), Hit(last, 2, DAY)]
    )
    assert [d.allowed for d in decisions] == [True, True, False]
    assert [d.remaining for d in decisions[:2]] == [10, 5]  # reported as nothing spent
    assert (await limiter.peek(first, 10, DAY, 0)).remaining == 10
    assert (await limiter.peek(middle, 5, DAY, 0)).remaining == 5


async def test_a_refusal_in_an_earlier_slot_spends_nothing_after_it(limiter: RedisLimiter) -> None:
    first, last = keys_in_order(limiter, "d", "e")
    await limiter.hit(first, 1, DAY)
    decisions = await limiter.hit_all([Hit(first, 1, DAY), Hit(last, 3, DAY)])
    assert [(d.allowed, d.remaining) for d in decisions] == [(False, 0), (True, 3)]
    assert (await limiter.peek(last, 3, DAY, 0)).remaining == 3


async def test_report_limits_across_slots_are_spent_only_when_the_request_is_admitted(
    limiter: RedisLimiter,
) -> None:
    first, middle, last = keys_in_order(limiter, "f", "g", "h")
    await limiter.hit_all([Hit(middle, 5, DAY)], [Hit(first, 5, DAY), Hit(last, 5, DAY)])
    assert (await limiter.peek(first, 5, DAY, 0)).remaining == 4
    assert (await limiter.peek(last, 5, DAY, 0)).remaining == 4
    await limiter.hit(middle, 5, DAY, 4)  # the enforced limit is spent
    refused = await limiter.hit_all([Hit(middle, 5, DAY)], [Hit(first, 5, DAY), Hit(last, 5, DAY)])
    assert [d.allowed for d in refused] == [False, True, True]
    assert (await limiter.peek(first, 5, DAY, 0)).remaining == 4
    assert (await limiter.peek(last, 5, DAY, 0)).remaining == 4


async def test_window_limits_across_slots_are_given_back(limiter: RedisLimiter) -> None:
    first, last = keys_in_order(limiter, "i", "j")
    fixed = Hit(first, 3, DAY, 1, "fixed_window")
    sliding = Hit(last, 1, DAY, 1, "sliding_window")
    await limiter.hit_all([sliding])
    decisions = await limiter.hit_all([fixed, sliding])
    assert [(d.allowed, d.remaining) for d in decisions] == [(True, 3), (False, 0)]
    assert (await limiter.hit_all([fixed]))[0].remaining == 2


async def test_a_refund_across_slots_gives_back_in_each(limiter: RedisLimiter) -> None:
    first, middle, last = keys_in_order(limiter, "m", "n", "o")
    hits = [Hit(first, 3, DAY), Hit(middle, 3, DAY, 2), Hit(last, 3, DAY, 1, "fixed_window")]
    assert all(d.allowed for d in await limiter.hit_all(hits))
    await limiter.refund(hits)
    assert [(await limiter.peek(h.key, 3, DAY, 0)).remaining for h in hits[:2]] == [3, 3]
    assert (await limiter.hit_all([hits[2]]))[0].remaining == 2


async def test_a_cancellation_run_twice_gives_back_once(limiter: RedisLimiter) -> None:
    key = limiter._name("twice")
    now = 1_000_000_000_000
    limiter._clock = lambda: now
    await limiter.hit("twice", 10, 10.0, 3)  # TAT now + 3 s
    args = [now, now, 10, 10_000_000, 1, 0, now + 2_000_000]
    assert await limiter._cancel([key + "~cancel:m", key], args) == 1
    assert await limiter._cancel([key + "~cancel:m", key], args) == 0  # a retry: no-op
    assert (await limiter.peek("twice", 10, 10.0, 0)).remaining == 8


async def tat_after_cancel(limiter: RedisLimiter, key: str, backlog: int) -> int:
    """Reserve one unit at t on a bucket of 10 per 10 s holding ``backlog`` spent units,
    spend one more at t + 0.5 s, then give the reservation back: the TAT left."""
    t = 1_000_000_000_000
    limiter._clock = lambda: t
    if backlog:
        await limiter.hit(key, 10, 10.0, backlog)
    reserved = await limiter.hit(key, 10, 10.0)
    start = reserved.tat // 1000 - 1_000_000
    limiter._clock = lambda: t + 500_000
    await limiter.hit(key, 10, 10.0)
    name = limiter._name(key)
    await limiter._cancel([name + "~cancel:c", name], [t + 500_000, t, 10, 10_000_000, 1, 0, start])
    return int(await limiter._client.get(name) or 0)


async def test_a_cancellation_never_credits_time_that_passed(limiter: RedisLimiter) -> None:
    """A reservation at t on a full bucket kept it from refilling; a spend at t + 0.5 s
    then counted from the reservation's TAT. Giving back the whole second would credit
    that half second twice: the bucket ends where it would be had the reservation never
    been made, (t + 0.5 s) + 1 s. With a backlog (TAT t + 5 s) nothing was kept from
    refilling, and the whole second comes back: (t + 5 s) + 1 s."""
    t = 1_000_000_000_000
    assert await tat_after_cancel(limiter, "full", 0) == t + 1_500_000
    assert await tat_after_cancel(limiter, "backlog", 5) == t + 6_000_000


async def test_concurrent_decisions_across_limiters_admit_exactly_the_limit(
    redis_cluster: RedisClusterServers, prefix: str
) -> None:
    """Four limiters (four clients, no shared state) decide 400 requests at once, each on
    a credential's limit of 50, its organisation's of 120 and its address's of 90 (three
    subjects, so three slots): exactly 50 are admitted, and the organisation and the
    address have spent exactly 50 each: every refused request gave back its reservations."""
    credential = limit_key(Policy("per-key", 50, DAY, "credential"), "credential", "k1")
    org = limit_key(Policy("per-org", 120, DAY, "org"), "org", "o1")
    ip = limit_key(Policy("per-ip", 90, DAY, "ip"), "ip", "192.0.2.1")
    hits = [Hit(credential, 50, DAY), Hit(org, 120, DAY), Hit(ip, 90, DAY)]
    limiters = [
        RedisLimiter(
            connect_cluster(redis_cluster.url, timeout=5.0), prefix=prefix, subject=key_subject
        )
        for _ in range(4)
    ]
    try:
        assert len(_by_slot([limiters[0]._name(h.key) for h in hits])) == 3
        decided = await asyncio.gather(*(limiters[n % 4].hit_all(hits) for n in range(400)))
        admitted = [d for d in decided if all(x.allowed for x in d)]
        assert len(admitted) == 50
        assert sorted(d[0].remaining for d in admitted) == list(range(50))
        assert (await limiters[0].peek(org, 120, DAY, 0)).remaining == 70
        assert (await limiters[0].peek(ip, 90, DAY, 0)).remaining == 40
    finally:
        for one in limiters:
            await one.aclose()


def on_two_nodes(servers: RedisClusterServers, limiter: RedisLimiter) -> tuple[str, str, int]:
    """Two limit keys whose slots two different nodes serve, in slot order, and the port
    of the node serving the second."""
    keys = [limit_key(Policy("n", 5, DAY, "ip"), "ip", f"10.1.0.{i}") for i in range(20)]
    home = _owner(servers, slot(limiter, keys[0]))
    other = next(k for k in keys if _owner(servers, slot(limiter, k)) != home)
    first, last = sorted((keys[0], other), key=lambda k: slot(limiter, k))
    return first, last, _owner(servers, slot(limiter, last))


async def test_a_node_failing_mid_decision_gives_back_and_reports_unavailable(
    prefix: str,
) -> None:
    """The node of a decision's last slot dies: the decision raises ``ServiceUnavailable``
    (``FallbackLimiter`` then acts as APIWARD_RATE_LIMIT_FAILURE_MODE says), and what the
    live slots reserved is given back. (The cluster serves the slots it still covers:
    ``cluster-require-full-coverage no``; with the default, it refuses every command once
    it marks the node failed, and every decision is a Redis failure.)"""
    with running_cluster(require_full_coverage=False) as servers:
        limiter = RedisLimiter(
            connect_cluster(servers.url, timeout=3.0), prefix=prefix, subject=key_subject
        )
        try:
            first, last, dead = on_two_nodes(servers, limiter)
            hits = [Hit(first, 5, DAY), Hit(last, 5, DAY)]
            await limiter.hit_all(hits)
            servers.processes[servers.ports.index(dead)].kill()
            with pytest.raises(ServiceUnavailable):
                await limiter.hit_all(hits)
            assert (await limiter.peek(first, 5, DAY, 0)).remaining == 4
        finally:
            await limiter.aclose()


async def test_a_request_cancelled_between_the_phases_gives_back(prefix: str) -> None:
    """The node of the last slot hangs (SIGSTOP) and the request is cancelled while it
    waits there (a client gone): what the first slot reserved is given back all the same."""
    with running_cluster() as servers:
        limiter = RedisLimiter(
            connect_cluster(servers.url, timeout=5.0), prefix=prefix, subject=key_subject
        )
        try:
            first, last, hung = on_two_nodes(servers, limiter)
            hits = [Hit(first, 5, DAY), Hit(last, 5, DAY)]
            await limiter.hit_all(hits)
            process = servers.processes[servers.ports.index(hung)]
            process.send_signal(signal.SIGSTOP)
            try:
                deciding = asyncio.ensure_future(limiter.hit_all(hits))
                for _ in range(2000):  # until the first slot has reserved (10 s at most)
                    if (await limiter.peek(first, 5, DAY, 0)).remaining == 3:
                        break
                    await asyncio.sleep(0.005)
                else:
                    raise AssertionError("the first slot never reserved")
                # Its answer read, the request now waits on the hung node (cancelled
                # before reading it, it would be a process dying between the phases).
                await asyncio.sleep(0.5)
                deciding.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await deciding
            finally:
                process.send_signal(signal.SIGCONT)
            assert (await limiter.peek(first, 5, DAY, 0)).remaining == 4
        finally:
            await limiter.aclose()


def _owner(servers: RedisClusterServers, wanted: int) -> int:
    """The port of the node that serves slot ``wanted``."""
    for line in servers.cli(servers.ports[0], "CLUSTER", "NODES").splitlines():
        fields = line.split()
        for span in fields[8:]:
            low, _, high = span.partition("-")
            if low.isdigit() and int(low) <= wanted <= int(high or low):
                return int(fields[1].split(":")[1].split("@")[0])
    raise AssertionError(f"no node serves slot {wanted}")
