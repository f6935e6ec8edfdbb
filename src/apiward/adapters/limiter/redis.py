"""Limiter state in Redis: exact across every process and machine.

One Lua script decides one request (any number of limits, all or nothing) in one
round trip and returns everything the headers need. It reads the clock with the
server's ``TIME``, so the app machines' clocks may disagree without effect.

Calling ``TIME`` before a write needs effects replication, the only mode since
Redis 7.0 and the default since 5.0 (``redis.replicate_commands()`` is a no-op
there), so the script does not call it: Redis >= 5 or Valkey is required.

On a Redis Cluster (``connect_cluster``) a script sees the keys of one hash slot only:
each key is tagged with its subject so that one subject's limits share a slot, and a
decision spanning slots reserves slot by slot and gives back on a refusal
(``RedisLimiter._spread``; docs/architecture.md, "Limits on a Redis Cluster").

Redis errors never leave this module: ``_bounded`` turns them, and a call that outlasts
its timeout, into ``ServiceUnavailable`` chained with ``from``, as httpx maps httpcore's
errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import NoScriptError, RedisError, ResponseError

from apiward.adapters import redis_url
from apiward.core.errors import ServiceUnavailable
from apiward.core.limits import (
    ALGORITHMS,
    NO_FLOOR,
    NS,
    US,
    Decision,
    Floor,
    Hit,
    bounded_key,
    interval_ticks,
    to_ticks,
)

Client = aioredis.Redis | RedisCluster

# KEYS: one key per limit. ARGV[1]: "" to use the server clock, or a time in
# microseconds (tests only); ARGV[2]: "1" to store, "0" to peek, "2" to spend nothing
# because another slot refused the request (floors are stored; a Cluster's decision
# spanning slots, ``RedisLimiter._spread``); then six per key:
# limit, period (us), cost, algorithm (0 GCRA, 1 fixed window, 2 sliding window), and a
# floor: the least TAT to assume, in microseconds past now (0: none), and "1" when it
# holds whatever the key holds, "0" when only where Redis holds nothing for the key
# (``FallbackLimiter``: a restarted or flushed Redis, or one that missed an outage's
# hits, starts no fresh burst). A floor that raised a key's TAT is stored, admitted or
# not. The last argument: how many of the keys, the first, are decided all or nothing;
# each key after them (a limit in report mode) is decided on its own, and spent only
# when it and those first keys admit the request. Returns the clock and, per key:
# admitted (0/1), remaining, reset_after (us), retry_after (us), tat (us). The
# arithmetic is ``apiward.core.limits.gcra`` and ``window`` on a microsecond clock;
# doubles are exact below 2**53. A GCRA key holds its TAT; a window key is a hash
# {i: window index, c: its count, p: the previous one's}.
GCRA_SCRIPT = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local store = ARGV[2] ~= '0'
local n = #KEYS
local enforced = tonumber(ARGV[#ARGV])
local out = {now}
local pending = {}
local floored = {}
local admit_all = true
local function ceildiv(a, b) return -math.floor(-a / b) end
for i = 1, n do
  local limit = tonumber(ARGV[6 * i - 3])
  local period = tonumber(ARGV[6 * i - 2])
  local cost = tonumber(ARGV[6 * i - 1])
  local alg = tonumber(ARGV[6 * i])
  local j = 1 + (i - 1) * 5
  if alg == 0 then
    local interval = ceildiv(period, limit)
    local capacity = interval * limit
    local stored = redis.call('GET', KEYS[i])
    local base = tonumber(stored or now)
    if base < now then base = now end
    local floor = tonumber(ARGV[6 * i + 1])
    if floor > 0 and (ARGV[6 * i + 2] == '1' or not stored) and now + floor > base then
      base = now + floor
      floored[i] = base
    end
    local new_tat = base + cost * interval
    local allow_at = new_tat - capacity
    if allow_at <= now then
      out[j + 1] = 1
      out[j + 2] = math.floor((capacity - (new_tat - now)) / interval)
      out[j + 3] = new_tat - now
      out[j + 4] = 0
      out[j + 5] = new_tat
      pending[i] = {0, new_tat, base, cost, interval, capacity}
    else
      if i <= enforced then admit_all = false end
      local remaining = math.floor((capacity - (base - now)) / interval)
      if remaining < 0 then remaining = 0 end
      out[j + 1] = 0
      out[j + 2] = remaining
      out[j + 3] = base - now
      out[j + 4] = allow_at - now
      out[j + 5] = base
    end
  else
    local index = math.floor(now / period)
    local left = period - (now - index * period)
    local state = redis.call('HMGET', KEYS[i], 'i', 'c', 'p')
    local current, previous = 0, 0
    local held = tonumber(state[1])
    if held == index then
      current, previous = tonumber(state[2]), tonumber(state[3])
    elseif held == index - 1 then
      previous = tonumber(state[2])
    end
    local carried = 0
    if alg == 2 then carried = previous * (left / period) end
    local allowed = (current + cost) + carried <= limit
    local used = current + carried
    if allowed then used = used + cost end
    local remaining = math.floor(limit - used)
    if remaining < 0 then remaining = 0 end
    out[j + 2] = remaining
    out[j + 3] = left
    out[j + 5] = now + left
    if allowed then
      out[j + 1] = 1
      out[j + 4] = 0
      pending[i] = {1, index, current + cost, previous, left, period, cost, current}
    else
      if i <= enforced then admit_all = false end
      local wait = left
      if alg == 2 then
        if current + cost > limit then
          wait = left + math.max(0, math.ceil(period - (limit - cost) * (period / current)))
        else
          wait = math.max(1, math.ceil(left - (limit - cost - current) * (period / previous)))
        end
      end
      out[j + 1] = 0
      out[j + 4] = wait
    end
  end
end
if ARGV[2] == '2' then admit_all = false end
for i = 1, n do
  local s = pending[i]
  local j = 1 + (i - 1) * 5
  local spent = false
  if s and not admit_all then
    -- Spend nothing where the request was admitted: report the current state.
    if s[1] == 0 then
      out[j + 2] = math.floor((s[6] - (s[3] - now)) / s[5])
      out[j + 3] = s[3] - now
      out[j + 5] = s[3]
    else
      out[j + 2] = out[j + 2] + s[7]
    end
  elseif s and store and s[1] == 0 and s[4] > 0 then
    -- '%.0f': Lua 5.1's tostring keeps 14 digits, a TAT in microseconds has 16.
    redis.call('SET', KEYS[i], string.format('%.0f', s[2]), 'PX',
      math.ceil((s[2] - now) / 1000))
    spent = true
  elseif s and store and s[1] == 1 and s[7] > 0 then
    redis.call('HSET', KEYS[i], 'i', string.format('%.0f', s[2]), 'c', s[3], 'p', s[4])
    redis.call('PEXPIRE', KEYS[i], math.ceil((s[5] + s[6]) / 1000))
  end
  if store and not spent and floored[i] then
    redis.call('SET', KEYS[i], string.format('%.0f', floored[i]), 'PX',
      math.ceil((floored[i] - now) / 1000))
  end
end
return out
"""

# KEYS: the limits to give back to; ARGV: 4 per key (limit, period in microseconds,
# cost, algorithm). A TAT moves back by cost * interval; one no longer in the future is
# a full bucket, kept until the key would have expired (``RESET_SCRIPT`` says why); a
# window's count in the current window goes down by cost. The Redis server's clock, as
# in the GCRA script.
REFUND_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i = 1, #KEYS do
  local limit = tonumber(ARGV[4 * i - 3])
  local period = tonumber(ARGV[4 * i - 2])
  local cost = tonumber(ARGV[4 * i - 1])
  local alg = tonumber(ARGV[4 * i])
  if alg == 0 then
    local interval = -math.floor(-period / limit)
    local tat = redis.call('GET', KEYS[i])
    if tat then
      local back = tonumber(tat) - cost * interval
      if back > now then
        redis.call('SET', KEYS[i], string.format('%.0f', back), 'PX',
          math.ceil((back - now) / 1000))
      else
        local ttl = redis.call('PTTL', KEYS[i])
        if ttl > 0 then redis.call('SET', KEYS[i], '0', 'PX', ttl) end
      end
    end
  else
    local held = tonumber(redis.call('HGET', KEYS[i], 'i'))
    if held == math.floor(now / period) then
      local count = tonumber(redis.call('HGET', KEYS[i], 'c')) - cost
      if count < 0 then count = 0 end
      redis.call('HSET', KEYS[i], 'c', count)
    end
  end
end
return 0
"""

# Gives back a reservation of ``RedisLimiter._spread``: what one slot spent for a
# request that another slot then refused. KEYS[1]: a marker of this cancellation (in the
# slot of the others), so that running it twice (a retried call whose answer was lost)
# gives back once; then the limits' keys. ARGV[1]: "" for the server clock or a time in
# microseconds (tests), ARGV[2]: the clock of the reservation (the GCRA script's reply);
# then 5 per key (limit, period in microseconds, cost, algorithm, and the TAT the
# reservation started from: its new TAT less cost * interval). A TAT moves back by cost *
# interval less the time by which now is past that starting TAT: a spend made since, on
# a bucket that would have been full had we not reserved, counted from our TAT instead
# of from its own time, and giving back all of ours would credit that time twice. So
# the bucket ends no fuller than had the reservation never been made (the proof is in
# docs/architecture.md, "Limits on a Redis Cluster"). A window's count goes down by cost
# only in the window the reservation counted in.
CANCEL_SCRIPT = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', 600000) then return 0 end
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local reserved = tonumber(ARGV[2])
for i = 2, #KEYS do
  local limit = tonumber(ARGV[5 * i - 7])
  local period = tonumber(ARGV[5 * i - 6])
  local cost = tonumber(ARGV[5 * i - 5])
  local alg = tonumber(ARGV[5 * i - 4])
  local from = tonumber(ARGV[5 * i - 3])
  if alg == 0 then
    local late = now - from
    if late < 0 then late = 0 end
    local back = cost * -math.floor(-period / limit) - late
    local tat = redis.call('GET', KEYS[i])
    if tat and back > 0 then
      local moved = tonumber(tat) - back
      if moved > now then
        redis.call('SET', KEYS[i], string.format('%.0f', moved), 'PX',
          math.ceil((moved - now) / 1000))
      else
        local ttl = redis.call('PTTL', KEYS[i])
        if ttl > 0 then redis.call('SET', KEYS[i], '0', 'PX', ttl) end
      end
    end
  else
    local held = tonumber(redis.call('HGET', KEYS[i], 'i'))
    if held == math.floor(reserved / period) then
      local count = tonumber(redis.call('HGET', KEYS[i], 'c')) - cost
      if count < 0 then count = 0 end
      redis.call('HSET', KEYS[i], 'c', count)
    end
  end
end
return 1
"""

# KEYS[1]: the key to forget. A GCRA key becomes a TAT of 0 (a full bucket) until it
# would have expired rather than going: another process may hold its TAT as a floor
# for a Redis that lost the key (GCRA_SCRIPT), and a key that is there is not lost.
RESET_SCRIPT = """
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 and redis.call('TYPE', KEYS[1]).ok == 'string' then
  redis.call('SET', KEYS[1], '0', 'PX', ttl)
else
  redis.call('DEL', KEYS[1])
end
return 0
"""


def connect(
    url: str, *, timeout: float = 0.5, max_connections: int = 64, pool_timeout: float = 2.0
) -> aioredis.Redis:
    """A client for the limiter: short timeouts, one immediate retry, a bounded pool.

    redis-py's defaults (5 s timeouts, 10 retries with back-off) would hold every
    request for seconds during an outage; the limiter would rather fall back (or
    answer 503) at once. The single retry absorbs a connection that a Redis restart
    closed mid-command. Past ``max_connections`` in flight, requests queue for a
    connection (up to ``pool_timeout``) instead of failing; ``RedisLimiter`` bounds each
    call as a whole, the queue and the retry included. Call it in the app's lifespan,
    never at import time.

    A ``redis+sentinel://`` URL (``adapters/redis_url.py``) gives a client of the Sentinel
    group's current master, with the same timeouts, retry and queue.
    """
    address = redis_url.sentinel(url)
    if address is not None:
        client: aioredis.Redis = redis_url.sentinel_master(
            address,
            pool_timeout=pool_timeout,
            max_connections=max_connections,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
            health_check_interval=30,
        )
        return client
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
    )
    return aioredis.Redis.from_pool(pool)


def connect_cluster(url: str, *, timeout: float = 0.5, max_connections: int = 64) -> RedisCluster:
    """A client of a Redis Cluster for the limiter, tuned as ``connect``: short timeouts,
    one immediate retry, at most ``max_connections`` to each node (``RedisLimiter``
    queues the calls past it rather than failing them). ``url`` names any one node; the
    others are discovered (``CLUSTER SLOTS``), and a slot that moves (``MOVED``,
    ``ASK``) is followed by redis-py. Call it in the app's lifespan, never at import time.
    """
    return RedisCluster.from_url(
        url,
        max_connections=max_connections,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
    )


@asynccontextmanager
async def _bounded(seconds: float) -> AsyncIterator[None]:
    """At most ``seconds``, and Redis errors as ``ServiceUnavailable``."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError as exc:
        raise ServiceUnavailable(
            f"Rate limiting is unavailable: Redis did not answer within {seconds:g} s. "
            "Check that Redis is running and not overloaded (APIWARD_REDIS_URL)."
        ) from exc
    except (RedisError, OSError) as exc:
        raise ServiceUnavailable(
            f"Rate limiting is unavailable: Redis cannot be reached ({type(exc).__name__}: "
            f"{exc}). Check APIWARD_REDIS_URL and that Redis is running."
        ) from exc


class _Coalesced:
    """EVALSHA calls made in one turn of the event loop, sent to one Redis together: one
    pool connection, one write and one read for all of them, where each call alone takes
    its own pool checkout, write and read (under load, most of a decision's CPU;
    bench/README.md, "With limits, by worker count"). Each script still runs atomically
    and in the order of the calls; nothing is a transaction, so one call's error reply
    is its own.

    A batch is bounded as a call is (``timeout``, the pool's queue included) and is
    never sent again: a connection lost in the middle delivers the replies read before
    it and fails the calls after it (their scripts may have run, as a single call's may
    when its reply is lost), where a retried pipeline would run every script of the
    batch twice. A connection found stale when taken from the pool is made again before
    anything is sent. Calls whose callers stopped waiting before the batch left are
    dropped from it."""

    def __init__(self, client: aioredis.Redis, timeout: float) -> None:
        self._client = client
        self._timeout = timeout
        self._queue: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Task[None]] = set()
        self.batches = 0
        """Batches of more than one call sent."""
        self.largest = 0
        """The most calls one batch carried."""

    def evalsha(self, *args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((args, future))
        if len(self._queue) == 1:
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        batch = [(args, future) for args, future in self._queue if not future.done()]
        self._queue = []
        if not batch:
            return
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._sending.add(task)  # held until done: the loop keeps only a weak reference
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                if len(batch) == 1:
                    args, future = batch[0]
                    _settle(future, await self._client.evalsha(*args))
                else:
                    await self._pipelined(batch)
        except Exception as exc:  # the pool, the connection or the time: what is unread
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)

    async def _pipelined(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        self.batches += 1
        self.largest = max(self.largest, len(batch))
        pool = self._client.connection_pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            commands = [("EVALSHA", *args) for args, _ in batch]
            await connection.send_packed_command(connection.pack_commands(commands))
            for _, future in batch:
                try:
                    reply = await connection.read_response()
                except ResponseError as exc:  # this script's own error (NOSCRIPT, ...)
                    _settle(future, exc)
                else:
                    _settle(future, reply)
        except BaseException:
            await connection.disconnect()  # replies may still be on their way
            raise
        finally:
            await pool.release(connection)


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    """Give ``future`` its reply (an exception is raised to its caller), unless its
    caller stopped waiting."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class _Script:
    """A Lua script run with EVALSHA, loaded with SCRIPT LOAD when Redis lacks it. On a
    single Redis (or a Sentinel group's master) the calls of one turn of the event loop
    share a pipeline (``_Coalesced``)."""

    def __init__(self, client: Client, source: str, coalesced: _Coalesced | None = None) -> None:
        self._client = client
        self._source = source
        self._evalsha = coalesced.evalsha if coalesced is not None else client.evalsha
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        try:
            return await self._evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            # A restarted or flushed server forgot it (SCRIPT FLUSH, failover).
            if isinstance(self._client, RedisCluster):
                # EVAL caches it on the node of the keys' slot: SCRIPT LOAD would go to
                # every primary, and fail while one is down that this call never needs.
                return await self._client.eval(self._source, len(keys), *keys, *args)
            self.sha = await self._client.script_load(self._source)
            return await self._client.evalsha(self.sha, len(keys), *keys, *args)


def own_subject(key: str) -> str:
    """Each key a subject of its own: the default grouping of keys into slots."""
    return key


@dataclass
class _Reservation:
    """What one slot spent for a decision that spans slots, until it is kept or given
    back: the positions of the hits spent, each with the TAT it started from (GCRA, in
    microseconds; 0 for a window), and the slot's clock when it spent them."""

    spent: list[tuple[int, int]]
    at: int
    mark: str = field(default_factory=lambda: os.urandom(8).hex())


class RedisLimiter:
    """GCRA in Redis, one EVALSHA per decision. ``prefix`` namespaces every key, and
    every key is bounded in length (``apiward.core.limits.bounded_key``).

    The client is created in the app's lifespan, with short socket timeouts so that an
    outage is noticed quickly (``connect``); pass it here. Each call waits at most
    ``timeout`` seconds in all (a pooled connection, the script, a retry; by default the
    client's socket timeout), then raises
    ``ServiceUnavailable``: a hung Redis costs one request that much, and
    ``FallbackLimiter`` spares the others. ``clock`` (microseconds) replaces the
    server's ``TIME`` in decisions, for tests.

    On a Redis Cluster (``connect_cluster``) each key carries a hash tag, its
    ``subject`` (``apiward.services.limiting.key_subject``: the credential, address or
    route a limit counts), so that the buckets of one subject share a slot. A decision
    whose keys share a slot is still one EVALSHA; one that spans slots reserves slot by
    slot and gives back what it reserved when a later slot refuses (``_spread``;
    docs/architecture.md, "Limits on a Redis Cluster"). At most ``max_in_flight``
    calls (by default the client's connections per node) run at once; the others queue.
    """

    def __init__(
        self,
        client: Client,
        *,
        prefix: str = "",
        timeout: float | None = None,
        clock: Callable[[], int] | None = None,
        subject: Callable[[str], str] = own_subject,
        max_in_flight: int | None = None,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._cluster = isinstance(client, RedisCluster)
        if self._cluster and ("{" in prefix or "}" in prefix):
            raise ValueError(
                f"The key prefix {prefix!r} holds a brace: on a Redis Cluster the limiter "
                "tags each key with its subject in braces, and must be the first to."
            )
        kwargs: Mapping[str, Any] = (
            client.get_connection_kwargs()
            if isinstance(client, RedisCluster)
            else client.connection_pool.connection_kwargs
        )
        if timeout is None:  # the client's socket timeout, as ``connect`` set it
            timeout = kwargs.get("socket_timeout") or 0.5
        self.timeout: float = timeout
        self._clock = clock
        self._subject = subject
        self._in_flight = (
            asyncio.Semaphore(max_in_flight or kwargs.get("max_connections") or 64)
            if self._cluster
            else None
        )
        coalesced = None if isinstance(client, RedisCluster) else _Coalesced(client, timeout)
        self._coalesced = coalesced
        self._gcra = _Script(client, GCRA_SCRIPT, coalesced)
        self._refund = _Script(client, REFUND_SCRIPT, coalesced)
        self._cancel = _Script(client, CANCEL_SCRIPT, coalesced)
        self._reset = _Script(client, RESET_SCRIPT, coalesced)

    async def hit(self, key: str, limit: int, period: float, cost: int = 1) -> Decision:
        return (await self._run([Hit(key, limit, period, cost)], store=True))[0]

    async def hit_all(self, hits: Sequence[Hit], report: Sequence[Hit] = ()) -> list[Decision]:
        if report:
            return await self._run([*hits, *report], store=True, enforced=len(hits))
        return await self._run(hits, store=True)

    async def peek(self, key: str, limit: int, period: float, cost: int = 1) -> Decision:
        return (await self._run([Hit(key, limit, period, cost)], store=False))[0]

    async def decide(
        self,
        hits: Sequence[Hit],
        floors: Sequence[Floor],
        *,
        store: bool,
        enforced: int | None = None,
    ) -> list[Decision]:
        """``hit_all`` (``store``) or a peek, each GCRA key raised to at least its floor
        (``apiward.core.limits.Floor``; window keys take none). ``enforced``: how many of
        ``hits``, the first, are decided all or nothing, the rest in report mode."""
        return await self._run(hits, store=store, floors=floors, enforced=enforced)

    async def reset(self, key: str) -> None:
        async with self._calling():
            name = self._name(key) if self._cluster else self._prefix + bounded_key(key)
            await self._reset([name], [])

    async def refund(self, hits: Sequence[Hit]) -> None:
        keys, args = _arguments(hits, self._prefix, name=self._name if self._cluster else None)
        async with self._calling():
            if not self._cluster:
                await self._refund(keys, args)
                return
            for group in _by_slot(keys):  # one script per slot: a refund is not atomic
                await self._refund([keys[i] for i in group], _select(args, group, 4))

    async def ping(self) -> None:
        """Raise ``ServiceUnavailable`` when Redis does not answer within ``timeout``
        (on a Cluster: every node)."""
        async with self._calling():
            await self._client.ping()

    async def aclose(self) -> None:
        await self._client.aclose()

    @asynccontextmanager
    async def _calling(self) -> AsyncIterator[None]:
        """``_bounded``, waiting first for a turn where calls are counted (a Cluster)."""
        async with _bounded(self.timeout):
            if self._in_flight is None:
                yield
            else:
                async with self._in_flight:
                    yield

    def _name(self, key: str) -> str:
        """The Redis key of a limiter key on a Cluster: its subject as a hash tag (one
        without braces, at most 64 characters, else a digest of it), then the key."""
        subject = self._subject(key)
        if not subject or len(subject) > 64 or "}" in subject:
            subject = hashlib.sha256(subject.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return f"{self._prefix}{{{subject}}}{bounded_key(key)}"

    async def _run(
        self,
        hits: Sequence[Hit],
        *,
        store: bool,
        now_us: int | None = None,
        floors: Sequence[Floor] | None = None,
        enforced: int | None = None,
    ) -> list[Decision]:
        keys, args = _arguments(
            hits,
            self._prefix,
            floors or [NO_FLOOR] * len(hits),
            name=self._name if self._cluster else None,
        )
        if now_us is None and self._clock is not None:
            now_us = self._clock()
        head = ["" if now_us is None else now_us, int(store)]
        tail = len(hits) if enforced is None else enforced
        if self._cluster:
            groups = _by_slot(keys)
            if len(groups) > 1:
                return await self._spread(hits, keys, args, groups, head, tail)
            async with self._calling():
                reply = await self._gcra(keys, [*head, *args, tail])
            return _decisions(reply, hits)
        async with _bounded(self.timeout):
            reply = await self._gcra(keys, [*head, *args, tail])
        return _decisions(reply, hits)

    async def _spread(
        self,
        hits: Sequence[Hit],
        keys: list[str],
        args: list[int],
        groups: list[list[int]],
        head: list[str | int],
        enforced: int,
    ) -> list[Decision]:
        """A decision whose keys span slots of a Cluster: all of its limits spent, or
        none, though no script sees them all.

        The slots are visited in a fixed order (ascending), each with the one script that
        decides and spends its keys all or nothing: a reservation. When a slot refuses,
        the slots before it give back what they reserved (``CANCEL_SCRIPT``) and those
        after it report without spending. A limit is never exceeded: each slot spends
        atomically, and a spend is only ever given back, never made twice. The price is
        a window in which a reservation that will be given back holds capacity another
        decision may be refused for, and capacity lost if the process dies before giving
        it back (docs/architecture.md, "Limits on a Redis Cluster"). A peek visits every
        slot without spending.
        """
        decisions: list[Decision | None] = [None] * len(hits)
        admitted: list[int] = []  # spent (or, for a peek, would be) in slots that admitted
        pending: list[_Reservation] = []  # reservations not yet given back
        refused: int | None = None
        now, store = head
        try:
            async with self._calling():
                for g, group in enumerate(groups):
                    firm = sum(1 for i in group if i < enforced)
                    reply = await self._gcra(
                        [keys[i] for i in group], [*head, *_select(args, group, 6), firm]
                    )
                    got = _decisions(reply, [hits[i] for i in group])
                    for i, decision in zip(group, got, strict=True):
                        decisions[i] = decision
                    if not all(d.allowed for d in got[:firm]):
                        refused = g
                        break
                    spent = [i for i, d in zip(group, got, strict=True) if d.allowed]
                    admitted += spent
                    if store:
                        pending.append(
                            _Reservation(
                                [(i, _start(got[group.index(i)], hits[i])) for i in spent],
                                int(reply[0]),
                            )
                        )
                if refused is not None:
                    await self._give_back(hits, keys, args, pending, now)
                    for group in groups[refused + 1 :]:
                        reply = await self._gcra(
                            [keys[i] for i in group],
                            [now, 2 if store else 0, *_select(args, group, 6), 0],
                        )
                        got = _decisions(reply, [hits[i] for i in group])
                        for i, decision in zip(group, got, strict=True):
                            decisions[i] = decision
        except BaseException:
            if pending:
                # Died between the phases (Redis failing, a timeout, a cancelled
                # request): give back what is still reserved, once more, bounded (a
                # cancellation that ran but whose answer was lost runs as a no-op).
                await _quietly(self._give_back(hits, keys, args, pending, now), self.timeout)
            raise
        if refused is not None:
            for i in admitted:  # reported as had nothing been spent
                decisions[i] = _unspent(_known(decisions[i]), hits[i])
        return [_known(d) for d in decisions]

    async def _give_back(
        self,
        hits: Sequence[Hit],
        keys: list[str],
        args: list[int],
        pending: list[_Reservation],
        now: str | int,
    ) -> None:
        """Cancel the reservations, each once (a marker key in its slot), forgetting each
        as it is given back."""
        while pending:
            reservation = pending[0]
            spent = [(i, start) for i, start in reservation.spent if hits[i].cost > 0]
            if spent:
                marker = f"{keys[spent[0][0]]}~cancel:{reservation.mark}"
                five = [a for i, start in spent for a in (*args[6 * i : 6 * i + 4], start)]
                await self._cancel(
                    [marker, *(keys[i] for i, _ in spent)], [now, reservation.at, *five]
                )
            pending.pop(0)


async def _quietly(cancelling: Awaitable[None], seconds: float) -> None:
    """Run ``cancelling`` to its end even if the caller is cancelled, within ``seconds``,
    and swallow its failure: what it could not give back is capacity lost until the
    limits' windows roll, never capacity invented."""

    async def bounded() -> None:
        with contextlib.suppress(ServiceUnavailable):
            async with _bounded(seconds):
                await cancelling

    task = asyncio.ensure_future(bounded())
    _GIVING_BACK.add(task)  # held until done: the loop keeps only a weak reference
    task.add_done_callback(_GIVING_BACK.discard)
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.shield(task)


_GIVING_BACK: set[asyncio.Future[None]] = set()


def _by_slot(keys: Sequence[str]) -> list[list[int]]:
    """The positions of ``keys`` grouped by Cluster hash slot, the slots ascending."""
    slots: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        slots.setdefault(key_slot(key.encode("utf-8", "surrogatepass")), []).append(i)
    return [slots[slot] for slot in sorted(slots)]


def _select(args: Sequence[int], group: Sequence[int], width: int) -> list[int]:
    """The script arguments of the keys at ``group``, ``width`` per key."""
    return [a for i in group for a in args[width * i : width * (i + 1)]]


def _known(decision: Decision | None) -> Decision:
    assert decision is not None, "every slot of the decision answered"
    return decision


def _start(decision: Decision, hit: Hit) -> int:
    """The TAT (microseconds) an admitted GCRA ``decision`` spent from: its new TAT less
    what it spent (``CANCEL_SCRIPT`` needs it); 0 for a window limit."""
    if hit.algorithm != "gcra":
        return 0
    return decision.tat // (NS // US) - hit.cost * interval_ticks(
        hit.limit, to_ticks(hit.period, US)
    )


def _unspent(decision: Decision, hit: Hit) -> Decision:
    """An admitted ``decision`` as reported had nothing been spent (the GCRA script does
    the same for a request another key refused)."""
    if hit.algorithm != "gcra":
        return replace(decision, remaining=decision.remaining + hit.cost)
    back = hit.cost * interval_ticks(hit.limit, to_ticks(hit.period, US))
    return replace(
        decision,
        remaining=decision.remaining + hit.cost,
        reset_after=(to_ticks(decision.reset_after, US) - back) / US,
        tat=decision.tat - back * (NS // US),
    )


def _arguments(
    hits: Sequence[Hit],
    prefix: str,
    floors: Sequence[Floor] | None = None,
    *,
    name: Callable[[str], str] | None = None,
) -> tuple[list[str], list[int]]:
    """The keys and the script's arguments: four per key, six with ``floors``. ``name``
    gives each key's Redis key (a Cluster's hash tag); else it is ``prefix`` and the key."""
    if not hits:
        raise ValueError("hit_all needs at least one limit to check.")
    if name is None:
        keys = [prefix + bounded_key(hit.key) for hit in hits]
    else:
        keys = [name(hit.key) for hit in hits]
    if len(set(keys)) != len(keys):
        raise ValueError("Each key may appear only once in one hit_all call.")
    args: list[int] = []
    for i, hit in enumerate(hits):
        period = to_ticks(hit.period, US)
        if hit.limit < 1 or period < hit.limit or not 0 <= hit.cost <= hit.limit:
            raise ValueError(
                f"Invalid limit for {hit.key!r}: need limit >= 1, a period of at least one "
                f"microsecond per unit, and 0 <= cost <= limit (got {hit.limit}, "
                f"{hit.period}s, cost {hit.cost})."
            )
        args += (hit.limit, period, hit.cost, ALGORITHMS.index(hit.algorithm))
        if floors is not None:
            ahead, forced = floors[i]
            args += (-(-ahead // (NS // US)), int(forced))  # rounded up: never more generous
    return keys, args


def _decisions(reply: Sequence[int], hits: Sequence[Hit]) -> list[Decision]:
    decisions = []
    for i, hit in enumerate(hits):
        allowed, remaining, reset_us, retry_us, tat_us = reply[1 + 5 * i : 6 + 5 * i]
        decisions.append(
            Decision(
                allowed == 1,
                hit.limit,
                int(remaining),
                reset_us / US,
                retry_us / US,
                int(tat_us) * (NS // US),
                float(hit.period),
            )
        )
    return decisions
