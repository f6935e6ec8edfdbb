"""Settings > OAuth clients > a client: what it is, its traffic and audit trail, its
actions; and the form that renames it or changes its scopes, through ``Clients.update``
(the call of ``PATCH /v1/clients/{id}``) and its authority rule."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from apiward.adapters.dashboard import analytics as charts
from apiward.adapters.dashboard.audit import trail_of
from apiward.adapters.dashboard.keys import people, read_scopes, scope_choices
from apiward.adapters.dashboard.web import (
    DashboardRoute,
    FieldErrors,
    Me,
    notice,
    render,
    see_other,
    signed_in,
    text,
    url,
)
from apiward.adapters.http.deps import (
    AnalyticsDep,
    AuditDep,
    ClientsDep,
    ClockDep,
    TenancyDep,
    runtime_of,
)
from apiward.adapters.http.schemas.clients import ClientOut
from apiward.core.errors import ApiwardError
from apiward.core.models import OAuthClient
from apiward.services.tenancy import Tenancy, check_name

router = APIRouter(route_class=DashboardRoute)

NOTICES = {"updated": "The OAuth client is changed."}


@router.get("/clients/{client_id}")
async def client_page(
    client_id: str,
    request: Request,
    clients: ClientsDep,
    tenancy: TenancyDep,
    verifications: AnalyticsDep,
    log: AuditDep,
    clock: ClockDep,
    me: Me = Depends(signed_in),
) -> Response:
    me.require("clients:read")
    client = await clients.get(me.principal, client_id)
    now = clock.now()
    env = client.environment
    return render(
        request,
        "client.html",
        flash=notice(request, NOTICES),
        section="clients",
        client=client,
        state=ClientOut.of(client, now).state,
        people=await people(tenancy, me),
        colours=charts.COLOURS,
        traffic=await charts.last_day(
            verifications, me, env, now, " of this client", client_id=client.id
        ),
        trail=await trail_of(log, me, client.id, env),
    )


async def _edit_form(
    request: Request,
    me: Me,
    tenancy: Tenancy,
    client: OAuthClient,
    *,
    values: FormData | None = None,
    errors: FieldErrors | None = None,
) -> Response:
    choices = await scope_choices(tenancy, me, request)
    offered = choices.holding(client.scopes, "Held by this client")
    if values is None:
        values = FormData([("name", client.name), *offered.as_form(client.scopes)])
    return render(
        request,
        "client_edit.html",
        status=400 if errors else 200,
        flash=errors.flash() if errors else None,
        section="clients",
        client=client,
        scopes=offered,
        values=values,
        errors=errors or FieldErrors(),
    )


@router.get("/clients/{client_id}/edit")
async def edit_client(
    client_id: str,
    request: Request,
    clients: ClientsDep,
    tenancy: TenancyDep,
    me: Me = Depends(signed_in),
) -> Response:
    me.require("clients:write")
    return await _edit_form(request, me, tenancy, await clients.get(me.principal, client_id))


@router.post("/clients/{client_id}/edit")
async def save_client(
    client_id: str,
    request: Request,
    clients: ClientsDep,
    tenancy: TenancyDep,
    me: Me = Depends(signed_in),
) -> Response:
    me.require("clients:write")
    client = await clients.get(me.principal, client_id)
    form = await request.form()
    errors = FieldErrors()
    name = text(form, "name")
    with errors.on("name"):
        check_name(name, "client")
    scopes = read_scopes(form, errors, "An OAuth client", runtime_of(request).catalogue)
    if not errors:
        try:
            await clients.update(me.principal, client.id, name=name, scopes=scopes)
        except ApiwardError as exc:
            errors.add(exc)
    if errors:
        return await _edit_form(request, me, tenancy, client, values=form, errors=errors)
    return see_other(url(f"/clients/{client.id}", env=client.environment, done="updated"))
