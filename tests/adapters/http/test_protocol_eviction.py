"""Which connection makes room when a process holds ``APIWARD_MAX_CONNECTIONS``: the
idlest of those waiting for a head, in-process and against a clock that does not move
within a turn of the loop (uvloop reads its clock once per turn, so connections
accepted together arrive at the same time)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from apiward.adapters.http.protocol import BoundedHttpToolsProtocol, HeadLimits


class Transport(asyncio.Transport):
    """What the protocol asks of a socket's transport, and whether it was closed."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        extra = {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", self.port)}
        return extra.get(name, default)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


async def app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
    raise AssertionError("no request reaches the app here")


@pytest.fixture
def frozen_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A loop whose clock stands still: every connection arrives in the same turn."""
    loop = asyncio.new_event_loop()
    loop.time = lambda: 1000.0  # type: ignore[method-assign]
    yield loop
    loop.close()


def test_connections_accepted_in_one_turn_make_room_oldest_first(
    frozen_loop: asyncio.AbstractEventLoop,
) -> None:
    config = Config(app=app, log_config=None)
    state = ServerState()
    limits = HeadLimits(max_connections=8)
    transports = []
    for port in range(40_000, 40_060):
        protocol = BoundedHttpToolsProtocol(config, state, {}, frozen_loop, limits=limits)
        transport = Transport(port)
        transports.append(transport)
        protocol.connection_made(transport)
        for closed in [c for c in state.connections if c.transport.is_closing()]:
            state.connections.discard(closed)  # as connection_lost would
    still_open = [t.port for t in transports if not t.closed]
    assert still_open == list(range(40_052, 40_060))
    for connection in list(state.connections):
        connection.connection_lost(None)
