"""``/v1/clients``: OAuth client credentials (several per org, secret shown once)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from apiward.adapters.http.routes.common import NO_STORE, pagination
from apiward.adapters.http.schemas.clients import (
    ClientCreate,
    ClientCreated,
    ClientOut,
    ClientUpdate,
)
from apiward.adapters.http.schemas.common import PageOut, page_of
from apiward.adapters.http.security import require, runtime_of
from apiward.core.models import OAuthClient, PageRequest, Principal

router = APIRouter(prefix="/v1/clients", tags=["OAuth clients"])
Paging = Annotated[PageRequest, Depends(pagination)]


def _out(request: Request, client: OAuthClient) -> ClientOut:
    return ClientOut.of(client, runtime_of(request).clock.now())


@router.post(
    "",
    status_code=201,
    response_model=ClientCreated,
    summary="Create a client",
    dependencies=NO_STORE,
)
async def create_client(
    body: ClientCreate, request: Request, principal: Principal = require("clients:write")
) -> ClientCreated:
    """Create a client; `client_secret` is in this answer only."""
    created = await runtime_of(request).clients.create(
        principal,
        name=body.name,
        scopes=body.scopes,
        environment=body.environment,
        user_id=body.user_id,
        expires_at=body.expires_at,
    )
    return ClientCreated(**_out(request, created.client).model_dump(), client_secret=created.secret)


@router.get("", response_model=PageOut[ClientOut], summary="List clients")
async def list_clients(
    request: Request,
    paging: Paging,
    environment: str | None = Query(None, max_length=32),
    principal: Principal = require("clients:read"),
) -> dict[str, object]:
    page = await runtime_of(request).clients.list_clients(
        principal, paging, environment=environment
    )
    return page_of(page, [_out(request, c) for c in page.items])


@router.get("/{client_id}", response_model=ClientOut, summary="Get a client")
async def get_client(
    client_id: str, request: Request, principal: Principal = require("clients:read")
) -> ClientOut:
    return _out(request, await runtime_of(request).clients.get(principal, client_id))


@router.patch("/{client_id}", response_model=ClientOut, summary="Update a client")
async def update_client(
    client_id: str,
    body: ClientUpdate,
    request: Request,
    principal: Principal = require("clients:write"),
) -> ClientOut:
    client = await runtime_of(request).clients.update(
        principal, client_id, name=body.name, scopes=body.scopes
    )
    return _out(request, client)


@router.post("/{client_id}/revoke", response_model=ClientOut, summary="Revoke a client")
async def revoke_client(
    client_id: str, request: Request, principal: Principal = require("clients:write")
) -> ClientOut:
    """Refuse the client's secret and every access token it holds, at once."""
    runtime = runtime_of(request)
    client = await runtime.clients.revoke(principal, client_id)
    await runtime.tokens.revoke_client_tokens(client)
    return _out(request, client)
