"""Settings > Audit log: who did what to which credential, when and from where."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from apiward.adapters.dashboard.keys import people
from apiward.adapters.dashboard.web import DashboardRoute, Flash, Me, paging, render, signed_in
from apiward.adapters.http.deps import AuditDep, TenancyDep
from apiward.core.models import AuditFilter

router = APIRouter(route_class=DashboardRoute)

EVENT_TYPES = (
    "key.created",
    "key.updated",
    "key.disabled",
    "key.enabled",
    "key.revoked",
    "key.rolled",
    "client.created",
    "client.updated",
    "client.revoked",
    "user.created",
    "user.updated",
    "membership.granted",
    "membership.removed",
    "role.created",
    "role.updated",
    "role.deleted",
    "space.created",
    "space.updated",
    "org.updated",
    "login.succeeded",
    "login.failed",
    "logout",
    "session.revoked",
    "refresh_token.reuse_detected",
)


def _day(value: str, *, end: bool = False) -> datetime | None:
    """00:00 UTC of a YYYY-MM-DD day; with ``end``, of the day after (an inclusive end)."""
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return None
    return datetime.combine(day + timedelta(days=1 if end else 0), time(), tzinfo=UTC)


def _details(data: dict[str, object]) -> list[tuple[str, str]]:
    """An event's data as readable pairs: lists joined, nested values as JSON."""
    out = []
    for name, value in sorted(data.items()):
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            text = ", ".join(value) or "none"
        elif isinstance(value, dict | list):
            text = json.dumps(value, sort_keys=True, default=str)
        else:
            text = "none" if value is None else str(value)
        out.append((name, text))
    return out


@router.get("/audit")
async def audit(
    request: Request, log: AuditDep, tenancy: TenancyDep, me: Me = Depends(signed_in)
) -> Response:
    me.require("audit:read")
    query = request.query_params
    filters = {
        name: query.get(name, "").strip()[:64]
        for name in ("type", "actor", "target", "since", "until", "environment")
    }
    if filters["environment"] not in me.environments:
        filters["environment"] = ""
    since, until = _day(filters["since"]), _day(filters["until"], end=True)
    flash = None
    for name, parsed in (("since", since), ("until", until)):
        if filters[name] and parsed is None:
            flash = Flash("error", f"The {name} date must be YYYY-MM-DD; it was ignored.")
            filters[name] = ""
    flt = AuditFilter(
        type=filters["type"] or None,
        actor_user_id=filters["actor"] or None,
        target_id=filters["target"] or None,
        since=since,
        until=until,
        environment=filters["environment"] or None,
    )
    page = await log.list(me.principal, flt, paging(request, 50))
    return render(
        request,
        "audit.html",
        flash=flash,
        section="audit",
        page=page,
        filters=filters,
        event_types=EVENT_TYPES,
        people=await people(tenancy, me),
        details={e.id: _details(e.data) for e in page.items},
    )
