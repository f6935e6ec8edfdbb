"""``GET /`` (the echo of docs/compatibility.md), ``/healthz`` and ``/readyz``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from apiward.adapters.http.access import PUBLIC, declare
from apiward.adapters.http.deps import CountriesDep, RuntimeDep, SettingsDep
from apiward.adapters.http.security import (
    is_exempt,
    remember,
    request_context,
)
from apiward.core.errors import ApiwardError, ServiceUnavailable

router = APIRouter()


@router.get("/", tags=["Meta"], summary="Who am I? (works with and without a credential)")
@declare(PUBLIC)
async def root(
    request: Request,
    settings: SettingsDep,
    countries: CountriesDep,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Echo whether the request is authenticated, its environment, API version and origin."""
    principal = None
    context = request_context(request)
    if authorization := request.headers.get("authorization"):
        try:
            principal = remember(
                request,
                await runtime.auth.authenticate(
                    authorization, replace(context, acts_in_space=False), exempt=is_exempt(request)
                ),
            )
        except ApiwardError:
            principal = None
    version = None if principal is None else settings.version(principal.api_version)
    return {
        "platform": settings.platform_name,
        "tagline": settings.tagline,
        "status": {
            "environment": principal.environment if principal else None,
            "isAuthenticated": principal is not None,
        },
        "apiVersion": None
        if version is None
        else {
            "id": version.id,
            "release": {"name": version.name or None, "date": version.date.isoformat()},
            "deprecated": version.deprecated,
            "apiSchemas": {"openApi": version.openapi_url or str(request.url_for("openapi"))},
        },
        "requestOrigin": {
            # The country a trusted proxy's header names, else where a database places it.
            "country": context.country or countries.placed(context.ip),
            "ipAddress": context.ip,
        },
    }


@router.get("/healthz", tags=["Meta"], summary="Liveness")
@declare(PUBLIC)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", tags=["Meta"], summary="Readiness: the database (and Redis) answer")
@declare(PUBLIC)
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    """503 while the database, or a configured Redis, cannot be reached. With Redis down
    and `APIWARD_RATE_LIMIT_FAILURE_MODE=open`, the server still serves (degraded). Redis
    is asked within `APIWARD_REDIS_TIMEOUT_SECONDS`, and not at all while the rate
    limiter already knows it is down (a background probe asks until it answers); on
    PostgreSQL, `notifications` is degraded while the connection that brings invalidations
    at once is being made again (they arrive by the poll meanwhile); with Redis,
    `invalidation_push` is degraded while the subscription to pushed invalidations is
    being made again (the poll runs fast meanwhile)."""
    checks: dict[str, str] = {}
    try:
        await runtime.store.ping()
        checks["database"] = "ok"
    except ApiwardError as exc:
        checks["database"] = exc.message
    redis = await runtime.ping_redis()
    if redis is not None:
        degraded = runtime.settings.rate_limit_failure_mode == "open"
        checks["redis"] = "ok" if redis else ("degraded" if degraded else "unreachable")
    if runtime.listener is not None:  # PostgreSQL: notifications, else the poll alone
        checks["notifications"] = "ok" if runtime.listener.connected else "degraded"
    subscription = runtime.subscription if runtime.built("subscription") else None
    if subscription is not None and subscription.running:
        checks["invalidation_push"] = "ok" if subscription.connected else "degraded"
    ready = all(v in ("ok", "degraded") for v in checks.values())
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
        headers=None if ready else {"Retry-After": str(ServiceUnavailable().retry_after)},
    )
