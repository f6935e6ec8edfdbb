"""The applications the HTTP benchmark serves, importable by uvicorn and granian.

- ``bare``: the floor of docs/architecture.md section 6, a raw ASGI callable answering a constant
  (no framework, no routing, no middleware).
- ``bare_auth``: the floor of an auth backend behind nginx's ``auth_request``: 200, no
  body.
- ``busy``: ``bare`` after spending ``BENCH_BUSY_US`` microseconds of its thread's CPU
  on each request: an app whose answer takes the time a real one's does
  (``bench/turns.py``).
- ``plain_app``: FastAPI with one route and no apiward at all.
- ``handwritten_app``: the same FastAPI app with ``/protected`` guarded by the smallest
  dependency a team would write by hand: the bearer token's SHA-256 digest looked up in
  a dict (the key named by ``BENCH_HANDWRITTEN_KEY``), 401 otherwise. The baseline of a
  ``require()`` route.
- ``protected_app``: FastAPI with ``Apiward().init_app(app)`` (settings from
  ``APIWARD_*``) and the same route twice: ``/open`` unprotected and ``/protected``
  behind ``require("things:read")``, exactly as README.md "Protecting your own routes".
- ``raw_check``: a what-if, not the product: ``/v1/auth/check``'s decision (the same
  ``Authenticator.authenticate``, scope check and identity headers) in a raw ASGI
  callable, to show what the endpoint costs without FastAPI around it.
"""

from __future__ import annotations

import hashlib
import os
import time
from contextlib import AsyncExitStack

from fastapi import Depends, FastAPI, HTTPException, Request
from starlette.types import Receive, Scope, Send

from apiward.adapters.http.errors import status_of
from apiward.adapters.http.routes.check import identity_headers
from apiward.adapters.runtime import Runtime
from apiward.core.errors import ApiwardError
from apiward.core.models import RequestContext
from apiward.server import Apiward, Principal, require
from apiward.services.auth import require_scopes

BODY = b'{"ok":true}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]
START = {"type": "http.response.start", "status": 200, "headers": HEADERS}
END = {"type": "http.response.body", "body": BODY}
AUTH_START = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]}
AUTH_END = {"type": "http.response.body", "body": b""}


async def bare(scope: Scope, receive: Receive, send: Send) -> None:
    """A constant JSON answer to every request; handles the lifespan protocol."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    await send(START)
    await send(END)


async def bare_auth(scope: Scope, receive: Receive, send: Send) -> None:
    """A constant 200 with no body, as an auth backend answers nginx's ``auth_request``:
    nginx reads no body of an auth subrequest, so an answer with one costs it the
    upstream connection."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    await send(AUTH_START)
    await send(AUTH_END)


_BUSY_S = float(os.environ.get("BENCH_BUSY_US", "0")) / 1e6


async def busy(scope: Scope, receive: Receive, send: Send) -> None:
    """``bare``, after ``BENCH_BUSY_US`` µs of this thread's CPU spent in a loop."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    until = time.thread_time() + _BUSY_S
    while time.thread_time() < until:
        pass
    await send(START)
    await send(END)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def plain_app() -> FastAPI:
    app = FastAPI()

    @app.get("/open")
    async def open_() -> dict[str, bool]:
        return {"ok": True}

    return app


def handwritten_app() -> FastAPI:
    app = plain_app()
    key = os.environ["BENCH_HANDWRITTEN_KEY"]
    owners: dict[str, dict[str, object]] = {
        hashlib.sha256(key.encode()).hexdigest(): {"org": "bench", "scopes": ["things:read"]}
    }

    async def caller(request: Request) -> dict[str, object]:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        owner = owners.get(hashlib.sha256(token.encode()).hexdigest())
        if scheme.lower() != "bearer" or owner is None:
            raise HTTPException(401, "invalid key")
        return owner

    @app.get("/protected")
    async def protected(owner: dict[str, object] = Depends(caller)) -> dict[str, bool]:
        return {"ok": True}

    return app


def protected_app() -> FastAPI:
    app = FastAPI()
    Apiward().init_app(app)

    @app.get("/open")
    async def open_() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/protected")
    async def protected(principal: Principal = require("things:read")) -> dict[str, bool]:
        return {"ok": True}

    return app


class RawCheck:
    """``GET /v1/auth/check`` without a framework: headers in, decision out."""

    def __init__(self) -> None:
        self.apiward = Apiward()
        self.stack = AsyncExitStack()
        self.runtime: Runtime | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self.runtime = await self.stack.enter_async_context(self.apiward.running())
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await self.stack.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        assert self.runtime is not None
        headers = dict(scope["headers"])
        wanted = headers.get(b"x-apiward-require", b"").decode().replace(",", " ").split()
        context = RequestContext(
            ip=(scope.get("client") or ("",))[0] or None,
            user_agent=headers.get(b"user-agent", b"").decode("latin-1")[:512] or None,
        )
        status, out = 200, []
        try:
            principal = await self.runtime.auth.authenticate(
                headers.get(b"authorization", b"").decode("latin-1") or None, context
            )
            require_scopes(principal, wanted)
            out = [(k.lower().encode(), v.encode()) for k, v in identity_headers(principal).items()]
        except ApiwardError as exc:
            status = status_of(exc)
        out.append((b"content-length", b"0"))
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": b""})


def raw_check() -> RawCheck:
    return RawCheck()
