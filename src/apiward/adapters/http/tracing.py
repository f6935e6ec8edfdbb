"""The server span of each request, around the request envelope (``apiward.adapters.tracing``).

Only an app whose settings turn tracing on has this layer (``edge.envelope``); it spans
every request, the fast paths' included, with the HTTP attributes of the OpenTelemetry
semantic conventions: method, path (never the query, which may carry a token), route
template once the request was routed, status and client address. A caller's W3C
``traceparent`` and ``tracestate`` are continued (``OTEL_PROPAGATORS`` chooses the
formats read).
"""

from __future__ import annotations

from typing import Any

from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from apiward.adapters.tracing import Tracing


class ServerSpans:
    """Runs each HTTP request inside a server span of the app's runtime's tracer (none
    while the lifespan has not built the runtime)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = getattr(scope["app"].state, "runtime", None) if "app" in scope else None
        tracing: Tracing | None = getattr(runtime, "tracing", None)
        if scope["type"] != "http" or tracing is None:
            await self.app(scope, receive, send)
            return
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.path": scope["path"],
            "url.scheme": scope.get("scheme", "http"),
            "network.protocol.version": scope.get("http_version", "1.1"),
        }
        client = scope.get("client")
        if client:
            attributes["client.address"] = client[0]
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with tracing.tracer.start_as_current_span(
            method,
            context=propagate.extract(carrier),
            kind=SpanKind.SERVER,
            attributes=attributes,
        ) as span:
            try:
                await self.app(scope, receive, send_status)
            finally:
                ended: dict[str, Any] = {"http.response.status_code": status}
                route = getattr(scope.get("route"), "path", None)
                if route:
                    ended["http.route"] = route
                    span.update_name(f"{method} {route}")
                if status >= 500:
                    ended["error.type"] = str(status)
                    span.set_status(Status(StatusCode.ERROR))
                span.set_attributes(ended)
