"""Webhook records: the endpoints an organisation registers, the deliveries queued for
them, and what one HTTP attempt gave."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """An HTTPS endpoint of an organisation that receives signed events."""

    id: str
    org_id: str
    environment: str
    url: str
    events: tuple[str, ...]
    secret_sealed: str
    created_by: str
    created_at: datetime
    updated_at: datetime
    description: str = ""
    disabled_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One event queued for one endpoint, and the story of its attempts."""

    id: str
    endpoint_id: str
    org_id: str
    event_id: str
    event_type: str
    payload: str
    """The exact body sent (and signed) on every attempt."""
    created_at: datetime
    next_attempt_at: datetime | None
    status: str = "pending"
    """``pending``, ``succeeded`` or ``failed`` (attempts exhausted)."""
    attempts: int = 0
    last_attempt_at: datetime | None = None
    response_status: int | None = None
    error: str | None = None
    completed_at: datetime | None = None
    attempt_log: tuple[dict[str, object], ...] = ()


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What one HTTP attempt gave: a status, or why there was none."""

    status: int | None
    error: str | None
    duration_ms: float
