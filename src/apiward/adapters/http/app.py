"""The ASGI application."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from starlette.routing import Route

from apiward import __version__
from apiward.adapters.http import docs
from apiward.adapters.http.access import PUBLIC, declare, routes_of
from apiward.adapters.http.edge import ServerApp
from apiward.adapters.http.embed import Apiward
from apiward.adapters.settings import Settings
from apiward.core.clock import Clock

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor

DESCRIPTION = """
apiward authenticates and authorises the requests of a public HTTP API: API keys shown
once and stored hashed, scopes and roles, spaces and test/live environments.

Send a key as `Authorization: Bearer <api_key>` (use **Authorize** above), and the
target space in the space header when you work in one other than the default.
"""


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    span_processor: SpanProcessor | None = None,
) -> FastAPI:
    """Build the server. Resources are created in the lifespan, not here.
    ``span_processor``: where spans go instead of the configured exporter (``Apiward``)."""
    settings = settings or Settings()
    app = ServerApp(
        title=f"{settings.platform_name} API",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,  # apiward serves its own, with no CDN (adapters/http/docs.py)
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    Apiward(settings, clock=clock, span_processor=span_processor).init_app(
        app, auth_routes=True, management_routes=True, meta_routes=True
    )
    if settings.docs_enabled:
        app.include_router(docs.router)
    for route in app.router.routes:  # FastAPI's own route, the API's description, is
        # one of the app's own, not of an included router (no walk of every route's
        # dependencies, which costs as much as the rest of building the app)
        if isinstance(route, Route) and route.path == app.openapi_url:
            declare(PUBLIC)(route.endpoint)
    started = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        async with started(app_) as state:
            if not _heap_frozen:
                # FastAPI builds each route's dependencies at the first request through
                # its router; built now, they are frozen with the rest of the server
                for _ in routes_of(app_):
                    pass
            freeze_heap()
            yield state

    app.router.lifespan_context = lifespan
    return app


def freeze_heap() -> None:
    """Move what is alive once the server has started (modules, classes, the runtime and
    its caches) to the garbage collector's permanent generation.

    A full collection scans every tracked object; with the heap a started server holds,
    that was a pause of 60-75 ms every few seconds under load, the whole p99 of a
    request (bench/README.md). Frozen objects are never scanned, so a full collection
    looks only at what requests made since. Once per process: the first server started
    in it (a process running several apps, a test suite, freezes once), whatever the
    interpreter itself froze before (3.12 starts with a few hundred objects frozen).
    """
    global _heap_frozen
    if not _heap_frozen:
        _heap_frozen = True
        gc.collect()
        gc.freeze()


_heap_frozen = False
