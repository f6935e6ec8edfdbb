"""apiward inside your own application, in-process.

FastAPI::

    aw = Apiward()                      # settings from APIWARD_* variables
    app = FastAPI()
    aw.init_app(app)                    # lifespan, error answers, /v1/auth/*, /.well-known/*

    @app.get("/v1/customers")
    async def customers(principal: Principal = require("customers:read")): ...

    app.include_router(billing, dependencies=[require("invoices:read")])  # a whole router

Starlette or any ASGI app: ``ApiwardMiddleware`` authenticates every request (except
public paths), checks the scopes it was given and leaves the principal in
``request.state.principal``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from starlette.datastructures import State
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from apiward.adapters import dashboard
from apiward.adapters import logging as logs
from apiward.adapters.http import edge, errors
from apiward.adapters.http.deps import NOT_RUNNING
from apiward.adapters.http.openapi import document_errors
from apiward.adapters.http.routes import (
    analytics,
    check,
    clients,
    keys,
    leaks,
    metrics,
    oauth,
    root,
    tenancy,
    verify,
    webhooks,
)
from apiward.adapters.http.security import authenticate_for
from apiward.adapters.http.state import state_of
from apiward.adapters.runtime import Runtime, build
from apiward.adapters.settings import Settings, unknown_variables
from apiward.core.clock import Clock
from apiward.core.errors import ServiceUnavailable
from apiward.core.scopes import parse

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor

log = logs.get_logger("apiward.embed")


class Apiward:
    """One apiward runtime, attached to one application."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        clock: Clock | None = None,
        span_processor: SpanProcessor | None = None,
    ) -> None:
        """``span_processor`` receives the spans instead of the exporter the ``OTEL_*``
        variables configure, when tracing is on (docs/operations.md, "Tracing")."""
        self.settings = settings or Settings()
        self.errors = errors.ErrorStyle.of(self.settings)
        """How this deployment answers errors, read from its settings once: every door
        of the app answers through it (``apiward.adapters.http.errors``)."""
        self._clock = clock
        self._span_processor = span_processor
        self._runtime: Runtime | None = None

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise ServiceUnavailable(NOT_RUNNING, retry_after=1)
        return self._runtime

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Runtime]:
        """Open the store, load keys and start background work for the block's duration."""
        logs.configure(
            self.settings.log_level,
            self.settings.log_format,
            secret_prefixes=logs.secret_prefixes(self.settings.key_prefix),
        )
        for line in unknown_variables(os.environ):
            log.warning("unknown_setting", problem=line)
        runtime = build(self.settings, clock=self._clock, span_processor=self._span_processor)
        await runtime.start()
        self._runtime = runtime
        try:
            yield runtime
        finally:
            self._runtime = None
            await runtime.stop()

    def init_app(
        self,
        app: FastAPI,
        *,
        auth_routes: bool = True,
        management_routes: bool = False,
        meta_routes: bool = False,
    ) -> None:
        """Attach apiward to a FastAPI app: lifespan, error answers, request ids, routes."""
        app.state.settings = self.settings
        errors.install(app, self.errors)
        settings = self.settings
        document_errors(app, self.errors.envelope, settings.api_scopes, settings.api_scope_groups)
        fast: dict[str, edge.Handler] = {}
        under: dict[str, edge.Handler] = {}
        theirs = len(app.router.routes)
        if meta_routes:
            app.include_router(root.router)
            app.include_router(metrics.router)
        if auth_routes:
            app.include_router(oauth.router)
            app.include_router(check.router)
            fast[check.PATH] = check.fast_path
            if self.settings.forward_auth_proxy == "envoy":  # another proxy's client could
                app.include_router(check.envoy_router)  # name any path here
                under[check.ENVOY_PREFIX] = check.envoy_fast_path
            for path, answer in oauth.DIRECT.items():
                fast[path] = edge.direct(oauth.router.routes, path, answer)
        if management_routes:
            fast[verify.PATH] = verify.fast_path
            for module in (verify, keys, clients, tenancy, webhooks, leaks, analytics):
                app.include_router(module.router)
            if self.settings.dashboard_enabled:
                app.include_router(dashboard.router)
        ours = app.router.routes[theirs:]
        # The request envelope, then the fast paths; apiward's routes matched after the app's.
        edge.install(app, self.settings, self.errors, fast, prefixes=under, last=ours)
        inner = app.router.lifespan_context

        guessed_issuer = (
            auth_routes
            and not isinstance(app, edge.ServerApp)  # `apiward serve` knows its address
            and not (self.settings.public_url or self.settings.issuer)
        )

        @asynccontextmanager
        async def lifespan(app_: Any) -> AsyncIterator[Any]:
            async with self.running() as runtime:
                if guessed_issuer:
                    log.warning(
                        "issuer_not_configured",
                        issuer=self.settings.token_issuer,
                        note="Access tokens and the OAuth metadata name this issuer, made "
                        "from APIWARD_HOST and APIWARD_PORT, not from the server this app "
                        "runs on. Set APIWARD_PUBLIC_URL to the address clients use.",
                    )
                app.state.runtime = runtime
                async with inner(app_) as state:
                    yield state

        app.router.lifespan_context = lifespan


class ApiwardMiddleware:
    """Protect a whole ASGI app (Starlette, or anything else) with one declaration.

    The app gets the request envelope a FastAPI app gets from ``init_app`` (request ids,
    the body limit, the rate-limit headers, the access log and metrics), and every refusal
    is the answer ``require()`` gives: the same body, headers and request id, rendered
    through the same ``Apiward.errors`` (an unexpected failure while authenticating, a
    logged 500 in the same envelope)."""

    def __init__(
        self,
        app: ASGIApp,
        apiward: Apiward,
        *,
        scopes: Sequence[str] = (),
        public_paths: Sequence[str] = (),
    ) -> None:
        for scope in scopes:
            parse(scope)
        self.app = app
        self.apiward = apiward
        self.scopes = tuple(scopes)
        self.public_paths = tuple(public_paths)
        self._enveloped = edge.envelope(self._guard, apiward.settings, apiward.errors)
        self._host = _Host()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif state_of(scope).request_id is not None:  # inside an envelope already
            await self._guard(scope, receive, send)
        else:
            await self._enveloped(scope, receive, send)

    async def _guard(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"].startswith(self.public_paths or ("\0",)):
            await self.app(scope, receive, send)
            return
        if "app" not in scope:  # a plain ASGI app: no Starlette app set itself here
            scope["app"] = self._host
        request = Request(scope, receive)
        try:
            request.app.state.runtime = self.apiward.runtime
            await authenticate_for(request, scopes=self.scopes)
        except Exception as exc:  # what require() answers, through the app's error handlers
            response = await errors.answer(request, exc, self.apiward.errors)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)  # request.state.principal: ``remember``


class _Host:
    """``request.app`` for an app that is not Starlette's (a plain ASGI callable sets no
    ``scope["app"]``): where the authentication seam finds the runtime
    (``deps.runtime_of``)."""

    def __init__(self) -> None:
        self.state = State()
