"""Pure ASGI middleware: request ids, access logs and the body size limit.

The access log is a choice (``APIWARD_ACCESS_LOG``): a JSON line costs more than the
whole forward-auth decision (bench/README.md, "What observability costs"), and the
proxy in front of apiward, or the host app's server, already logs every request. The
default, ``errors``, keeps the answers someone has to look at (every 4xx and 5xx, and
requests that failed), each with the request id its client was given; ``sampled`` adds
a share of the successful ones, ``all`` every one, ``off`` none. Metrics count every
request in every mode.
"""

from __future__ import annotations

import contextvars
import os
import random
import re
import time
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from apiward.adapters.http.errors import ErrorStyle
from apiward.adapters.http.state import state_of
from apiward.adapters.logging import get_logger
from apiward.adapters.metrics import observe_request

log = get_logger("apiward.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def _logged_variable(name: str) -> contextvars.ContextVar[Any]:
    """The context variable ``structlog.contextvars`` keeps ``name`` in: setting it is
    ``bind_contextvars``, and its ``...`` is ``unbind_contextvars`` (what every log
    line's ``merge_contextvars`` reads), without their per-call look-up of the variable
    by name."""
    token = structlog.contextvars.bind_contextvars(**{name: ...})[name]
    token.var.reset(token)
    return token.var


_LOGGED_REQUEST_ID = _logged_variable("request_id")


def new_request_id() -> str:
    """A random UUID (version 4, RFC 9562) as text, for a request that brought no id.

    ``str(uuid.uuid4())`` builds a ``UUID`` object on the way, most of its cost (a tenth
    of the envelope's); the same 122 random bits are formatted here directly, from the
    operating system's generator, 256 ids at a time (one system call each was the
    envelope's largest item). Taking one is a ``list.pop``, atomic without a lock for
    the server's loop and any thread of a host app alike; a forked process draws its
    own.
    """
    while True:
        try:
            return _ids.pop()
        except IndexError:  # another thread may take the new batch first: draw again
            _ids.extend(_batch())


def _batch() -> list[str]:
    digits = os.urandom(16 * _POOLED).hex()
    return [
        f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"
        for h in (digits[at : at + 32] for at in range(0, len(digits), 32))
    ]


_POOLED = 256
_ids: list[str] = []
os.register_at_fork(after_in_child=_ids.clear)


_VARIANT = {c: "89ab"[int(c, 16) % 4] for c in "0123456789abcdef"}
"""The variant nibble, 10xx (RFC 9562 section 4.1), from a random one."""


class RequestContextMiddleware:
    """Gives every request an id (kept from ``X-Request-Id`` when sane), echoes it, logs it."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        errors: ErrorStyle,
        version_header: str = "apiward-version",
        deprecations: dict[str, dict[str, str]] | None = None,
        access_log: str = "all",
        access_log_sample: float = 0.0,
    ) -> None:
        if access_log not in ("all", "errors", "sampled", "off"):
            raise ValueError(f"access_log: all, errors, sampled or off, not {access_log!r}")
        self.app = app
        self.access_log = access_log
        self.sample = access_log_sample
        self.version_header = version_header.lower().encode()
        self.deprecations = {
            version: [(k.lower().encode(), v.encode()) for k, v in headers.items()]
            for version, headers in (deprecations or {}).items()
        }
        self.max_body = max_body_bytes
        self.errors = errors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = state_of(scope)
        if state.request_id is not None:
            # Inside another envelope already (an app mounted in a host app that has
            # one): the request keeps the outer one's id, limit, log line and count.
            await self.app(scope, receive, send)
            return
        incoming = ""
        length = None
        requested = ""
        version_header = self.version_header
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
            elif name == b"content-length":
                length = value
            elif name == version_header:
                requested = value.decode("latin-1")
        request_id = incoming if incoming and _REQUEST_ID.match(incoming) else new_request_id()
        state.request_id = request_id
        _LOGGED_REQUEST_ID.set(request_id)  # ``bind_contextvars(request_id=...)``
        start = time.perf_counter()
        status = 500

        rejected = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if rejected:
                return  # the 413 already went out; the app's answer is dropped
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                names = {k.lower() for k, _ in headers}
                if b"x-request-id" not in names:
                    headers.append((b"x-request-id", request_id.encode()))
                limits = state.rate_limit_headers
                if limits and b"x-ratelimit-limit" not in names:
                    headers.extend((k.lower().encode(), v.encode()) for k, v in limits.items())
                if self.deprecations:
                    # The version the request was served in: the principal's (header, or
                    # the key's pinned one), else the one the header asked for.
                    served = state.api_version or requested
                    headers.extend(self.deprecations.get(served, ()))
                message["headers"] = headers
            await send(message)

        seen = 0

        async def limited_receive() -> Message:
            # A body without Content-Length (chunked) is counted as it streams: past the
            # limit, the client gets its 413 and the app sees a disconnect.
            nonlocal seen, rejected, status
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body and not rejected:
                    await self._too_large(request_id, send_wrapper)
                    status, rejected = 413, True
                    return {"type": "http.disconnect"}
            return message

        failed = True
        try:
            if length is not None and (not length.isdigit() or int(length) > self.max_body):
                await self._too_large(request_id, send_wrapper)
                status = 413
            else:
                await self.app(scope, limited_receive, send_wrapper)
            failed = False
        except Exception:
            if not rejected:
                raise
        finally:
            elapsed = time.perf_counter() - start
            if self._logs(status, failed):
                log.info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                    client=(scope.get("client") or ("-",))[0],
                )
            observe_request(scope, state, status, elapsed)
            _LOGGED_REQUEST_ID.set(...)  # ``unbind_contextvars("request_id")``

    def _logs(self, status: int, failed: bool) -> bool:
        """Whether this answer gets an access log line (``APIWARD_ACCESS_LOG``)."""
        mode = self.access_log
        if mode == "errors":  # the default: most answers stop here
            return status >= 400 or failed
        if mode == "all" or (mode != "off" and (status >= 400 or failed)):
            return True
        return mode == "sampled" and random.random() < self.sample  # noqa: S311 (a log sample)

    async def _too_large(self, request_id: str, send: Send) -> None:
        response = self.errors.render(
            413,
            "PAYLOAD_TOO_LARGE",
            "PAYLOAD_TOO_LARGE",
            f"The request body exceeds {self.max_body} bytes.",
            request_id,
        )
        await response({"type": "http"}, _nothing, send)


async def _nothing() -> Message:
    return {"type": "http.disconnect"}
