"""``GET /v1/analytics/verifications``: counted authentication decisions, queried."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from apiward.adapters.http.deps import AnalyticsDep, ClockDep
from apiward.adapters.http.security import require
from apiward.core import analytics
from apiward.core.analytics import Bucket
from apiward.core.models import Principal

router = APIRouter(tags=["Analytics"])

FIELDS = {
    "outcome": "outcome",
    "key": "key_id",
    "client": "client_id",
    "route": "route",
    "environment": "environment",
}


def _item(bucket: Bucket, group_by: tuple[str, ...]) -> dict[str, Any]:
    item: dict[str, Any] = {"time": _iso(bucket.start)}
    for group in group_by:
        name = FIELDS[group]
        item[name] = getattr(bucket, name) or None
    item["count"] = bucket.count
    return item


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@router.get(
    "/v1/analytics/verifications",
    summary="Counts of authentication decisions",
    responses={200: {"content": {"text/csv": {}}}},
)
async def verifications(
    request: Request,
    clock: ClockDep,
    counts: AnalyticsDep,
    since: Annotated[str | None, Query(description="ISO time, or 1h, 24h, 7d, 30d.")] = None,
    until: Annotated[str | None, Query(description="ISO time (default: now).")] = None,
    granularity: Annotated[str | None, Query(description="minute, hour or day.")] = None,
    group_by: Annotated[
        str | None, Query(description="Any of outcome, key, client, route, environment.")
    ] = None,
    key_id: Annotated[str | None, Query(max_length=64)] = None,
    client_id: Annotated[str | None, Query(max_length=64)] = None,
    route: Annotated[str | None, Query(max_length=256)] = None,
    outcome: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int | None, Query(description="Top N over the span, by count.")] = None,
    principal: Principal = require("analytics:read"),
) -> Response:
    """Exact counts of the decisions of the caller's organisation and environment, per
    minute, hour or day (the last flush interval, `APIWARD_ANALYTICS_FLUSH_SECONDS`, may
    not be in yet). With `limit`, the top groups over the whole span (top consumers with
    `group_by=key`). `Accept: text/csv` answers CSV."""
    q = analytics.query(
        since=since,
        until=until,
        granularity=granularity,
        group_by=group_by,
        now=clock.now(),
        key_id=key_id,
        client_id=client_id,
        route=route,
        outcome=outcome,
        limit=limit,
    )
    rows = await counts.verifications(principal, q)
    items = [_item(row, q.group_by) for row in rows]
    if "text/csv" in request.headers.get("accept", ""):
        out = io.StringIO()
        columns = ["time", *(FIELDS[g] for g in q.group_by), "count"]
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(items)
        return Response(out.getvalue(), media_type="text/csv")
    return JSONResponse(
        {
            "granularity": q.granularity,
            "since": q.since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "until": q.until.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "items": items,
        }
    )
