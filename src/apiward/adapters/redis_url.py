"""Where Redis is: one server (``redis://``, ``rediss://``, ``unix://``) or the master
of a Sentinel group (``redis+sentinel://``), read from ``APIWARD_REDIS_URL``.

A Sentinel URL lists the sentinels and names the master they watch
(README, "Running several processes")::

    redis+sentinel://[[user]:password@]host:port[,host:port...]/master-name[/db]

The credentials are the master's (and its replicas'); ``rediss+sentinel://`` speaks TLS
to the master. The client asks the sentinels for the master's address before each new
connection, so after a failover (the replica promoted) new connections go to the new
master, and connections to the old one are closed (redis-py's ``SentinelConnectionPool``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
SENTINEL_PORT = 26379


@dataclass(frozen=True, slots=True)
class SentinelUrl:
    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False


def check(url: str) -> None:
    """Raise ``ValueError`` saying what is wrong with a Redis URL (the settings' check)."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme in SENTINEL_SCHEMES:
        sentinel(url)
    elif scheme not in SCHEMES:
        raise ValueError(
            "must start with redis://, rediss://, unix:// or, for a Sentinel group, "
            "redis+sentinel://host:port,host:port/master-name"
        )


def sentinel(url: str) -> SentinelUrl | None:
    """The sentinels and master a ``redis+sentinel://`` URL names; None for any other
    URL; ``ValueError`` for a malformed one."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SENTINEL_SCHEMES:
        return None
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        hosts, userinfo = netloc, ""
    username = password = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = tuple(_host_port(part) for part in hosts.split(",") if part.strip())
    if not sentinels:
        raise ValueError("a Sentinel URL lists at least one sentinel: host:port[,host:port...]")
    parts = [unquote(p) for p in path.split("/") if p]
    if not parts:
        raise ValueError(
            "a Sentinel URL names the master after the hosts: "
            "redis+sentinel://host:port,host:port/master-name[/db]"
        )
    if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise ValueError(f"after the master's name, only a database number may follow: {path!r}")
    return SentinelUrl(
        sentinels,
        parts[0],
        int(parts[1]) if len(parts) == 2 else 0,
        username,
        password,
        scheme.lower().startswith("rediss"),
    )


def _host_port(text: str) -> tuple[str, int]:
    text = text.strip()
    if text.startswith("["):  # [::1]:26379
        host, _, port = text[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    if not host:
        raise ValueError(f"a sentinel needs a host: {text!r}")
    if not port:
        return host, SENTINEL_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"a sentinel's port must be a number from 1 to 65535: {text!r}")
    return host, int(port)


class SentinelClient(aioredis.Redis):
    """A client of a Sentinel group's master that also closes its connections to the
    sentinels when it is closed."""

    sentinels: list[aioredis.Redis] = []  # noqa: RUF012 (set once per client)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        for sentinel in self.sentinels:
            await sentinel.aclose()


class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """The master's address from the sentinels, the queue of the blocking pool."""


def sentinel_master(
    address: SentinelUrl, *, pool_timeout: float | None = None, **pool: Any
) -> SentinelClient:
    """A client of the group's current master, found through the sentinels; ``pool``
    holds the connections' settings (timeouts, retry, size), which the sentinels'
    own connections share for their timeouts. With ``pool_timeout``, a call past
    ``max_connections`` in flight waits that long for a connection, as a single
    server's ``BlockingConnectionPool`` does, instead of failing at once."""
    timeouts: dict[str, Any] = {
        k: pool[k] for k in ("socket_timeout", "socket_connect_timeout") if k in pool
    }
    group = Sentinel(list(address.sentinels), sentinel_kwargs=timeouts, **timeouts)
    if pool_timeout is not None:
        pool.update(connection_pool_class=BlockingSentinelPool, timeout=pool_timeout)
    client: SentinelClient = group.master_for(
        address.master,
        redis_class=SentinelClient,
        db=address.db,
        username=address.username,
        password=address.password,
        ssl=address.tls,
        **pool,
    )
    client.sentinels = list(group.sentinels)
    return client
