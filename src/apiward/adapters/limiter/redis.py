"""Limiter state in Redis: exact across every process and machine.

One Lua script decides one request (any number of limits, all or nothing) in one
round trip and returns everything the headers need. It reads the clock with the
server's ``TIME``, so the app machines' clocks may disagree without effect.

Calling ``TIME`` before a write needs effects replication, the only mode since
Redis 7.0 and the default since 5.0 (``redis.replicate_commands()`` is a no-op
there), so the script does not call it: Redis >= 5 or Valkey is required.

Redis errors never leave this module: ``_bounded`` turns them, and a call that outlasts
its timeout, into ``ServiceUnavailable`` chained with ``from``, as httpx maps httpcore's
errors.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

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
    to_ticks,
)

# KEYS: one key per limit. ARGV[1]: "" to use the server clock, or a time in
# microseconds (tests only); ARGV[2]: "1" to store, "0" to peek; then six per key:
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
local store = ARGV[2] == '1'
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


class _Script:
    """A Lua script run with EVALSHA, loaded with SCRIPT LOAD when Redis lacks it."""

    def __init__(self, client: aioredis.Redis, source: str) -> None:
        self._client = client
        self._source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        try:
            return await self._client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            # A restarted or flushed server forgot it (SCRIPT FLUSH, failover).
            self.sha = await self._client.script_load(self._source)
            return await self._client.evalsha(self.sha, len(keys), *keys, *args)


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
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "",
        timeout: float | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self._client = client
        self._prefix = prefix
        if timeout is None:  # the client's socket timeout, as ``connect`` set it
            timeout = client.connection_pool.connection_kwargs.get("socket_timeout") or 0.5
        self.timeout: float = timeout
        self._clock = clock
        self._gcra = _Script(client, GCRA_SCRIPT)
        self._refund = _Script(client, REFUND_SCRIPT)
        self._reset = _Script(client, RESET_SCRIPT)

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
        async with _bounded(self.timeout):
            await self._reset([self._prefix + bounded_key(key)], [])

    async def refund(self, hits: Sequence[Hit]) -> None:
        keys, args = _arguments(hits, self._prefix)
        async with _bounded(self.timeout):
            await self._refund(keys, args)

    async def ping(self) -> None:
        """Raise ``ServiceUnavailable`` when Redis does not answer within ``timeout``."""
        async with _bounded(self.timeout):
            await self._client.ping()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _run(
        self,
        hits: Sequence[Hit],
        *,
        store: bool,
        now_us: int | None = None,
        floors: Sequence[Floor] | None = None,
        enforced: int | None = None,
    ) -> list[Decision]:
        keys, args = _arguments(hits, self._prefix, floors or [NO_FLOOR] * len(hits))
        if now_us is None and self._clock is not None:
            now_us = self._clock()
        head = ["" if now_us is None else now_us, int(store)]
        tail = len(hits) if enforced is None else enforced
        async with _bounded(self.timeout):
            reply = await self._gcra(keys, [*head, *args, tail])
        return _decisions(reply, hits)


def _arguments(
    hits: Sequence[Hit], prefix: str, floors: Sequence[Floor] | None = None
) -> tuple[list[str], list[int]]:
    """The keys and the script's arguments: four per key, six with ``floors``."""
    if not hits:
        raise ValueError("hit_all needs at least one limit to check.")
    keys = [prefix + bounded_key(hit.key) for hit in hits]
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
