"""Request and response bodies of ``POST /v1/keys/verify``."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from apiward.adapters.http.schemas.common import Body, Meta


class VerifyRequest(Body):
    key: str = Field(min_length=1, max_length=512, description="The API key to verify.")
    scopes: list[str] = Field([], max_length=50, description="Scopes the key must hold.")
    space_id: str | None = Field(None, max_length=64, description="The space it acts in.")
    ip: str | None = Field(
        None, max_length=64, description="The end client's address, for the key's allow-list."
    )
    route: str | None = Field(
        None,
        max_length=512,
        description="The path the request asked for, for route limits; made canonical as "
        "forward auth's (docs/forward-auth.md): one with no single meaning is a 400.",
    )
    method: str = Field("GET", max_length=16, description="The request's method, for route rules.")


class VerifyPrincipal(BaseModel):
    org_id: str
    environment: str
    space_id: str
    user_id: str
    scopes: list[str]
    api_version: str | None


class VerifyOut(BaseModel):
    valid: bool
    code: str = Field(
        description="VALID, NOT_FOUND, DISABLED, EXPIRED, REVOKED, FORBIDDEN, "
        "INSUFFICIENT_PERMISSIONS or RATE_LIMITED"
    )
    message: str | None = None
    key_id: str | None = None
    name: str | None = None
    expires_at: datetime | None = None
    external_id: str | None = Field(
        None, description="Your own id of whom the key is for (a key of your organisation)."
    )
    meta: Meta | None = Field(
        None, description="Your own data about the key (a key of your organisation)."
    )
    principal: VerifyPrincipal | None = None
    ratelimit: dict[str, object] | None = None
    credits_remaining: int | None = None
