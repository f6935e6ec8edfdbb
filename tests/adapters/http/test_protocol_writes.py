"""What a connection's answers write in one turn of the event loop leaves in one write at
the turn's end: a response's head with its body, pipelined answers in order, a head
whose body comes later at once, a long streamed body under back-pressure, and anything
held before the connection's own refusals or its close."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from apiward.adapters.http.protocol import BoundedHttpToolsProtocol, HeadLimits, _TurnWrites

App = Callable[[Any, Any, Any], Awaitable[None]]


class Transport(asyncio.Transport):
    """A socket's transport that records what is done to it, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, bytes]] = []
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        extra = {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 40000)}
        return extra.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.events.append(("write", bytes(data)))  # a closing transport still sends

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True
        self.events.append(("close", b""))

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    @property
    def writes(self) -> list[bytes]:
        return [data for event, data in self.events if event == "write"]

    @property
    def sent(self) -> bytes:
        return b"".join(self.writes)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def connect(
    loop: asyncio.AbstractEventLoop, app: App
) -> tuple[BoundedHttpToolsProtocol, Transport]:
    config = Config(app=app, log_config=None, lifespan="off", proxy_headers=False)
    protocol = BoundedHttpToolsProtocol(config, ServerState(), {}, loop, limits=HeadLimits())
    transport = Transport()
    protocol.connection_made(transport)
    return protocol, transport


def settle(loop: asyncio.AbstractEventLoop, turns: int = 20) -> None:
    for _ in range(turns):
        loop.run_until_complete(asyncio.sleep(0))


def request(path: str = "/", *fields: bytes) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode() + b"".join(fields) + b"\r\n"


async def hello(scope: Any, receive: Any, send: Any) -> None:
    body = scope["path"].encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


def test_a_response_leaves_in_one_write(loop: asyncio.AbstractEventLoop) -> None:
    protocol, transport = connect(loop, hello)
    protocol.data_received(request("/one"))
    settle(loop)
    assert len(transport.writes) == 1
    head, _, body = transport.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and body == b"/one"
    protocol.connection_lost(None)


def test_pipelined_answers_keep_their_order(loop: asyncio.AbstractEventLoop) -> None:
    protocol, transport = connect(loop, hello)
    protocol.data_received(request("/a") + request("/b") + request("/c", b"Connection: close\r\n"))
    settle(loop)
    bodies = [part.partition(b"\r\n\r\n")[2][:2] for part in transport.sent.split(b"HTTP/1.1 ")[1:]]
    assert bodies == [b"/a", b"/b", b"/c"]
    assert transport.events[-1] == ("close", b"")  # the last answer left before the close
    protocol.connection_lost(None)


def test_a_head_whose_body_comes_later_leaves_at_once(loop: asyncio.AbstractEventLoop) -> None:
    release = asyncio.Event()

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await release.wait()
        await send({"type": "http.response.body", "body": b"late"})

    protocol, transport = connect(loop, slow)
    protocol.data_received(request())
    settle(loop)
    assert transport.sent.startswith(b"HTTP/1.1 200 OK") and b"late" not in transport.sent
    release.set()
    settle(loop)
    assert transport.sent.endswith(b"4\r\nlate\r\n0\r\n\r\n")  # chunked: no content-length
    protocol.connection_lost(None)


def test_a_body_streamed_without_pause_is_not_held_beyond_the_limit(
    loop: asyncio.AbstractEventLoop,
) -> None:
    chunk = b"x" * 20_000

    async def stream(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(50):  # no await that yields: the loop's turn never ends
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    protocol, transport = connect(loop, stream)
    protocol.data_received(request())
    settle(loop)
    assert transport.sent.count(chunk) == 50
    assert len(transport.writes) >= 50 * len(chunk) // (_TurnWrites.LIMIT + len(chunk))
    assert max(map(len, transport.writes)) <= _TurnWrites.LIMIT + len(chunk) + 64
    protocol.connection_lost(None)


def test_what_is_held_leaves_before_the_connections_own_answer(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """An answer held in this turn, then a request the parser refuses in the same turn:
    the held answer is sent first, then the 400, then the close."""
    protocol, transport = connect(loop, hello)
    protocol._writes.write(b"held answer")
    protocol.data_received(b"NOT HTTP\r\n\r\n")
    assert transport.writes[0] == b"held answer"
    assert transport.writes[1].startswith(b"HTTP/1.1 400")
    assert transport.events[-1] == ("close", b"")
    protocol.connection_lost(None)


def test_nothing_is_held_once_the_transport_closes_and_nothing_written_once_lost(
    loop: asyncio.AbstractEventLoop,
) -> None:
    transport = Transport()
    writes = _TurnWrites(transport, loop)
    writes.write(b"held")
    transport.close()  # a closing transport still sends what it is given
    settle(loop, 2)
    writes.write(b"through")
    assert transport.writes == [b"held", b"through"]
    writes.write(b"last")
    writes.lost = True  # as connection_lost marks it
    settle(loop, 2)
    writes.write(b"after")
    assert transport.writes == [b"held", b"through", b"last"]


def test_a_client_that_half_closes_after_its_request_gets_its_answer(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """A FIN right after the request: the transport closes itself (the protocol keeps
    no half-open connection), and the answer computed after that is still written."""
    protocol, transport = connect(loop, hello)
    protocol.data_received(request("/half"))
    transport.close()
    settle(loop)
    assert transport.sent.startswith(b"HTTP/1.1 200 OK") and transport.sent.endswith(b"/half")
    protocol.connection_lost(None)


def test_a_connection_evicted_for_room_sends_what_it_holds_first(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """At the bound of open connections, the idlest waiting for a head is closed; an
    answer it holds from this turn leaves before the close, as it did unheld."""
    config = Config(app=hello, log_config=None, lifespan="off", proxy_headers=False)
    state = ServerState()
    limits = HeadLimits(max_connections=1)
    first = BoundedHttpToolsProtocol(config, state, {}, loop, limits=limits)
    held = Transport()
    first.connection_made(held)
    first._writes.write(b"answer")
    second = BoundedHttpToolsProtocol(config, state, {}, loop, limits=limits)
    second.connection_made(Transport())
    assert held.events == [("write", b"answer"), ("close", b"")]
    for connection in (first, second):
        connection.connection_lost(None)


def test_a_buffer_reused_after_its_write_does_not_change_what_leaves(
    loop: asyncio.AbstractEventLoop,
) -> None:
    transport = Transport()
    writes = _TurnWrites(transport, loop)
    buffer = bytearray(b"first")
    writes.write(buffer)
    buffer[:] = b"xxxxx"
    writes.write(memoryview(b"-second"))
    settle(loop, 2)
    assert transport.writes == [b"first-second"]
