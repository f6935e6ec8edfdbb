"""``GET /metrics``: Prometheus text format, optionally behind ``APIWARD_METRICS_TOKEN``."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from apiward.adapters.http.access import SIGNED, declare
from apiward.adapters.http.deps import MetricsDep, SettingsDep
from apiward.core.errors import AuthenticationError

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
@declare(SIGNED)
async def metrics(request: Request, settings: SettingsDep, registry: MetricsDep) -> Response:
    token = settings.metrics_token
    if token is not None:
        presented = request.headers.get("authorization", "").encode()
        expected = f"Bearer {token.get_secret_value()}".encode()
        if not hmac.compare_digest(presented, expected):
            raise AuthenticationError(
                "GET /metrics needs Authorization: Bearer <APIWARD_METRICS_TOKEN>."
            )
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)
