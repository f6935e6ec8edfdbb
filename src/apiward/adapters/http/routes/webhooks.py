"""``/v1/webhooks``: endpoints that receive an organisation's events, signed, and their history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from apiward.adapters.http.access import Reach
from apiward.adapters.http.deps import WebhooksDep
from apiward.adapters.http.routes.common import NO_STORE, pagination
from apiward.adapters.http.schemas.common import PageOut, page_of
from apiward.adapters.http.schemas.webhooks import (
    DeliveryOut,
    EventTypeOut,
    WebhookCreate,
    WebhookCreated,
    WebhookOut,
    WebhookUpdate,
)
from apiward.adapters.http.security import require
from apiward.core.models import PageRequest, Principal
from apiward.services.webhooks import WEBHOOK_EVENTS

router = APIRouter(prefix="/v1/webhooks", tags=["Webhooks"])
Paging = Annotated[PageRequest, Depends(pagination)]


@router.get(
    "/events", response_model=list[EventTypeOut], summary="Event types an endpoint can receive"
)
async def list_event_types(principal: Principal = require("webhooks:read")) -> list[EventTypeOut]:
    return [EventTypeOut(type=t, description=d) for t, d in WEBHOOK_EVENTS.items()]


@router.post(
    "",
    status_code=201,
    response_model=WebhookCreated,
    summary="Register an endpoint",
    dependencies=NO_STORE,
)
async def create_webhook(
    body: WebhookCreate,
    webhooks: WebhooksDep,
    principal: Principal = require("webhooks:manage", reach=Reach.CREDENTIAL),
) -> WebhookCreated:
    """Register an endpoint for some event types. The signing `secret` is in this answer
    only; every delivery carries `Apiward-Signature: t=<unix>,v1=<HMAC-SHA256 hex>`."""
    created = await webhooks.create(
        principal,
        url=body.url,
        events=body.events,
        description=body.description,
        environment=body.environment,
    )
    return WebhookCreated(**WebhookOut.of(created.endpoint).model_dump(), secret=created.secret)


@router.get("", response_model=PageOut[WebhookOut], summary="List endpoints")
async def list_webhooks(
    webhooks: WebhooksDep,
    paging: Paging,
    environment: str | None = Query(None, max_length=32),
    principal: Principal = require("webhooks:read"),
) -> dict[str, object]:
    page = await webhooks.list_endpoints(principal, paging, environment=environment)
    return page_of(page, [WebhookOut.of(e) for e in page.items])


@router.get("/{webhook_id}", response_model=WebhookOut, summary="Get an endpoint")
async def get_webhook(
    webhook_id: str, webhooks: WebhooksDep, principal: Principal = require("webhooks:read")
) -> WebhookOut:
    return WebhookOut.of(await webhooks.get(principal, webhook_id))


@router.patch("/{webhook_id}", response_model=WebhookOut, summary="Update an endpoint")
async def update_webhook(
    webhook_id: str,
    body: WebhookUpdate,
    webhooks: WebhooksDep,
    principal: Principal = require("webhooks:manage", reach=Reach.CREDENTIAL),
) -> WebhookOut:
    """Change the URL, events or description, or disable (`disabled: true`) and enable."""
    endpoint = await webhooks.update(
        principal,
        webhook_id,
        url=body.url,
        events=body.events,
        description=body.description,
        disabled=body.disabled,
    )
    return WebhookOut.of(endpoint)


@router.delete("/{webhook_id}", status_code=204, summary="Delete an endpoint")
async def delete_webhook(
    webhook_id: str,
    webhooks: WebhooksDep,
    principal: Principal = require("webhooks:manage", reach=Reach.CREDENTIAL),
) -> Response:
    """Delete the endpoint and its delivery history; pending deliveries are dropped."""
    await webhooks.delete(principal, webhook_id)
    return Response(status_code=204)


@router.post(
    "/{webhook_id}/roll-secret",
    response_model=WebhookCreated,
    summary="Roll the signing secret",
    dependencies=NO_STORE,
)
async def roll_webhook_secret(
    webhook_id: str,
    webhooks: WebhooksDep,
    principal: Principal = require("webhooks:manage", reach=Reach.CREDENTIAL),
) -> WebhookCreated:
    """A new signing secret, effective at once and shown in this answer only."""
    rolled = await webhooks.roll_secret(principal, webhook_id)
    return WebhookCreated(**WebhookOut.of(rolled.endpoint).model_dump(), secret=rolled.secret)


@router.post(
    "/{webhook_id}/test",
    status_code=202,
    response_model=DeliveryOut,
    summary="Send a test event",
)
async def send_test_event(
    webhook_id: str,
    webhooks: WebhooksDep,
    principal: Principal = require("webhooks:manage", reach=Reach.CREDENTIAL),
) -> DeliveryOut:
    """Queue a `webhook.test` event for the endpoint; its outcome appears in the
    deliveries within a second or two."""
    delivery = await webhooks.send_test(principal, webhook_id)
    return DeliveryOut.of(delivery)


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=DeliveryOut,
    summary="Send a failed delivery again",
)
async def redeliver(
    webhook_id: str,
    delivery_id: str,
    webhooks: WebhooksDep,
    principal: Principal = require("webhooks:manage", reach=Reach.CREDENTIAL),
) -> DeliveryOut:
    """Queue a failed delivery again, due at once, with its attempts counted afresh: the
    same event and body, so a receiver deduplicating by event id sees it once. A delivery
    that is pending or succeeded answers 409."""
    return DeliveryOut.of(await webhooks.redeliver(principal, webhook_id, delivery_id))


@router.get(
    "/{webhook_id}/deliveries",
    response_model=PageOut[DeliveryOut],
    summary="Delivery history of an endpoint",
)
async def list_deliveries(
    webhook_id: str,
    webhooks: WebhooksDep,
    paging: Paging,
    principal: Principal = require("webhooks:read"),
) -> dict[str, object]:
    """Every delivery, newest first: status, attempts (each with its HTTP status or
    error and duration), next attempt, and the body sent."""
    page = await webhooks.deliveries(principal, webhook_id, paging)
    return page_of(page, [DeliveryOut.of(d) for d in page.items])
