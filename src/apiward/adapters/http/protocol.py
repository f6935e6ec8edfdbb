"""The HTTP/1.1 connection ``apiward serve`` runs: uvicorn's httptools protocol with the
request head bounded, since the parser itself buffers a header of any size for ever.

Before a request reaches the app, its head (request line and header fields) must fit
in ``APIWARD_MAX_HEADER_BYTES``, hold at most ``APIWARD_MAX_HEADERS`` fields, and
arrive within ``APIWARD_HEADER_TIMEOUT_SECONDS`` of its first byte (of the connection,
for its first request). Beyond a size or a count the answer is ``431 Request Header
Fields Too Large`` (RFC 6585 5); past the time, ``408 Request Timeout`` (RFC 9110
15.5.9), or nothing to a connection that sent nothing; either way the connection is
closed. A request body that pauses that long closes its connection too. A process holds
at most ``APIWARD_MAX_CONNECTIONS`` connections: a connection beyond closes the idlest of
those waiting for a head or stalled in a body (``_make_room``). The trailer fields of a
chunked body (RFC 9112 7.1.2) are bounded by the same size. The answers are in the
deployment's error envelope (``http/errors.ErrorStyle``) with a fresh request id. A head
that stops growing in the middle of a chunk that also holds an earlier request's end is
counted from its next chunk: the overshoot is one socket read at most.

What a connection's answers write in one turn of the event loop leaves in one write at
the turn's end (``_TurnWrites``): a response's head and body together, not apart as
uvicorn writes them.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from apiward.adapters.http.errors import ErrorStyle
from apiward.adapters.http.middleware import new_request_id
from apiward.adapters.settings import Settings


@dataclass(frozen=True, slots=True)
class HeadLimits:
    """What a request head may take, and the envelope a refusal is written in."""

    max_bytes: int = 32_768
    max_fields: int = 100
    timeout: float = 10.0
    errors: ErrorStyle = field(default_factory=ErrorStyle)
    max_connections: int = 1024

    @classmethod
    def of(cls, settings: Settings) -> HeadLimits:
        """The limits ``apiward serve`` gives its connections. Read in the supervising
        process, before any worker builds its app (and its ``Apiward.errors``): the
        error style from the same settings, so the same envelope."""
        return cls(
            max_bytes=settings.max_header_bytes,
            max_fields=settings.max_headers,
            timeout=settings.header_timeout_seconds,
            max_connections=settings.connections_bound(),
            errors=ErrorStyle.of(settings),
        )


_ARRIVALS = itertools.count()
"""The order in which the process's connections arrived: the loop's clock cannot tell
apart connections accepted in one turn of the loop (uvloop reads it once per turn)."""


class _Refused(Exception):
    """Raised from a parser callback to stop the parser; the answer is already sent."""


class _Head:
    """Where a connection's awaited request head stands."""

    __slots__ = ("arrival", "last", "limits", "received", "since", "timer")

    def __init__(self, limits: HeadLimits) -> None:
        self.limits = limits
        self.received = 0
        """Bytes of the head received so far; -1 while a request is being read or
        answered (no head is awaited)."""
        self.since: float | None = None
        """When the awaited head began (the connection, for its first request); None
        until its first byte, and while no head is awaited."""
        self.timer: asyncio.TimerHandle | None = None
        self.last = 0.0
        """When the connection's last byte arrived (its start, before any)."""
        self.arrival = 0
        """The connection's place in ``_ARRIVALS``: between equal ``last`` times, the
        earlier connection is the idler."""


class _TurnWrites(asyncio.Transport):
    """A connection's transport as its requests' cycles write to it: what they write in
    one turn of the event loop is held, and leaves in one write when the turn ends
    (``release``, scheduled at the turn's first write). uvicorn writes a response's head
    and body apart; here they leave together, and the answers of several requests
    computed in one turn leave one after the other at its end. Each write to a socket is
    a system call, and one that wakes a sleeping reader costs the writer most
    (bench/README.md: "Writes held to the end of the loop's turn").

    A write that would take what is held beyond ``LIMIT`` leaves at once, after what is
    held, so a streamed body keeps the transport's back-pressure and a large one is not
    copied. Nothing is held once the transport is closing (a client that half-closed
    after its request, say: its answer is written while the transport can still send
    it) or once the connection is handed to another protocol (``direct``). Before the
    connection writes for itself (a refusal, the parser's 400, a timeout's close),
    ``release`` sends what is held, in order; ``close`` sends it before closing; once
    the connection is lost (``lost``), nothing more is written."""

    __slots__ = ("_held", "_loop", "_size", "direct", "lost", "transport")

    LIMIT = 65_536

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.transport = transport
        self._loop = loop
        self._held: list[bytes] | None = None
        self._size = 0
        self.direct = False
        """Writes go straight to the transport (the connection was upgraded)."""
        self.lost = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.lost:
            return
        if self.direct or self._size + len(data) > self.LIMIT or self.transport.is_closing():
            self.release()
            self.transport.write(data)
            return
        if type(data) is not bytes:
            data = bytes(data)  # held past the call: a buffer the app reuses must not change it
        held = self._held
        if held is None:
            self._held = [data]
            self._loop.call_soon(self.release)
        else:
            held.append(data)
        self._size += len(data)

    def release(self) -> None:
        """Send what is held now."""
        held = self._held
        if held is not None:
            self._held = None
            self._size = 0
            if not self.lost:
                self.transport.write(held[0] if len(held) == 1 else b"".join(held))

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def close(self) -> None:
        self.release()
        self.transport.close()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` with the request head bounded in size, fields and time.
    Pass it to uvicorn as ``http=functools.partial(BoundedHttpToolsProtocol,
    limits=...)`` (a partial of a module-level class survives uvicorn's worker spawn).

    The checks cost a request a few attribute writes (``bench/headers.py``): the fields
    are counted once the head is complete (its size already bounds how many there can
    be), one timer per connection, not per request, watches the time, and the state
    lives in one attribute, which keeps the instance's attributes few enough for
    CPython's fast attribute access in the inherited callbacks."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: HeadLimits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._head = _Head(limits)

    # the connection -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._writes = _TurnWrites(transport, self.loop)
        head = self._head
        head.since = head.last = self.loop.time()
        head.arrival = next(_ARRIVALS)
        head.timer = self.loop.call_later(head.limits.timeout, self._watch_head)
        if len(self.connections) > head.limits.max_connections:
            self._make_room()

    def _make_room(self) -> None:
        """Over the bound of open connections: close the one whose last byte is oldest
        among those waiting for a request head (silent, slow, idle keep-alive) or stalled
        in a request body for a second or more (of equal times, the one that connected
        first), so that none of them keeps new clients out; with none (every connection
        busy with a request), refuse this one with a 503."""
        now = self.loop.time()
        oldest: BoundedHttpToolsProtocol | None = None
        for c in self.connections:
            if c is self or not isinstance(c, BoundedHttpToolsProtocol):
                continue
            if c.transport.is_closing() or not c._evictable(now):
                continue
            if oldest is None or (c._head.last, c._head.arrival) < (
                oldest._head.last,
                oldest._head.arrival,
            ):
                oldest = c
        if oldest is None:
            self._refuse(
                503,
                "SERVICE_UNAVAILABLE",
                "The server holds as many connections as it may; retry shortly.",
                retry_after=1,
            )
            return
        oldest._writes.close()  # what it holds leaves first

    def _evictable(self, now: float) -> bool:
        """Waiting for a request head, or stalled in a request body."""
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return self._head.received >= 0
        return bool(cycle.more_body) and now - self._head.last >= 1.0

    def shutdown(self) -> None:
        self._writes.release()
        super().shutdown()

    def timeout_keep_alive_handler(self) -> None:
        self._writes.release()
        super().timeout_keep_alive_handler()

    def eof_received(self) -> None:
        # The client's FIN: the transport closes when this returns (no half-open
        # connection is kept), so what is held leaves first.
        self._writes.release()
        super().eof_received()

    def handle_websocket_upgrade(self) -> None:
        # The answers of requests before the upgrade are written as they come, not held
        # behind the new protocol's.
        self._writes.release()
        self._writes.direct = True
        super().handle_websocket_upgrade()

    def connection_lost(self, exc: Exception | None) -> None:
        self._writes.lost = True
        if self._head.timer is not None:
            self._head.timer.cancel()
            self._head.timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._writes.release()  # what the parser may answer comes after what was held
        self._unset_keepalive_if_required()
        head = self._head
        head.last = self.loop.time()
        if head.received >= 0:
            if len(data) > head.limits.max_bytes - head.received:
                self._feed_head(data)
                return
            head.received += len(data)
        self._feed(data)

    def _feed_head(self, data: bytes) -> None:
        """Feed no more of the head than its room: what follows a head complete within
        it (a body, a next request) goes on; a head still open at its end is refused."""
        head = self._head
        while data and not self.transport.is_closing():
            if head.received < 0:
                self._feed(data)
                return
            room = head.limits.max_bytes - head.received
            if room <= 0:
                self._refuse(
                    431,
                    "HEADERS_TOO_LARGE",
                    f"The request line and headers exceed {head.limits.max_bytes} bytes.",
                )
                return
            part, data = data[:room], data[room:]
            head.received += len(part)
            self._feed(part)

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError:
            if not self.transport.is_closing():  # not refused from a callback
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")

    # parser callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head.since is None:
            self._head.since = self.loop.time()

    def on_headers_complete(self) -> None:
        head = self._head
        head.received, head.since = -1, None
        if len(self.headers) > head.limits.max_fields:
            self._refuse(
                431,
                "HEADERS_TOO_LARGE",
                f"The request has more than {head.limits.max_fields} header fields.",
            )
            raise _Refused  # stops the parser: the app never sees the request
        super().on_headers_complete()
        if self.cycle is not None:
            self.cycle.transport = self._writes

    def on_chunk_header(self) -> None:
        # Until the chunk's data begins, what arrives is counted as a head: a chunk's
        # size line, or the trailer fields after the last chunk (RFC 9112 7.1.2), which
        # the parser buffers as it does header fields.
        self._head.received = 0

    def on_body(self, body: bytes) -> None:
        self._head.received = -1
        super().on_body(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head.received = 0

    # refusals ---------------------------------------------------------------------

    def _watch_head(self) -> None:
        """Close a connection whose awaited head has taken the timeout, or whose request
        body has not grown for as long; look again when the current one would."""
        head = self._head
        head.timer = None
        if self.transport.is_closing():
            return
        now, timeout, since = self.loop.time(), head.limits.timeout, head.since
        if since is not None and now - since >= timeout:
            if head.received <= 0:
                self._writes.close()  # nothing was asked: nothing to answer
                return
            self._refuse(
                408,
                "REQUEST_TIMEOUT",
                f"The request line and headers did not arrive within {timeout:g} seconds.",
            )
            return
        cycle = self.cycle
        if since is None and cycle is not None and cycle.more_body and not cycle.response_complete:
            if now - head.last >= timeout:  # a request body that stopped coming
                self._writes.close()
                return
            wait = head.last + timeout - now
        else:
            wait = timeout if since is None else since + timeout - now
        head.timer = self.loop.call_later(wait, self._watch_head)

    def _refuse(
        self, status: int, code: str, message: str, *, retry_after: int | None = None
    ) -> None:
        """Answer ``status`` in the deployment's envelope and close the connection (not
        in the middle of an earlier request's answer: then only close)."""
        self._writes.release()
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()
            return
        limits = self._head.limits
        response = limits.errors.render(status, code, code, message, new_request_id())
        content = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode("ascii")]
        for name, value in [*self.server_state.default_headers, *response.raw_headers]:
            content.extend([name, b": ", value, b"\r\n"])
        if retry_after is not None:
            content.append(b"retry-after: %d\r\n" % retry_after)
        content.extend([b"connection: close\r\n\r\n", bytes(response.body)])
        self.transport.write(b"".join(content))
        self.transport.close()
