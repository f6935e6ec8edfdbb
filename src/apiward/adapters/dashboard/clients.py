"""Settings > OAuth clients: client credentials, the secret shown once, revocation."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from apiward.adapters.dashboard.keys import EXPIRY_CHOICES, expiry, people, scope_choices
from apiward.adapters.dashboard.web import (
    DashboardRoute,
    Flash,
    Me,
    chosen,
    notice,
    paging,
    render,
    see_other,
    signed_in,
    text,
    url,
    words,
)
from apiward.adapters.http.deps import ClientsDep, ClockDep, TenancyDep
from apiward.adapters.http.errors import status_of
from apiward.adapters.http.schemas.clients import ClientOut
from apiward.core.clock import Clock
from apiward.core.errors import ApiwardError
from apiward.services.clients import Clients
from apiward.services.tenancy import Tenancy

router = APIRouter(route_class=DashboardRoute)

NOTICES = {
    "revoked": "The OAuth client is revoked: its secret and every token it holds are refused."
}


async def _list(
    request: Request,
    me: Me,
    clients: Clients,
    clock: Clock,
    tenancy: Tenancy,
    *,
    flash: Flash | None = None,
    status: int = 200,
) -> Response:
    me.require("clients:read")
    page = await clients.list_clients(me.principal, paging(request), environment=me.env)
    now = clock.now()
    return render(
        request,
        "clients.html",
        status=status,
        flash=flash or notice(request, NOTICES),
        section="clients",
        page=page,
        states={c.id: ClientOut.of(c, now).state for c in page.items},
        people=await people(tenancy, me),
    )


@router.get("/clients")
async def list_clients(
    request: Request,
    clients: ClientsDep,
    clock: ClockDep,
    tenancy: TenancyDep,
    me: Me = Depends(signed_in),
) -> Response:
    return await _list(request, me, clients, clock, tenancy)


async def _form(
    request: Request,
    me: Me,
    tenancy: Tenancy,
    *,
    values: FormData | None = None,
    flash: Flash | None = None,
    status: int = 200,
) -> Response:
    return render(
        request,
        "client_new.html",
        status=status,
        flash=flash,
        section="clients",
        scopes=await scope_choices(tenancy, me),
        expiry_choices=EXPIRY_CHOICES,
        values=values or FormData(),
    )


@router.get("/clients/new")
async def new_client(
    request: Request, tenancy: TenancyDep, me: Me = Depends(signed_in)
) -> Response:
    me.require("clients:write")
    return await _form(request, me, tenancy)


@router.post("/clients")
async def create_client(
    request: Request,
    clients: ClientsDep,
    clock: ClockDep,
    tenancy: TenancyDep,
    me: Me = Depends(signed_in),
) -> Response:
    me.require("clients:write")
    form = await request.form()
    try:
        created = await clients.create(
            me.principal,
            name=text(form, "name"),
            scopes=chosen(form, "scope") + words(text(form, "more_scopes", 4000)),
            environment=me.env,
            expires_at=expiry(form, clock.now()),
        )
    except ApiwardError as exc:
        return await _form(request, me, tenancy, values=form, flash=Flash.error(exc), status=400)
    return render(
        request,
        "secret.html",
        status=201,
        section="clients",
        title="OAuth client created",
        what="client secret",
        label="Client secret",
        name=created.client.name,
        environment=created.client.environment,
        secret=created.secret,
        client_id=created.client.id,
        note=None,
        back=url("/clients", env=created.client.environment),
    )


@router.get("/clients/{client_id}/revoke")
async def confirm_revoke(
    client_id: str, request: Request, clients: ClientsDep, me: Me = Depends(signed_in)
) -> Response:
    me.require("clients:write")
    client = await clients.get(me.principal, client_id)
    return render(request, "client_revoke.html", section="clients", client=client)


@router.post("/clients/{client_id}/revoke")
async def revoke_client(
    client_id: str,
    request: Request,
    clients: ClientsDep,
    clock: ClockDep,
    tenancy: TenancyDep,
    me: Me = Depends(signed_in),
) -> Response:
    me.require("clients:write")
    try:
        client = await clients.revoke(me.principal, client_id)
    except ApiwardError as exc:
        return await _list(
            request, me, clients, clock, tenancy, flash=Flash.error(exc), status=status_of(exc)
        )
    return see_other(url("/clients", env=client.environment, done="revoked"))
