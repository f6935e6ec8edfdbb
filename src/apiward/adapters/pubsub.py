"""Invalidations pushed through Redis pub/sub: published once committed, received by
every process (docs/architecture.md, "Pushed invalidations").

A message is one invalidation row as JSON: its sequence number, kind, target and time.
The target is an identifier (a credential's digest, an organisation's or a client's id,
a token's ``jti`` or a session's id, a signing key's ``kid``), never a secret: nothing
published lets its reader authenticate. A receiver trusts a message for a cache drop or
an early read of the invalidation log and nothing else (``services/invalidations.py``),
so a forged one can do no more than that; a lost one is applied by the log's poll.

``Publisher`` sends without holding up the transaction that wrote the rows;
``Subscription`` keeps one subscribing connection, made again with back-off whenever it
is lost, and says whether it is up (the poll of the log runs fast while it is not).

On a Redis Cluster (``APIWARD_REDIS_CLUSTER``) the channel is a shard channel
(``SPUBLISH``/``SSUBSCRIBE``, Redis 7): its messages go to the node that holds the
channel's slot and to no other, where a plain ``PUBLISH`` is copied to every node of the
cluster over the cluster bus; the subscription follows the slot to its node (and to a
new one after a failover or a migration).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterPubSub, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from apiward.adapters import redis_url
from apiward.adapters.logging import get_logger
from apiward.core.models import Invalidation
from apiward.core.readings import Reading
from apiward.services.background import cancel

log = get_logger("apiward.pubsub")

CHANNEL = "apiward:invalidations"
"""Followed by ``:`` and the database number (``channel``)."""
MAX_MESSAGE = 512
"""Bytes: a row is far shorter (its target is at most 128 characters)."""


Client = aioredis.Redis | RedisCluster


def client(
    url: str, *, timeout: float, read_timeout: float | None, retries: int, cluster: bool
) -> Client:
    """A client of ``url`` (a single server, a Sentinel group's master, or with
    ``cluster`` any node of a Redis Cluster). The publisher retries once (a connection
    closed by a restart or a failover); the subscription never does on its own: a lost
    connection is its to notice."""
    settings: dict[str, Any] = {
        "socket_timeout": read_timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), retries),
    }
    if cluster:
        return RedisCluster.from_url(url, **settings)
    address = redis_url.sentinel(url)
    if address is not None:
        made: aioredis.Redis = redis_url.sentinel_master(address, **settings)
        return made
    return aioredis.Redis.from_url(url, **settings)


def channel(redis: Client) -> str:
    """The channel of the client's database: pub/sub channels are the server's, not a
    database's, and deployments that share a Redis on separate databases stay apart (a
    Cluster has database 0 only)."""
    if isinstance(redis, RedisCluster):
        return f"{CHANNEL}:0"
    return f"{CHANNEL}:{redis.connection_pool.connection_kwargs.get('db', 0)}"


def encode(row: Invalidation) -> str:
    return json.dumps(
        {"seq": row.seq, "kind": row.kind, "target": row.target, "at": row.created_at.isoformat()},
        separators=(",", ":"),
    )


def decode(data: bytes | str) -> Invalidation | None:
    """The row a message carries, or None when it is not one (malformed or foreign)."""
    if len(data) > MAX_MESSAGE:
        return None
    try:
        fields = json.loads(data)
        seq, kind, target = fields["seq"], fields["kind"], fields["target"]
        at = datetime.fromisoformat(fields["at"])
    except (ValueError, TypeError, KeyError):
        return None
    if not (
        isinstance(seq, int)
        and isinstance(kind, str)
        and isinstance(target, str)
        and len(target) <= 128
        and at.tzinfo is not None
    ):
        return None
    return Invalidation(seq, kind, target, at)


class Publisher:
    """Publishes the rows a transaction wrote, in the background of the write: a change
    is never delayed nor failed by Redis (its rows are in the log either way)."""

    def __init__(self, url: str, *, timeout: float, cluster: bool = False) -> None:
        self._client = client(
            url, timeout=timeout, read_timeout=timeout, retries=1, cluster=cluster
        )
        self._timeout = timeout
        self._channel = channel(self._client)
        self._pending: set[asyncio.Task[None]] = set()
        self.published = 0
        self.failures = 0

    def readings(self) -> list[Reading]:
        return [
            Reading.counter(
                "invalidations_published", "Invalidations pushed to every process.", self.published
            ),
            Reading.counter(
                "invalidations_publish_failures",
                "Invalidations Redis did not take (the other processes read them from the "
                "log at their next poll).",
                self.failures,
            ),
        ]

    def announce(self, rows: Sequence[Invalidation]) -> None:
        task = asyncio.get_running_loop().create_task(self.publish(list(rows)))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def publish(self, rows: Sequence[Invalidation]) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                if isinstance(self._client, RedisCluster):
                    for row in rows:  # a few per transaction; the slot's node in turn
                        await self._client.spublish(self._channel, encode(row))
                else:
                    async with self._client.pipeline(transaction=False) as pipe:
                        for row in rows:
                            pipe.publish(self._channel, encode(row))
                        await pipe.execute()
        except Exception as exc:  # any Redis or network error: the log's poll carries them
            self.failures += len(rows)
            log.warning("invalidation_publish_failed", rows=len(rows), error=type(exc).__name__)
        else:
            self.published += len(rows)

    async def aclose(self) -> None:
        """Let the messages under way go (each bounded by the timeout), then close."""
        if self._pending:
            await asyncio.wait(list(self._pending))
        await self._client.aclose()


class Subscription:
    """One subscribing connection per process, kept alive.

    ``on_row`` gets each well-formed row; ``on_change(up)`` runs when the subscription
    comes up or is lost. Lost means a Redis or network error, or no answer to a ping
    within ``timeout`` after ``idle`` seconds of silence (a hung server); it is made
    again after ``min_delay`` seconds, doubling up to ``max_delay``.
    """

    def __init__(
        self,
        url: str,
        on_row: Callable[[Invalidation], None],
        on_change: Callable[[bool], None],
        *,
        timeout: float,
        cluster: bool = False,
        idle: float = 5.0,
        min_delay: float = 0.25,
        max_delay: float = 30.0,
    ) -> None:
        self._url = url
        self._cluster = cluster
        self._on_row = on_row
        self._on_change = on_change
        self._timeout = timeout
        self._idle = idle
        self._min_delay = min_delay
        self._max_delay = max_delay
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        """Whether pushed invalidations arrive now."""
        self.losses = 0
        self.received = 0
        self.rejected = 0

    def readings(self) -> list[Reading]:
        return [
            Reading.gauge(
                "invalidation_push_connected",
                "1 while invalidations are pushed to this process, 0 while its "
                "subscription is made again (the log is polled fast meanwhile).",
                1 if self.connected else 0,
            ),
            Reading.counter(
                "invalidation_push_lost", "Times the subscription was lost.", self.losses
            ),
            Reading.counter(
                "invalidations_received", "Pushed invalidations received.", self.received
            ),
            Reading.counter(
                "invalidations_rejected",
                "Messages on the invalidation channel that were not an invalidation.",
                self.rejected,
            ),
        ]

    @property
    def running(self) -> bool:
        """Whether it was started (the server's), connected or not."""
        return self._task is not None

    def start(self) -> None:
        """Subscribe in the background: a Redis down at start is a lost subscription."""
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
        self.connected = False

    async def _run(self) -> None:
        delay = self._min_delay
        while True:
            redis = client(
                self._url,
                timeout=self._timeout,
                read_timeout=None,
                retries=0,
                cluster=self._cluster,
            )
            pubsub = redis.pubsub()
            reason = "closed"
            try:
                async with asyncio.timeout(self._timeout * 4):
                    await _subscribe(pubsub, channel(redis), self._timeout)
                self._set(True)
                delay = self._min_delay
                await self._listen(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any Redis or network error: subscribe again
                reason = type(exc).__name__
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await redis.aclose()
            if self.connected:
                self.losses += 1
                log.warning(
                    "invalidation_push_lost",
                    error=reason,
                    note="Subscribing again; until then the invalidation log is polled fast.",
                )
                self._set(False)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_delay)

    async def _listen(self, pubsub: Any) -> None:
        """Apply each message; after ``idle`` seconds of silence ping on the subscribing
        connection itself, whose answer must come within ``timeout``. An unsubscription
        the server makes (a shard channel's slot moved to another node, or its node
        demoted) loses the subscription, which is then made again where the slot is."""
        sharded = isinstance(pubsub, ClusterPubSub)
        receive = pubsub.get_sharded_message if sharded else pubsub.get_message
        heard = time.monotonic()
        pinged = False
        while True:
            message = await receive(timeout=min(self._idle, 1.0))
            now = time.monotonic()
            if message is None:
                if pinged and now - heard > self._idle + self._timeout:
                    raise TimeoutError("no answer to a ping")
                if not pinged and now - heard > self._idle:
                    await _ping(pubsub)
                    pinged = True
                continue
            heard, pinged = now, False
            kind = message.get("type")
            if kind in ("message", "smessage"):
                self._take(message["data"])
            elif kind in ("unsubscribe", "sunsubscribe"):
                raise ConnectionError(f"the server ended the subscription ({kind})")
            # else a pong

    def _take(self, data: bytes | str) -> None:
        row = decode(data)
        if row is None:
            self.rejected += 1
            return
        self.received += 1
        self._on_row(row)

    def _set(self, up: bool) -> None:
        if up:
            log.info("invalidation_push_connected", losses=self.losses)
        self.connected = up
        self._on_change(up)


async def _ping(pubsub: Any) -> None:
    """A ping on the subscribing connection (each node's, for a shard channel): its
    answer comes back as a message."""
    if isinstance(pubsub, ClusterPubSub):
        for node in list(pubsub.node_pubsub_mapping.values()):
            await node.ping()
    else:
        await pubsub.ping()


async def _subscribe(pubsub: Any, name: str, wait: float) -> None:
    """Subscribe ``pubsub`` to ``name`` and read the confirmation: a shard channel on a
    Cluster, a channel otherwise."""
    if isinstance(pubsub, ClusterPubSub):
        await pubsub.ssubscribe(name)
        await pubsub.get_sharded_message(timeout=wait)
    else:
        await pubsub.subscribe(name)
        await pubsub.get_message(timeout=wait)
