"""Overview: what needs attention in the environment, the page after signing in.

Requests and refusals of the last 24 hours, the keys refused most, keys expiring within
14 days, keys unused for 30 days and the latest audit events, each linking to its page.
Each part is shown to those whose role may read it, and says what to do next when it is
empty.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from apiward.adapters.dashboard import analytics as charts
from apiward.adapters.dashboard.keys import people
from apiward.adapters.dashboard.web import DashboardRoute, Me, api_base, render, signed_in
from apiward.adapters.http.deps import AnalyticsDep, AuditDep, ClockDep, KeysDep, TenancyDep
from apiward.core import analytics
from apiward.core.analytics import WOULD_REFUSE
from apiward.core.errors import NotFound
from apiward.core.models import AuditFilter, KeyState, PageRequest
from apiward.services.keys import Keys

router = APIRouter(route_class=DashboardRoute)

EXPIRING_DAYS = 14
UNUSED_DAYS = 30
SHORT = PageRequest(page=1, page_size=5)
REFUSED_MOST = 5


@router.get("/overview")
async def overview(
    request: Request,
    keys: KeysDep,
    tenancy: TenancyDep,
    verifications: AnalyticsDep,
    log: AuditDep,
    clock: ClockDep,
    me: Me = Depends(signed_in),
) -> Response:
    now = clock.now()
    env = me.env
    context: dict[str, Any] = {
        "expiring": None,
        "unused": None,
        "events": None,
        "any_key": None,
    }
    context["traffic"] = await charts.last_day(verifications, me, env, now, "")
    if context["traffic"] is not None:
        q = analytics.query(
            since="24h", until=None, granularity="hour", now=now, group_by="key,outcome"
        )
        refused: Counter[str] = Counter()
        for row in await verifications.verifications(me.principal, q, environment=env):
            if row.key_id and row.outcome not in ("VALID", WOULD_REFUSE):
                refused[row.key_id] += row.count
        context["refused"] = refused.most_common(REFUSED_MOST)
    if me.can("keys:read"):
        context["expiring"] = await keys.list_keys(
            me.principal,
            SHORT,
            environment=env,
            state=KeyState.ACTIVE,
            expiring_within=timedelta(days=EXPIRING_DAYS),
        )
        context["unused"] = await keys.list_keys(
            me.principal,
            SHORT,
            environment=env,
            state=KeyState.ACTIVE,
            unused_for=timedelta(days=UNUSED_DAYS),
        )
        context["any_key"] = (await keys.list_keys(me.principal, SHORT, environment=env)).total
        context["names"] = {
            key_id: await _name(keys, me, key_id) for key_id, _ in context.get("refused", ())
        }
    if me.can("audit:read"):
        page = await log.list(me.principal, AuditFilter(environment=env), SHORT)
        context["events"] = page.items
    return render(
        request,
        "overview.html",
        section="overview",
        people=await people(tenancy, me),
        colours=charts.COLOURS,
        base=api_base(request),
        expiring_days=EXPIRING_DAYS,
        unused_days=UNUSED_DAYS,
        **context,
    )


async def _name(keys: Keys, me: Me, key_id: str) -> str:
    """A counted key's name; its id where it cannot be read."""
    try:
        return (await keys.get(me.principal, key_id)).name
    except NotFound:
        return key_id
