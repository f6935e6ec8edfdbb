"""Settings > Audit log: who did what to which credential, when and from where."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from apiward.adapters.dashboard.keys import people
from apiward.adapters.dashboard.web import DashboardRoute, Flash, Me, paging, render, signed_in
from apiward.adapters.http.deps import AuditDep, TenancyDep
from apiward.core import times
from apiward.core.errors import InvalidInput
from apiward.core.models import AuditEvent, AuditFilter, PageRequest
from apiward.services.audit import AuditLog

router = APIRouter(route_class=DashboardRoute)

EVENT_TYPES = (
    "key.created",
    "key.updated",
    "key.disabled",
    "key.enabled",
    "key.revoked",
    "key.rolled",
    "key.expiring",
    "key.credits_low",
    "key.disabled_unused",
    "key.anomaly",
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
    "login.mfa_failed",
    "user.mfa_enabled",
    "user.mfa_disabled",
    "user.mfa_recovery_used",
    "logout",
    "session.revoked",
    "refresh_token.reuse_detected",
    "refresh_token.retried",
)


def _day(value: str, name: str, *, end: bool = False) -> datetime | None:
    """00:00 UTC of a YYYY-MM-DD day; with ``end``, of the day after (an inclusive end).
    None for no day; InvalidInput for a day that is not one, or out of range."""
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"The {name} date must be YYYY-MM-DD.") from None
    start = times.instant(day, name=f"The {name} date")
    return times.instant(start + timedelta(days=1), name=f"The {name} date") if end else start


def details_of(data: dict[str, object]) -> list[tuple[str, str]]:
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


TRAIL = PageRequest(page=1, page_size=20)


@dataclass(frozen=True, slots=True)
class Trail:
    """The latest events about one key or client, with their details readable."""

    events: list[AuditEvent]
    details: dict[str, list[tuple[str, str]]]


async def trail_of(log: AuditLog, me: Me, target_id: str, environment: str) -> Trail | None:
    """The latest events about ``target_id``; None for a role that may not read the log."""
    if not me.can("audit:read"):
        return None
    flt = AuditFilter(target_id=target_id, environment=environment)
    events = (await log.list(me.principal, flt, TRAIL)).items
    return Trail(events, {e.id: details_of(e.data) for e in events})


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
    flash = None
    days: dict[str, datetime | None] = {}
    for name in ("since", "until"):
        try:
            days[name] = _day(filters[name], name, end=name == "until")
        except InvalidInput as exc:
            flash = Flash("error", f"{exc.message.rstrip('.')}; it was ignored.")
            days[name], filters[name] = None, ""
    since, until = days["since"], days["until"]
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
        details={e.id: details_of(e.data) for e in page.items},
    )
