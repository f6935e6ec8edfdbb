"""``/v1/webhooks``: endpoints that receive an organisation's events, signed, and their history."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from apiward.adapters.http.deps import WebhooksDep
from apiward.adapters.http.routes.common import NO_STORE, pagination
from apiward.adapters.http.schemas.common import Body, PageOut, page_of
from apiward.adapters.http.security import require
from apiward.core.models import PageRequest, Principal
from apiward.core.webhooks import WebhookDelivery, WebhookEndpoint
from apiward.services.webhooks import WEBHOOK_EVENTS

router = APIRouter(prefix="/v1/webhooks", tags=["Webhooks"])
Paging = Annotated[PageRequest, Depends(pagination)]
EventName = Annotated[str, Field(min_length=1, max_length=64)]


class WebhookCreate(Body):
    url: str = Field(
        max_length=2048,
        description="https:// (http:// only to a loopback address, for testing).",
        examples=["https://hooks.example.com/apiward"],
    )
    events: list[EventName] = Field(
        min_length=1,
        max_length=50,
        description="Event types to receive (GET /v1/webhooks/events), or ['*'].",
        examples=[["key.revoked", "key.leaked"]],
    )
    description: str = Field("", max_length=500)
    environment: str | None = Field(
        None, max_length=32, description="Whose events: live or test (default: the caller's)."
    )


class WebhookUpdate(Body):
    url: str | None = Field(None, max_length=2048)
    events: list[EventName] | None = Field(None, min_length=1, max_length=50)
    description: str | None = Field(None, max_length=500)
    disabled: bool | None = Field(None, description="A disabled endpoint receives nothing.")


class WebhookOut(BaseModel):
    id: str
    url: str
    description: str
    events: list[str]
    environment: str
    state: Literal["enabled", "disabled"]
    created_at: datetime
    updated_at: datetime
    disabled_at: datetime | None

    @classmethod
    def of(cls, endpoint: WebhookEndpoint) -> WebhookOut:
        return cls(
            id=endpoint.id,
            url=endpoint.url,
            description=endpoint.description,
            events=list(endpoint.events),
            environment=endpoint.environment,
            state="disabled" if endpoint.disabled_at else "enabled",
            created_at=endpoint.created_at,
            updated_at=endpoint.updated_at,
            disabled_at=endpoint.disabled_at,
        )


class WebhookCreated(WebhookOut):
    secret: str = Field(
        description="The signing secret (whsec_...), in this answer only. Verify deliveries "
        "with it: apiward.webhooks.verify_signature(secret, header, body)."
    )


class AttemptOut(BaseModel):
    attempt: int
    at: datetime
    status: int | None
    error: str | None
    duration_ms: float


class DeliveryOut(BaseModel):
    id: str
    webhook_id: str
    event_id: str
    event_type: str
    status: Literal["pending", "succeeded", "failed"]
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    response_status: int | None
    error: str | None
    completed_at: datetime | None
    attempt_log: list[AttemptOut]
    payload: dict[str, Any] = Field(description="The body sent, as JSON.")

    @classmethod
    def of(cls, delivery: WebhookDelivery) -> DeliveryOut:
        return cls(
            id=delivery.id,
            webhook_id=delivery.endpoint_id,
            event_id=delivery.event_id,
            event_type=delivery.event_type,
            status=delivery.status,
            attempts=delivery.attempts,
            created_at=delivery.created_at,
            next_attempt_at=delivery.next_attempt_at,
            last_attempt_at=delivery.last_attempt_at,
            response_status=delivery.response_status,
            error=delivery.error,
            completed_at=delivery.completed_at,
            attempt_log=[AttemptOut.model_validate(entry) for entry in delivery.attempt_log],
            payload=json.loads(delivery.payload),
        )


class EventTypeOut(BaseModel):
    type: str
    description: str


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
    body: WebhookCreate, webhooks: WebhooksDep, principal: Principal = require("webhooks:manage")
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
    principal: Principal = require("webhooks:manage"),
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
    webhook_id: str, webhooks: WebhooksDep, principal: Principal = require("webhooks:manage")
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
    webhook_id: str, webhooks: WebhooksDep, principal: Principal = require("webhooks:manage")
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
    webhook_id: str, webhooks: WebhooksDep, principal: Principal = require("webhooks:manage")
) -> DeliveryOut:
    """Queue a `webhook.test` event for the endpoint; its outcome appears in the
    deliveries within a second or two."""
    delivery = await webhooks.send_test(principal, webhook_id)
    return DeliveryOut.of(delivery)


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
