"""``GET /`` (the Monime-style echo), ``/healthz`` and ``/readyz``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from apiward.adapters.http.security import authenticate, request_context, runtime_of
from apiward.core.errors import ApiwardError

router = APIRouter()


@router.get("/", tags=["Meta"], summary="Who am I? (works with and without a credential)")
async def root(request: Request) -> dict[str, Any]:
    """Echo whether the request is authenticated, its environment, API version and origin."""
    runtime = runtime_of(request)
    settings = runtime.settings
    environment = None
    version = settings.version(request.headers.get(settings.version_header))
    if request.headers.get("authorization"):
        try:
            environment = (await authenticate(request)).environment
        except ApiwardError:
            environment = None
    return {
        "platform": settings.platform_name,
        "tagline": settings.tagline,
        "status": {"environment": environment, "isAuthenticated": environment is not None},
        "apiVersion": None
        if environment is None
        else {
            "id": version.id,
            "release": {"name": version.name or None, "date": version.date.isoformat()},
            "deprecated": version.deprecated,
            "apiSchemas": {"openApi": version.openapi_url or str(request.url_for("openapi"))},
        },
        "requestOrigin": {"ipAddress": request_context(request).ip},
    }


@router.get("/healthz", tags=["Meta"], summary="Liveness")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", tags=["Meta"], summary="Readiness: the database answers")
async def readyz(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    checks: dict[str, str] = {}
    try:
        await runtime.store.ping()
        checks["database"] = "ok"
    except ApiwardError as exc:
        checks["database"] = exc.message
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )
