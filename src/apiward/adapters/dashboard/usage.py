"""Settings > Rate limits & usage: each key's limits, what is left of them, its credits.

The limits are the organisation's plan (its tier) with the key's own limits (the
operator's replacing the plan's of their name, a tenant's beside them):
``RequestLimits.plan_for``, the very plan a request is
checked against. What is left is read from the limiter with a cost-0 peek, which
spends nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from apiward.adapters.dashboard.web import DashboardRoute, Me, paging, render, signed_in
from apiward.adapters.http.deps import ClockDep, KeysDep, LimitsDep, TenancyDep
from apiward.core.errors import ApiwardError
from apiward.core.limits import Credits, Policy, refilled
from apiward.core.models import ApiKey
from apiward.services.limiting import RequestContext, RequestLimits

router = APIRouter(route_class=DashboardRoute)


@dataclass(frozen=True, slots=True)
class Limit:
    policy: Policy
    own: bool
    """Set on the key itself rather than inherited from the plan."""
    remaining: int | None
    """Units admissible right now, for limits counted per key or per org."""


@dataclass(frozen=True, slots=True)
class KeyUsage:
    key: ApiKey
    limits: list[Limit]
    credits: Credits | None


async def _remaining(limits: RequestLimits, policy: Policy, key: str) -> int | None:
    try:
        decision = await limits.limiter.peek(key, policy.limit, policy.period, 0)
    except ApiwardError:
        return None
    return decision.remaining


async def key_limits(
    limits: RequestLimits, policies: tuple[Policy, ...], org_id: str, key: ApiKey | None
) -> list[Limit]:
    own = {o.name for o in key.rate_limits} if key else set()
    # The buckets a request of this key spends (``RequestContext.key_for``).
    ctx = RequestContext(route="", org_id=org_id, credential_id=key.id if key else None)
    out = []
    for policy in policies:
        bucket = ctx.key_for(policy) if policy.key in ("org", "credential") else None
        remaining = await _remaining(limits, policy, bucket) if bucket else None
        out.append(Limit(policy, policy.own or policy.name in own, remaining))
    return out


@router.get("/usage")
async def usage(
    request: Request,
    tenancy: TenancyDep,
    keys: KeysDep,
    limits: LimitsDep,
    clock: ClockDep,
    me: Me = Depends(signed_in),
) -> Response:
    me.require("keys:read")
    me.require("org:read")
    org = await tenancy.get_org(me.principal.org_id)
    now = clock.now()
    plan = limits.plan_for(org.rate_tier)
    page = await keys.list_keys(
        me.principal, paging(request), environment=me.env, include_revoked=False
    )
    usages = [
        KeyUsage(
            key,
            await key_limits(
                limits,
                limits.plan_for(org.rate_tier, key.rate_limits).policies,
                org.id,
                key,
            ),
            refilled(key.credits, now) if key.credits else None,
        )
        for key in page.items
    ]
    return render(
        request,
        "usage.html",
        section="usage",
        org=org,
        plan=await key_limits(limits, plan.policies, org.id, None),
        keys=usages,
        page=page,
        states={k.id: k.state(now).value for k in page.items},
    )
