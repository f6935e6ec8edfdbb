"""``/v1/clients``: OAuth client credentials (several per org, secret shown once)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from apiward.adapters.http.access import Reach
from apiward.adapters.http.deps import AddressesDep, ClientsDep, ClockDep, ImpactsDep, ScopeUsageDep
from apiward.adapters.http.routes.common import NO_STORE, pagination
from apiward.adapters.http.schemas.addresses import AddressesOut, ImpactOut
from apiward.adapters.http.schemas.clients import (
    ClientCreate,
    ClientCreated,
    ClientOut,
    ClientUpdate,
)
from apiward.adapters.http.schemas.common import PageOut, page_of, set_meta
from apiward.adapters.http.schemas.scope_usage import ScopeUsageOut
from apiward.adapters.http.security import require
from apiward.core.clock import Clock
from apiward.core.impact import PROPOSAL_LENGTH, PROPOSAL_TEXT, proposal
from apiward.core.models import OAuthClient, PageRequest, Principal

router = APIRouter(prefix="/v1/clients", tags=["OAuth clients"])
Paging = Annotated[PageRequest, Depends(pagination)]


def _out(clock: Clock, client: OAuthClient) -> ClientOut:
    return ClientOut.of(client, clock.now())


@router.post(
    "",
    status_code=201,
    response_model=ClientCreated,
    summary="Create a client",
    dependencies=NO_STORE,
)
async def create_client(
    body: ClientCreate,
    clients: ClientsDep,
    clock: ClockDep,
    principal: Principal = require("clients:write", reach=Reach.CREDENTIAL),
) -> ClientCreated:
    """Create a client; `client_secret` is in this answer only."""
    created = await clients.create(
        principal,
        name=body.name,
        scopes=body.scopes,
        environment=body.environment,
        user_id=body.user_id,
        expires_at=body.expires_at,
        external_id=body.external_id,
        meta=body.meta,
    )
    return ClientCreated(**_out(clock, created.client).model_dump(), client_secret=created.secret)


@router.get("", response_model=PageOut[ClientOut], summary="List clients")
async def list_clients(
    clients: ClientsDep,
    clock: ClockDep,
    paging: Paging,
    environment: str | None = Query(None, max_length=32),
    external_id: str | None = Query(
        None, max_length=255, description="Only the clients of this external_id (exact match)."
    ),
    principal: Principal = require("clients:read"),
) -> dict[str, object]:
    page = await clients.list_clients(
        principal, paging, environment=environment, external_id=external_id
    )
    return page_of(page, [_out(clock, c) for c in page.items])


@router.get("/{client_id}", response_model=ClientOut, summary="Get a client")
async def get_client(
    client_id: str,
    clients: ClientsDep,
    clock: ClockDep,
    principal: Principal = require("clients:read"),
) -> ClientOut:
    return _out(clock, await clients.get(principal, client_id))


@router.get(
    "/{client_id}/scope-usage",
    response_model=ScopeUsageOut,
    summary="Which of a client's scopes its tokens' requests used",
)
async def client_scope_usage(
    client_id: str,
    usage: ScopeUsageDep,
    since: str | None = Query(
        None,
        max_length=64,
        description="An ISO time or date, or a span back from now (`7d`, `24h`); 30 days "
        "back when absent.",
    ),
    principal: Principal = require("clients:read"),
) -> ScopeUsageOut:
    """The scopes the allowed requests of the client's access tokens needed since
    `since`, per UTC day, against the scopes it holds (as for a key's)."""
    return ScopeUsageOut.of(client_id, await usage.of_client(principal, client_id, since))


@router.get(
    "/{client_id}/addresses",
    response_model=AddressesOut,
    summary="Where a client's requests came from: networks and countries per day",
)
async def client_addresses(
    client_id: str,
    addresses: AddressesDep,
    since: str | None = Query(
        None,
        max_length=64,
        description="An ISO time or date, or a span back from now (`7d`, `24h`); 30 days "
        "back when absent.",
    ),
    principal: Principal = require("clients:read"),
) -> AddressesOut:
    """As for a key's (`GET /v1/keys/{id}/addresses`): per UTC day, the networks and
    countries the allowed requests of the client's access tokens came from. Never a full
    address."""
    return AddressesOut.of(client_id, await addresses.of_client(principal, client_id, since))


@router.get(
    "/{client_id}/impact",
    response_model=ImpactOut,
    summary="What a change would have refused of a client's last seven days",
)
async def client_impact(
    client_id: str,
    impacts: ImpactsDep,
    scopes: str | None = Query(
        None,
        max_length=PROPOSAL_LENGTH,
        pattern=PROPOSAL_TEXT,
        description="A proposed scope set, comma-separated (at most 100).",
    ),
    ip_allow: str | None = Query(
        None,
        max_length=PROPOSAL_LENGTH,
        pattern=PROPOSAL_TEXT,
        description="A proposed IP allow-list, comma-separated networks (at most 100).",
    ),
    principal: Principal = require("clients:read"),
) -> ImpactOut:
    """As for a key's (`GET /v1/keys/{id}/impact`): what the proposal (or, with neither
    parameter, revoking the client) would have refused of the allowed requests of its
    access tokens over the current UTC day and the six before."""
    change = proposal(scopes, ip_allow)
    return ImpactOut.of(client_id, await impacts.of_client(principal, client_id, change))


@router.patch("/{client_id}", response_model=ClientOut, summary="Update a client")
async def update_client(
    client_id: str,
    body: ClientUpdate,
    clients: ClientsDep,
    clock: ClockDep,
    principal: Principal = require("clients:write", reach=Reach.CREDENTIAL),
) -> ClientOut:
    """Change name, scopes, external_id (null removes it) or meta (replaced whole)."""
    client = await clients.update(
        principal,
        client_id,
        name=body.name,
        scopes=body.scopes,
        external_id=body.external_id,
        clear_external_id="external_id" in body.model_fields_set and body.external_id is None,
        meta=set_meta(body),
    )
    return _out(clock, client)


@router.post("/{client_id}/revoke", response_model=ClientOut, summary="Revoke a client")
async def revoke_client(
    client_id: str,
    clients: ClientsDep,
    clock: ClockDep,
    principal: Principal = require("clients:write", reach=Reach.CREDENTIAL),
) -> ClientOut:
    """Refuse the client's secret and every access token it holds, at once."""
    client = await clients.revoke(principal, client_id)
    return _out(clock, client)
