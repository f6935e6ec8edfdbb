"""The outermost ASGI layer: the request envelope, and the hot paths ahead of FastAPI.

Every request passes ``RequestContextMiddleware`` first (request id, body limit, the
rate-limit and deprecation headers, the access log line, metrics). Inside it,
``FastPaths`` answers the endpoints called most, before FastAPI's error middleware,
router and dependency solving: the two a protected API calls for every request of its
own, forward auth (``/v1/auth/check``) and the verify API (``/v1/keys/verify``), and the
token endpoints (``/v1/auth/token``, ``/v1/auth/refresh``), which a machine client calls
for every token; and, under ``APIWARD_FORWARD_AUTH_PROXY=envoy``, every path under
``/v1/auth/check/``, where Envoy asks. Everything else goes on into the FastAPI app as it
is. Each fast path
gives its route's exact answer (the routes stay registered, for the OpenAPI document and
for an app built without this layer). The fast paths are used only while the app has no
middleware and no app-wide dependencies of its own (``nothing_in_front``): they answer
before those, and must not pass over what the app put in front of its routes.

``install`` puts the layer around a FastAPI app's own middleware stack, so that a host
app's ``init_app`` gets it as well (docs/architecture.md section 3). The server's own app
is a ``ServerApp``, which also passes over ``FastAPI.__call__`` for the fast paths: that
call asks OpenTelemetry whether it is configured on every request, which costs about as
much as the forward-auth decision itself (bench/README.md). The fast paths are counted
in apiward's metrics, not in FastAPI's OpenTelemetry instrumentation, and traced, when
tracing is on, by apiward's own server span around the envelope.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from apiward.adapters.http import errors
from apiward.adapters.http.deps import runtime_in
from apiward.adapters.http.middleware import RequestContextMiddleware
from apiward.adapters.runtime import Runtime
from apiward.adapters.settings import Settings, tracing_reason

Handler = Callable[[ASGIApp, Scope, Receive, Send], Awaitable[None]]
"""A fast path: the inner app (to hand a request on to), then the ASGI call."""


def direct(
    routes: Sequence[BaseRoute],
    path: str,
    answer: Callable[[Request, Runtime], Awaitable[Response]],
) -> Handler:
    """A fast path that calls a route's own function, ``answer(request, runtime)``, for
    the route's methods: the route's code, without FastAPI's routing and dependency
    solving around it. An error is answered as the app's error handlers answer it."""
    route = next(r for r in routes if getattr(r, "path", None) == path)
    methods = frozenset(getattr(route, "methods", ()))

    async def handler(inner: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in methods:
            await inner(scope, receive, send)
            return
        scope["route"] = route  # the route's identity, for metrics labels and route marks
        request = Request(scope, receive)
        try:
            response = await answer(request, runtime_in(scope))
        except Exception as exc:
            response = await errors.answer(request, exc)
        await response(scope, receive, send)

    return handler


def header(scope: Scope, name: bytes) -> bytes:
    """The first value of the request header ``name`` (lower-case, as ASGI spells
    names), or empty: what Starlette's ``Headers.get`` reads, without building one."""
    for key, value in scope["headers"]:
        if key == name:
            found: bytes = value
            return found
    return b""


class FastPaths:
    """Sends a request for one of ``handlers``' paths, or for a path under one of
    ``prefixes``, to its handler, any other inward."""

    def __init__(
        self,
        app: ASGIApp,
        handlers: Mapping[str, Handler],
        prefixes: Mapping[str, Handler] | None = None,
    ) -> None:
        self.app = app
        self.handlers = dict(handlers)
        self.prefixes = dict(prefixes or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        handler = self.handlers.get(path)
        if handler is None and self.prefixes:
            handler = next((h for p, h in self.prefixes.items() if path.startswith(p)), None)
        if handler is None:
            await self.app(scope, receive, send)
        else:
            await handler(self.app, scope, receive, send)


class ServerApp(FastAPI):
    """FastAPI, with the requests for the fast paths handed straight to the stack."""

    fast_paths: frozenset[str] = frozenset()
    fast_prefixes: tuple[str, ...] = ()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and (
                scope["path"] in self.fast_paths
                or (self.fast_prefixes and scope["path"].startswith(self.fast_prefixes))
            )
            and not self.root_path
        ):
            scope["app"] = self  # what Starlette's own call sets
            if self.middleware_stack is None:
                self.middleware_stack = self.build_middleware_stack()
            await self.middleware_stack(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def envelope(app: ASGIApp, settings: Settings, style: errors.ErrorStyle) -> ASGIApp:
    """``app`` inside the request envelope the deployment's settings describe, answering
    its own errors (413) in ``style``: with tracing on, inside a server span
    (``apiward.adapters.http.tracing``); off, no layer."""
    inner = RequestContextMiddleware(
        app,
        max_body_bytes=settings.max_body_bytes,
        errors=style,
        version_header=settings.version_header,
        deprecations=settings.deprecation_headers(),
        access_log=settings.access_log,
        access_log_sample=settings.access_log_sample,
    )
    if tracing_reason(settings.tracing, os.environ) is None:
        return inner
    from apiward.adapters.http.tracing import ServerSpans

    return ServerSpans(inner)


def stack(
    inner: ASGIApp,
    settings: Settings,
    style: errors.ErrorStyle,
    handlers: Mapping[str, Handler],
    prefixes: Mapping[str, Handler] | None = None,
) -> ASGIApp:
    """The envelope around the fast paths around ``inner``."""
    fast = handlers or prefixes
    return envelope(FastPaths(inner, handlers, prefixes) if fast else inner, settings, style)


def install(
    app: FastAPI,
    settings: Settings,
    style: errors.ErrorStyle,
    handlers: Mapping[str, Handler],
    *,
    prefixes: Mapping[str, Handler] | None = None,
    last: Sequence[BaseRoute] = (),
) -> None:
    """Wrap ``app``'s middleware stack (built on its first call, the lifespan's) in this
    layer, and move the routes ``last`` behind the ones the app declared itself.
    ``prefixes``: fast paths for every path starting with one of its keys.

    Starlette builds the stack lazily from ``build_middleware_stack``; the app's own
    middleware, error handlers and router stay inside, unchanged. A router tries its
    routes in order, so apiward's routes, included by ``init_app`` before the host app
    declares its own, would be tried (and cost their matching) ahead of every one of
    the app's requests: they go last, where only requests none of the app's routes
    takes reach them.
    """
    build = app.build_middleware_stack

    def build_with_edge() -> Any:
        routes = app.router.routes
        ours = {id(route) for route in last}
        routes[:] = [r for r in routes if id(r) not in ours] + [r for r in routes if id(r) in ours]
        clear = nothing_in_front(app)
        usable = handlers if clear else {}
        under = dict(prefixes or {}) if clear else {}
        if isinstance(app, ServerApp):
            app.fast_paths = frozenset(usable)
            app.fast_prefixes = tuple(under)
        return stack(build(), settings, style, usable, under)

    app.build_middleware_stack = build_with_edge  # type: ignore[method-assign]


def nothing_in_front(app: FastAPI) -> bool:
    """Whether the app has no middleware and no app-wide dependencies of its own.

    A fast path answers before them, so it would pass over an IP allow-list, a firewall
    or a host check the app put in front of its routes. With any of them, the routes
    answer, inside them (slower, and the same answers).
    """
    return not app.user_middleware and not app.router.dependencies
