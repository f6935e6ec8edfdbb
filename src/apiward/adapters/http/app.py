"""The ASGI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from apiward import __version__
from apiward.adapters import logging as logs
from apiward.adapters.http import errors
from apiward.adapters.http.middleware import RequestContextMiddleware
from apiward.adapters.http.routes import clients, keys, oauth, root, tenancy
from apiward.adapters.runtime import Runtime
from apiward.adapters.settings import Settings
from apiward.core.clock import Clock

DESCRIPTION = """
apiward authenticates and authorises the requests of a public HTTP API: API keys shown
once and stored hashed, scopes and roles, spaces and test/live environments.

Send a key as `Authorization: Bearer <api_key>` (use **Authorize** above), and the
target space in the space header when you work in one other than the default.
"""


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> FastAPI:
    """Build the server. Resources are created in the lifespan, not here."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logs.configure(settings.log_level, settings.log_format)
        runtime = Runtime(settings, clock=clock)
        await runtime.start()
        app.state.runtime = runtime
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title=f"{settings.platform_name} API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs" if settings.docs_enabled else None,
        redoc_url=None,
        openapi_url="/openapi.json",
        swagger_ui_parameters={"persistAuthorization": True, "tryItOutEnabled": True},
    )
    app.state.settings = settings
    errors.install(app)
    app.include_router(root.router)
    app.include_router(oauth.router)
    app.include_router(keys.router)
    app.include_router(clients.router)
    app.include_router(tenancy.router)
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_body_bytes,
        error_style=settings.error_style,
    )
    return app
