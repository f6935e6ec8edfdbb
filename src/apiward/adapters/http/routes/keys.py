"""``/v1/keys``: API keys."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from apiward.adapters.http.access import Reach
from apiward.adapters.http.deps import AddressesDep, ClockDep, ImpactsDep, KeysDep, ScopeUsageDep
from apiward.adapters.http.routes.common import NO_STORE, pagination
from apiward.adapters.http.schemas.addresses import AddressesOut, ImpactOut
from apiward.adapters.http.schemas.common import PageOut, page_of, set_meta
from apiward.adapters.http.schemas.keys import (
    KeyCreate,
    KeyCreated,
    KeyOut,
    KeyRoll,
    KeyUpdate,
    overrides,
)
from apiward.adapters.http.schemas.scope_usage import ScopeUsageOut
from apiward.adapters.http.security import require
from apiward.core.clock import Clock
from apiward.core.impact import PROPOSAL_LENGTH, PROPOSAL_TEXT, proposal
from apiward.core.models import KeyState, PageRequest, Principal

router = APIRouter(prefix="/v1/keys", tags=["API keys"])
OPERATOR = ("operator:limits", "operator:credits")
"""Limits that loosen a plan and credits, which only the operator sets."""
Paging = Annotated[PageRequest, Depends(pagination)]


def _out(clock: Clock, key: Any) -> KeyOut:
    return KeyOut.of(key, clock.now())


@router.post(
    "",
    status_code=201,
    response_model=KeyCreated,
    summary="Create an API key",
    dependencies=NO_STORE,
)
async def create_key(
    body: KeyCreate,
    keys: KeysDep,
    clock: ClockDep,
    principal: Principal = require("keys:write", reach=Reach.CREDENTIAL, powers=OPERATOR),
) -> KeyCreated:
    """Create a key. The plaintext is in `key` of this answer and never shown again."""
    created = await keys.create(
        principal,
        name=body.name,
        scopes=body.scopes,
        environment=body.environment,
        user_id=body.user_id,
        expires_at=body.expires_at,
        ip_allow=body.ip_allow,
        space_allow=body.space_allow,
        api_version=body.api_version,
        rate_limits=overrides(body.rate_limits),
        credits=body.credits.credits() if body.credits else None,
        external_id=body.external_id,
        meta=body.meta,
    )
    return KeyCreated(**_out(clock, created.key).model_dump(), key=created.plaintext)


@router.get("", response_model=PageOut[KeyOut], summary="List API keys")
async def list_keys(
    keys: KeysDep,
    clock: ClockDep,
    paging: Paging,
    environment: str | None = Query(None, max_length=32),
    user_id: str | None = Query(None, max_length=64),
    include_revoked: bool = True,
    external_id: str | None = Query(
        None, max_length=255, description="Only the keys of this external_id (exact match)."
    ),
    search: str | None = Query(
        None,
        max_length=200,
        description="Only the keys whose name contains this text (any case), or whose id, "
        "last four characters or hint (`prefix…last4`) it is.",
    ),
    state: KeyState | None = Query(None, description="Only the keys in this state now."),
    principal: Principal = require("keys:read"),
) -> dict[str, object]:
    page = await keys.list_keys(
        principal,
        paging,
        environment=environment,
        user_id=user_id,
        include_revoked=include_revoked,
        external_id=external_id,
        search=search,
        state=state,
    )
    return page_of(page, [_out(clock, k) for k in page.items])


@router.get("/{key_id}", response_model=KeyOut, summary="Get an API key")
async def get_key(
    key_id: str, keys: KeysDep, clock: ClockDep, principal: Principal = require("keys:read")
) -> KeyOut:
    return _out(clock, await keys.get(principal, key_id))


@router.get(
    "/{key_id}/scope-usage",
    response_model=ScopeUsageOut,
    summary="Which of an API key's scopes its requests used",
)
async def key_scope_usage(
    key_id: str,
    usage: ScopeUsageDep,
    since: str | None = Query(
        None,
        max_length=64,
        description="An ISO time or date, or a span back from now (`7d`, `24h`); 30 days "
        "back when absent.",
    ),
    principal: Principal = require("keys:read"),
) -> ScopeUsageOut:
    """The scopes the key's allowed requests needed since `since`, counted per UTC day
    (up to one analytics flush interval late), against the scopes it holds: the used
    ones (for a wildcard, the concrete scopes it stood for), the unused ones, and
    `narrowed`, the scopes to PATCH it to for least privilege."""
    return ScopeUsageOut.of(key_id, await usage.of_key(principal, key_id, since))


@router.get(
    "/{key_id}/addresses",
    response_model=AddressesOut,
    summary="Where an API key's requests came from: networks and countries per day",
)
async def key_addresses(
    key_id: str,
    addresses: AddressesDep,
    since: str | None = Query(
        None,
        max_length=64,
        description="An ISO time or date, or a span back from now (`7d`, `24h`); 30 days "
        "back when absent.",
    ),
    principal: Principal = require("keys:read"),
) -> AddressesOut:
    """Per UTC day since `since`: the allowed requests, the distinct networks
    they came from (/24 of IPv4, /48 of IPv6; exact up to 64 a day per process, then a
    HyperLogLog estimate), the distinct countries when a country source is configured, and
    the networks kept exactly with their requests. Never a full address. Up to one
    analytics flush interval late."""
    return AddressesOut.of(key_id, await addresses.of_key(principal, key_id, since))


@router.get(
    "/{key_id}/impact",
    response_model=ImpactOut,
    summary="What a change would have refused of an API key's last seven days",
)
async def key_impact(
    key_id: str,
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
    principal: Principal = require("keys:read"),
) -> ImpactOut:
    """From the counts already kept (requests per route, per scope needed, per network),
    how many of the allowed requests of the current UTC day and the six before
    would have been refused under the proposal: with neither `scopes` nor `ip_allow`, by
    revoking or disabling it (all of them, by route). The answer is a range
    (`refused_at_least` to `refused_at_most`): docs/keeping-keys-healthy.md says what is
    exact and what is not."""
    change = proposal(scopes, ip_allow)
    return ImpactOut.of(key_id, await impacts.of_key(principal, key_id, change))


@router.patch("/{key_id}", response_model=KeyOut, summary="Update an API key")
async def update_key(
    key_id: str,
    body: KeyUpdate,
    keys: KeysDep,
    clock: ClockDep,
    principal: Principal = require("keys:write", reach=Reach.CREDENTIAL, powers=OPERATOR),
) -> KeyOut:
    """Change name, scopes, allow-lists, expiry, pinned API version, external_id or
    meta; send `expires_at: null`, `api_version: null` or `external_id: null` to remove
    them. `meta` replaces the whole object."""
    key = await keys.update(
        principal,
        key_id,
        name=body.name,
        scopes=body.scopes,
        ip_allow=body.ip_allow,
        space_allow=body.space_allow,
        expires_at=body.expires_at,
        clear_expiry="expires_at" in body.model_fields_set and body.expires_at is None,
        api_version=body.api_version,
        clear_api_version="api_version" in body.model_fields_set and body.api_version is None,
        rate_limits=overrides(body.rate_limits),
        credits=body.credits.credits() if body.credits else None,
        clear_credits="credits" in body.model_fields_set and body.credits is None,
        external_id=body.external_id,
        clear_external_id="external_id" in body.model_fields_set and body.external_id is None,
        meta=set_meta(body),
    )
    return _out(clock, key)


@router.post("/{key_id}/disable", response_model=KeyOut, summary="Disable an API key")
async def disable_key(
    key_id: str,
    keys: KeysDep,
    clock: ClockDep,
    principal: Principal = require("keys:write", reach=Reach.CREDENTIAL),
) -> KeyOut:
    """Refuse the key at once until it is enabled again."""
    return _out(clock, await keys.disable(principal, key_id))


@router.post("/{key_id}/enable", response_model=KeyOut, summary="Enable an API key")
async def enable_key(
    key_id: str,
    keys: KeysDep,
    clock: ClockDep,
    principal: Principal = require("keys:write", reach=Reach.CREDENTIAL),
) -> KeyOut:
    return _out(clock, await keys.enable(principal, key_id))


@router.post("/{key_id}/revoke", response_model=KeyOut, summary="Revoke an API key")
async def revoke_key(
    key_id: str,
    keys: KeysDep,
    clock: ClockDep,
    principal: Principal = require("keys:write", reach=Reach.CREDENTIAL),
) -> KeyOut:
    """Refuse the key at once and for ever."""
    return _out(clock, await keys.revoke(principal, key_id))


@router.post(
    "/{key_id}/roll",
    status_code=201,
    response_model=KeyCreated,
    summary="Roll an API key",
    dependencies=NO_STORE,
)
async def roll_key(
    key_id: str,
    keys: KeysDep,
    clock: ClockDep,
    body: KeyRoll | None = None,
    principal: Principal = require("keys:write", reach=Reach.CREDENTIAL),
) -> KeyCreated:
    """Issue a new key with the same settings; the old one works for `grace_seconds`."""
    grace = timedelta(seconds=body.grace_seconds if body else 0)
    created = await keys.roll(principal, key_id, grace=grace)
    return KeyCreated(**_out(clock, created.key).model_dump(), key=created.plaintext)
