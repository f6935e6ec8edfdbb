"""Bodies of the token endpoints (adapters/http/routes/oauth.py)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class TokenRequest(BaseModel):
    """The token endpoint's parameters, as JSON or as a form (RFC 6749 section 4)."""

    grant_type: str | None = Field(
        None,
        description="password, refresh_token, client_credentials or token exchange. "
        "A body with username and password and no grant_type is a password grant.",
    )
    username: str | None = None
    password: str | None = None
    refresh_token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    scope: str | None = Field(None, description="Space-separated scopes to narrow the token.")
    org_id: str | None = None
    environment: str | None = None
    subject_token: str | None = None
    subject_token_type: str | None = None
    space_id: str | None = None


class TokenResponse(BaseModel):
    token_type: str = "Bearer"
    access_token: str
    expires_in: int
    scope: str
    refresh_token: str | None = None
    issued_token_type: str | None = None


class RefreshRequest(BaseModel):
    refresh_token: str


class TokenParam(BaseModel):
    token: str
    token_type_hint: str | None = None
