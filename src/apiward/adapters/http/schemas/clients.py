"""Request and response bodies of ``/v1/clients``: OAuth clients."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from apiward.adapters.http.schemas.common import Body, Expiry, ExternalId, Meta
from apiward.core.models import OAuthClient


class ClientCreate(Body):
    name: str = Field(min_length=1, max_length=200, examples=["ci-pipeline"])
    scopes: list[str] = Field(min_length=1, max_length=100, examples=[["customers:read"]])
    environment: str | None = Field(None, description="Defaults to the caller's environment.")
    user_id: str | None = Field(None, description="Act as this user; else as you.")
    expires_at: Expiry | None = None
    external_id: ExternalId | None = None
    meta: Meta | None = None


class ClientUpdate(Body):
    name: str | None = Field(None, min_length=1, max_length=200)
    scopes: list[str] | None = Field(None, min_length=1, max_length=100)
    external_id: ExternalId | None = Field(None, description="Set it; null removes it.")
    meta: Meta | None = Field(None, description="Replaces the whole object; {} or null empties it.")


class ClientOut(BaseModel):
    client_id: str
    name: str
    environment: str
    secret_hint: str
    scopes: list[str]
    state: str
    user_id: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    last_used_ip: str | None
    external_id: str | None = Field(description="Your own id of whom the client is for.")
    meta: Meta = Field(description="Your own data about the client ({} when none).")

    @classmethod
    def of(cls, client: OAuthClient, now: datetime) -> ClientOut:
        expired = client.expires_at is not None and client.expires_at <= now
        state = "revoked" if client.revoked_at else "expired" if expired else "active"
        return cls(
            client_id=client.id,
            name=client.name,
            environment=client.environment,
            secret_hint=f"...{client.secret_last4}",
            scopes=list(client.scopes),
            state=state,
            user_id=client.user_id,
            created_by=client.created_by,
            created_at=client.created_at,
            updated_at=client.updated_at,
            expires_at=client.expires_at,
            revoked_at=client.revoked_at,
            last_used_at=client.last_used_at,
            last_used_ip=client.last_used_ip,
            external_id=client.external_id,
            meta=client.meta,
        )


class ClientCreated(ClientOut):
    client_secret: str = Field(description="Shown once: store it now.")
