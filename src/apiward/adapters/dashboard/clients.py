"""Settings > OAuth clients: client credentials, the secret shown once, revocation."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from apiward.adapters.dashboard.keys import (
    EXPIRY_CHOICES,
    expiry,
    people,
    read_scopes,
    scope_choices,
)
from apiward.adapters.dashboard.web import (
    DashboardRoute,
    FieldErrors,
    Flash,
    Me,
    notice,
    paging,
    render,
    see_other,
    signed_in,
    text,
    url,
)
from apiward.adapters.http.deps import ClientsDep, ClockDep, TenancyDep, runtime_of
from apiward.adapters.http.errors import status_of
from apiward.adapters.http.schemas.clients import ClientOut
from apiward.core.clock import Clock
from apiward.core.errors import ApiwardError
from apiward.services.clients import Clients
from apiward.services.tenancy import Tenancy, check_name

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
    errors: FieldErrors | None = None,
) -> Response:
    return render(
        request,
        "client_new.html",
        status=400 if errors else 200,
        flash=errors.flash() if errors else None,
        section="clients",
        scopes=await scope_choices(tenancy, me, request),
        expiry_choices=EXPIRY_CHOICES,
        values=values or FormData(),
        errors=errors or FieldErrors(),
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
    errors = FieldErrors()
    name = text(form, "name")
    with errors.on("name"):
        check_name(name, "client")
    scopes = read_scopes(form, errors, "An OAuth client", runtime_of(request).catalogue)
    expires_at = None
    with errors.on("expires"):
        expires_at = expiry(form, clock.now())
    if not errors:
        try:
            created = await clients.create(
                me.principal, name=name, scopes=scopes, environment=me.env, expires_at=expires_at
            )
        except ApiwardError as exc:
            errors.add(exc)
    if errors:
        return await _form(request, me, tenancy, values=form, errors=errors)
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
