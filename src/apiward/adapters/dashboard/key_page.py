"""Settings > API keys > a key: what it is, its limits and credits, its traffic, its audit
trail and its actions; and the form that edits it.

Every change goes through ``Keys.update``, the call ``PATCH /v1/keys/{id}`` makes, with
its authority rule: the page offers nothing the API would not allow, and trusts nothing
the form says about what the user may do. The operator's limits and credits are shown,
never edited here.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.datastructures import FormData, UploadFile
from starlette.responses import Response

from apiward.adapters.dashboard import analytics as charts
from apiward.adapters.dashboard.audit import trail_of
from apiward.adapters.dashboard.keys import (
    EXPIRY_CHOICES,
    KEEP,
    KeyForm,
    ScopeChoices,
    people,
    scope_choices,
    seen_line,
    spaces,
)
from apiward.adapters.dashboard.usage import key_limits
from apiward.adapters.dashboard.web import (
    DashboardRoute,
    FieldErrors,
    Me,
    notice,
    render,
    see_other,
    signed_in,
    url,
)
from apiward.adapters.http.deps import (
    AddressesDep,
    AnalyticsDep,
    AuditDep,
    ClockDep,
    ImpactsDep,
    KeysDep,
    LimitsDep,
    ScopeUsageDep,
    TenancyDep,
    runtime_of,
)
from apiward.adapters.http.schemas.scope_usage import ScopeUsageOut
from apiward.core.authority import networks
from apiward.core.errors import ApiwardError, InvalidInput
from apiward.core.impact import Proposal, sentence
from apiward.core.limits import refilled
from apiward.core.models import ApiKey
from apiward.services.tenancy import Tenancy

router = APIRouter(route_class=DashboardRoute)

NOTICES = {
    "updated": "The API key is changed.",
    "narrowed": "The API key is narrowed to the scopes its requests used.",
}


@router.get("/keys/{key_id}")
async def key_page(
    key_id: str,
    request: Request,
    keys: KeysDep,
    tenancy: TenancyDep,
    limits: LimitsDep,
    verifications: AnalyticsDep,
    log: AuditDep,
    clock: ClockDep,
    scope_usage: ScopeUsageDep,
    addresses: AddressesDep,
    impacts: ImpactsDep,
    me: Me = Depends(signed_in),
) -> Response:
    me.require("keys:read")
    key = await keys.get(me.principal, key_id)
    now = clock.now()
    today = await addresses.today(key.org_id, key.environment, key.id)
    limits_now = None
    if me.can("org:read"):
        org = await tenancy.get_org(me.principal.org_id)
        policies = limits.plan_for(org.rate_tier, key.rate_limits).policies
        limits_now = await key_limits(limits, policies, org.id, key)
    return render(
        request,
        "key.html",
        flash=notice(request, NOTICES),
        section="keys",
        key=key,
        state=key.state(now).value,
        credits=refilled(key.credits, now) if key.credits else None,
        people=await people(tenancy, me),
        colours=charts.COLOURS,
        limits=limits_now,
        traffic=await charts.last_day(
            verifications, me, key.environment, now, " of this key", key_id=key.id
        ),
        trail=await trail_of(log, me, key.id, key.environment),
        scope_usage=ScopeUsageOut.of(key.id, await scope_usage.of_key(me.principal, key.id, None)),
        seen=seen_line(today),
        stopping=sentence(
            await impacts.of_key(me.principal, key.id, Proposal()), "disabling or revoking it"
        ),
    )


def _values(key: ApiKey, offered: ScopeChoices) -> FormData:
    """The edit form as the key stands: its scopes ticked where offered, the others in
    "Other scopes", its allow-lists one per line, its expiry kept."""
    fields: list[tuple[str, str | UploadFile]] = [("name", key.name), ("expires", KEEP)]
    fields += offered.as_form(key.scopes)
    fields.append(("ip_allow", "\n".join(key.ip_allow)))
    fields += [("space", s) for s in key.space_allow]
    return FormData(fields)


async def _edit_form(
    request: Request,
    me: Me,
    tenancy: Tenancy,
    key: ApiKey,
    *,
    values: FormData | None = None,
    errors: FieldErrors | None = None,
    confirm: str | None = None,
) -> Response:
    """``confirm``: what the submitted change would have refused, asked before saving."""
    # The key's own scopes stay offered, ticked, even those the editor could not grant:
    # unticking one narrows the key, which anyone who may edit it may do.
    choices = await scope_choices(tenancy, me, request)
    offered = choices.holding(key.scopes, "Held by this key")
    return render(
        request,
        "key_edit.html",
        status=400 if errors else 200,
        flash=errors.flash() if errors else None,
        section="keys",
        key=key,
        scopes=offered,
        spaces=await key_spaces(tenancy, me, key),
        expiry_choices=((KEEP, "Keep as it is"), *EXPIRY_CHOICES),
        values=values or _values(key, offered),
        errors=errors or FieldErrors(),
        confirm=confirm,
    )


async def key_spaces(tenancy: Tenancy, me: Me, key: ApiKey) -> list[tuple[str, str]]:
    """The spaces the edit form offers: the organisation's, and those of the key's
    allow-list that are not among them (archived ones), so that each can be unticked
    and none is lost by saving."""
    offered = await spaces(tenancy, me)
    if not offered and not me.can("spaces:read"):
        return []
    listed = {space_id for space_id, _ in offered}
    return offered + [(s, "(archived, or not listed)") for s in key.space_allow if s not in listed]


def space_change(me: Me, key: ApiKey, ticked: list[str]) -> list[str] | None:
    """The space allow-list the form asks for, or None for no change: the form offers
    spaces only to those who may read them, and without them says nothing of the list."""
    if not me.can("spaces:read") or set(ticked) == set(key.space_allow):
        return None
    return ticked


@router.get("/keys/{key_id}/edit")
async def edit_key(
    key_id: str,
    request: Request,
    keys: KeysDep,
    tenancy: TenancyDep,
    me: Me = Depends(signed_in),
) -> Response:
    me.require("keys:write")
    return await _edit_form(request, me, tenancy, await keys.get(me.principal, key_id))


@router.post("/keys/{key_id}/edit")
async def save_key(
    key_id: str,
    request: Request,
    keys: KeysDep,
    tenancy: TenancyDep,
    clock: ClockDep,
    impacts: ImpactsDep,
    me: Me = Depends(signed_in),
) -> Response:
    me.require("keys:write")
    key = await keys.get(me.principal, key_id)
    form = await request.form()
    errors = FieldErrors()
    fields = KeyForm.read(form, clock.now(), errors, runtime_of(request).catalogue)
    if not errors and not form.get("confirmed"):
        change = Proposal(
            tuple(fields.scopes) if set(fields.scopes) != set(key.scopes) else None,
            networks(fields.ip_allow)
            if fields.ip_allow and set(fields.ip_allow) != set(key.ip_allow)
            else None,
        )
        if not change.refuses_all:
            impact = await impacts.of_key(me.principal, key.id, change)
            if impact.refused_at_most:  # ask again, saying what the change would refuse
                return await _edit_form(
                    request, me, tenancy, key, values=form, confirm=sentence(impact)
                )
    if not errors:
        try:
            await keys.update(
                me.principal,
                key.id,
                name=fields.name,
                scopes=fields.scopes,
                ip_allow=fields.ip_allow,
                space_allow=space_change(me, key, fields.space_allow),
                expires_at=None if fields.keep_expiry else fields.expires_at,
                clear_expiry=not fields.keep_expiry and fields.expires_at is None,
            )
        except ApiwardError as exc:
            errors.add(exc)
    if errors:
        return await _edit_form(request, me, tenancy, key, values=form, errors=errors)
    return see_other(url(f"/keys/{key.id}", env=key.environment, done="updated"))


@router.post("/keys/{key_id}/narrow")
async def narrow_key(
    key_id: str,
    keys: KeysDep,
    scope_usage: ScopeUsageDep,
    me: Me = Depends(signed_in),
) -> Response:
    """Narrow the key to the scopes its requests used in the last 30 days, as counted
    now (the form says nothing of them), through ``Keys.update`` and its authority."""
    me.require("keys:write")
    used = await scope_usage.of_key(me.principal, key_id, None)
    if not used.narrowed:
        raise InvalidInput(
            "No allowed request of this key needed a scope in the last 30 days: there is "
            "nothing to narrow it to (disable or revoke it instead)."
        )
    key = await keys.update(me.principal, key_id, scopes=used.narrowed)
    return see_other(url(f"/keys/{key.id}", env=key.environment, done="narrowed"))
