"""The HTTP/1.1 connection ``apiward serve`` runs: uvicorn's httptools protocol with the
request head bounded, since the parser itself buffers a header of any size for ever.

Before a request reaches the app, its head (request line and header fields) must fit
in ``APIWARD_MAX_HEADER_BYTES``, hold at most ``APIWARD_MAX_HEADERS`` fields, and
arrive within ``APIWARD_HEADER_TIMEOUT_SECONDS`` of its first byte (of the connection,
for its first request). Beyond a size or a count the answer is ``431 Request Header
Fields Too Large`` (RFC 6585 5); past the time, ``408 Request Timeout`` (RFC 9110
15.5.9), or nothing to a connection that sent nothing; either way the connection is
closed. The answers are in the deployment's error envelope (``http/errors.render``)
with a fresh request id. A head that stops growing in the middle of a chunk that
also holds an earlier request's end is counted from its next chunk: the overshoot is
one socket read at most.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from apiward.adapters.http.errors import render
from apiward.adapters.http.middleware import new_request_id
from apiward.adapters.settings import Settings


@dataclass(frozen=True, slots=True)
class HeadLimits:
    """What a request head may take, and the envelope a refusal is written in."""

    max_bytes: int = 32_768
    max_fields: int = 100
    timeout: float = 10.0
    error_style: str = "default"
    error_messages: Mapping[str, str] = field(default_factory=dict)
    error_fields: tuple[str, ...] | None = None

    @classmethod
    def of(cls, settings: Settings) -> HeadLimits:
        return cls(
            max_bytes=settings.max_header_bytes,
            max_fields=settings.max_headers,
            timeout=settings.header_timeout_seconds,
            error_style=settings.error_style,
            error_messages=dict(settings.error_messages),
            error_fields=tuple(settings.error_fields) if settings.error_fields else None,
        )


class _Refused(Exception):
    """Raised from a parser callback to stop the parser; the answer is already chosen."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` with the request head bounded in size, fields and time.
    Pass it to uvicorn as ``http=functools.partial(BoundedHttpToolsProtocol,
    limits=...)`` (a partial of a module-level class survives uvicorn's worker spawn)."""

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
        self._limits = limits
        self._in_head = True
        self._head_bytes = 0
        self._head_fields = 0
        self._begun = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._refusal: tuple[int, str, str] | None = None

    # the connection -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        while data and not self.transport.is_closing():
            if not self._in_head:
                self._feed(data)  # a body, and whatever follows it in this read
                return
            room = self._limits.max_bytes - self._head_bytes
            if room <= 0:
                self._refuse(
                    431,
                    "HEADERS_TOO_LARGE",
                    f"The request line and headers exceed {self._limits.max_bytes} bytes.",
                )
                return
            part, data = data[:room], data[room:]
            self._head_bytes += len(part)
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
            if self._refusal is not None:
                self._refuse(*self._refusal)
            else:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")

    # parser callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._begun = True
        self._head_fields = 0
        self._start_head_timer()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_fields += 1
        if self._head_fields > self._limits.max_fields:
            self._refusal = (
                431,
                "HEADERS_TOO_LARGE",
                f"The request has more than {self._limits.max_fields} header fields.",
            )
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_bytes, self._begun = True, 0, False

    # refusals ---------------------------------------------------------------------

    def _start_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self._limits.timeout, self._head_too_slow)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if not self._in_head or self.transport.is_closing():
            return
        if not self._begun:
            self.transport.close()  # nothing was asked: nothing to answer
            return
        self._refuse(
            408,
            "REQUEST_TIMEOUT",
            f"The request line and headers did not arrive within {self._limits.timeout:g} seconds.",
        )

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer ``status`` in the deployment's envelope and close the connection (not
        in the middle of an earlier request's answer: then only close)."""
        self._stop_head_timer()
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()
            return
        limits = self._limits
        response = render(
            limits.error_style,
            status,
            code,
            code,
            message,
            new_request_id(),
            messages=limits.error_messages,
            fields=limits.error_fields,
        )
        content = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode("ascii")]
        for name, value in [*self.server_state.default_headers, *response.raw_headers]:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend([b"connection: close\r\n\r\n", bytes(response.body)])
        self.transport.write(b"".join(content))
        self.transport.close()
