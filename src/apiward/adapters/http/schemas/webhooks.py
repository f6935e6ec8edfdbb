"""Bodies of ``/v1/webhooks`` (adapters/http/routes/webhooks.py)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from apiward.adapters.http.schemas.common import Body
from apiward.core.webhooks import WebhookDelivery, WebhookEndpoint

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
    payload: dict[str, Any] | None = Field(
        description="The body sent, as JSON: an audit event, so null unless the caller holds "
        "`audit:read`."
    )

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
