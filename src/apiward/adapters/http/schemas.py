"""Request and response bodies of the management API."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from apiward.core.limits import Credits, Refill
from apiward.core.models import (
    ApiKey,
    AuditEvent,
    EmailLink,
    Membership,
    OAuthClient,
    Page,
    RateOverride,
    Role,
    Space,
    User,
)

T = TypeVar("T")


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PageOut(BaseModel, Generic[T]):
    items: list[T]
    total: int
    page: int
    page_size: int


def page_of(page: Page[Any], items: list[T]) -> dict[str, object]:
    return {"items": items, "total": page.total, "page": page.page, "page_size": page.page_size}


# keys


class RateLimitIn(Body):
    name: str = Field(min_length=1, max_length=64, examples=["per-key"])
    rate: str = Field(max_length=32, examples=["1000/hour"])
    key: Literal["org", "credential", "ip", "user", "route"] = "credential"


class RateLimitOut(BaseModel):
    name: str
    rate: str
    key: str
    replaces_plan: bool = Field(
        description="Set by the operator: replaces the plan's limit of this name. A "
        "tenant's own limit is applied beside the plan's, so it can only restrict."
    )


class RefillIn(Body):
    amount: int = Field(ge=0, le=10**12)
    interval: Literal["daily", "monthly"] = "monthly"
    day: int = Field(1, ge=1, le=31, description="Day of the month, for monthly refills.")


class CreditsIn(Body):
    remaining: int = Field(ge=0, le=10**12, description="Uses left.")
    refill: RefillIn | None = None

    def credits(self) -> Credits:
        refill = self.refill
        return Credits(
            self.remaining,
            Refill(refill.amount, refill.interval, refill.day) if refill else None,
        )


def overrides(limits: list[RateLimitIn] | None) -> list[RateOverride] | None:
    return None if limits is None else [RateOverride(r.name, r.rate, r.key) for r in limits]


class KeyCreate(Body):
    name: str = Field(min_length=1, max_length=200, examples=["billing-sync"])
    scopes: list[str] = Field(min_length=1, max_length=100, examples=[["customers:read"]])
    environment: str | None = Field(None, description="Defaults to the caller's environment.")
    user_id: str | None = Field(None, description="Tie the key to a user; else it acts as you.")
    expires_at: datetime | None = None
    ip_allow: list[str] = Field([], max_length=100, examples=[["203.0.113.0/24"]])
    space_allow: list[str] = Field([], max_length=100)
    api_version: str | None = Field(None, description="Pin this API version for the key.")
    rate_limits: list[RateLimitIn] = Field(
        [],
        max_length=20,
        description="This key's own limits; they replace the org's limits of the same name.",
    )
    credits: CreditsIn | None = Field(None, description="Usage credits; omit for unlimited.")


class KeyUpdate(Body):
    name: str | None = Field(None, min_length=1, max_length=200)
    scopes: list[str] | None = Field(None, min_length=1, max_length=100)
    ip_allow: list[str] | None = Field(None, max_length=100)
    space_allow: list[str] | None = Field(None, max_length=100)
    expires_at: datetime | None = None
    api_version: str | None = None
    rate_limits: list[RateLimitIn] | None = Field(None, max_length=20)
    credits: CreditsIn | None = Field(None, description="Set the balance; null removes it.")


class KeyRoll(Body):
    grace_seconds: int = Field(
        0,
        ge=0,
        le=30 * 86400,
        description="How long the old key keeps working; 0 revokes it at once.",
    )


class KeyOut(BaseModel):
    id: str
    name: str
    environment: str
    prefix: str
    last4: str
    hint: str = Field(description="The key as it may be shown: prefix, dots, last four.")
    scopes: list[str]
    state: str
    user_id: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    ip_allow: list[str]
    space_allow: list[str]
    disabled_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    last_used_ip: str | None
    rolled_to: str | None
    api_version: str | None
    rate_limits: list[RateLimitOut]
    credits: dict[str, object] | None

    @classmethod
    def of(cls, key: ApiKey, now: datetime) -> KeyOut:
        return cls(
            id=key.id,
            name=key.name,
            environment=key.environment,
            prefix=key.prefix,
            last4=key.last4,
            hint=f"{key.prefix}...{key.last4}",
            scopes=list(key.scopes),
            state=key.state(now).value,
            user_id=key.user_id,
            created_by=key.created_by,
            created_at=key.created_at,
            updated_at=key.updated_at,
            expires_at=key.expires_at,
            ip_allow=list(key.ip_allow),
            space_allow=list(key.space_allow),
            disabled_at=key.disabled_at,
            revoked_at=key.revoked_at,
            last_used_at=key.last_used_at,
            last_used_ip=key.last_used_ip,
            rolled_to=key.rolled_to,
            api_version=key.api_version,
            rate_limits=[asdict(o) for o in key.rate_limits],
            credits=None
            if key.credits is None
            else {
                "remaining": key.credits.remaining,
                "refill": asdict(key.credits.refill) if key.credits.refill else None,
            },
        )


class KeyCreated(KeyOut):
    key: str = Field(description="The plaintext key. Shown once: store it now.")


# spaces


class SpaceCreate(Body):
    name: str = Field(min_length=1, max_length=200)


class SpaceUpdate(Body):
    name: str | None = Field(None, min_length=1, max_length=200)
    archived: bool | None = None


class SpaceOut(BaseModel):
    id: str
    name: str
    is_default: bool
    created_at: datetime
    archived_at: datetime | None

    @classmethod
    def of(cls, space: Space) -> SpaceOut:
        return cls(
            id=space.id,
            name=space.name,
            is_default=space.is_default,
            created_at=space.created_at,
            archived_at=space.archived_at,
        )


# users and memberships


class UserCreate(Body):
    email: str = Field(min_length=3, max_length=254)
    name: str | None = Field(None, min_length=1, max_length=200)
    password: str | None = Field(None, min_length=1, max_length=1024)
    role: str | None = Field(None, description="Grant this role at once.")
    space_id: str | None = Field(None, description="Space of the role; omit for every space.")


class ProjectCreate(Body):
    name: str = Field(min_length=1, max_length=200)


class ProjectOut(BaseModel):
    """A project (organisation) of the caller's account, and the account's role in it."""

    id: str
    name: str
    role: str | None
    created_at: datetime


class InvitationCreate(Body):
    email: str = Field(min_length=3, max_length=254, description="Who to invite.")
    role: str = Field(min_length=1, max_length=40, description="The role they get, in every space.")


class InvitationOut(BaseModel):
    """An invitation waiting for an answer. Its link goes to the invitee by email only."""

    id: str
    email: str
    role: str
    invited_by: str | None
    created_at: datetime
    expires_at: datetime

    @classmethod
    def of(cls, link: EmailLink) -> InvitationOut:
        return cls(
            id=link.id,
            email=link.email,
            role=link.role or "",
            invited_by=link.created_by,
            created_at=link.created_at,
            expires_at=link.expires_at,
        )


class UserUpdate(Body):
    name: str | None = Field(None, min_length=1, max_length=200)
    disabled: bool | None = None


class UserOut(BaseModel):
    id: str
    email: str
    name: str
    created_at: datetime
    disabled_at: datetime | None
    account_id: str | None = Field(
        None, description="The portal account this user stands for, if any."
    )

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(
            id=user.id,
            email=user.email,
            name=user.name,
            created_at=user.created_at,
            disabled_at=user.disabled_at,
            account_id=user.account_id,
        )


class MembershipPut(Body):
    role: str = Field(min_length=1, max_length=40)
    space_id: str | None = Field(None, description="Omit for a role in every space.")


class MembershipOut(BaseModel):
    user_id: str
    space_id: str | None
    role: str
    created_at: datetime

    @classmethod
    def of(cls, m: Membership) -> MembershipOut:
        return cls(user_id=m.user_id, space_id=m.space_id, role=m.role, created_at=m.created_at)


# roles


class RoleCreate(Body):
    name: str = Field(min_length=2, max_length=40, examples=["billing-reader"])
    scopes: list[str] = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=500)


class RoleUpdate(Body):
    scopes: list[str] | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=500)


class RoleOut(BaseModel):
    name: str
    scopes: list[str]
    description: str
    builtin: bool

    @classmethod
    def of(cls, role: Role) -> RoleOut:
        return cls(
            name=role.name,
            scopes=list(role.scopes),
            description=role.description,
            builtin=role.builtin,
        )


# audit


class AuditEventOut(BaseModel):
    id: str
    type: str
    created_at: datetime
    environment: str | None
    actor_user_id: str | None
    actor_credential_id: str | None
    target_type: str | None
    target_id: str | None
    space_id: str | None
    ip: str | None
    user_agent: str | None
    request_id: str | None
    data: dict[str, object]

    @classmethod
    def of(cls, ev: AuditEvent) -> AuditEventOut:
        return cls(
            id=ev.id,
            type=ev.type,
            created_at=ev.created_at,
            environment=ev.environment,
            actor_user_id=ev.actor_user_id,
            actor_credential_id=ev.actor_credential_id,
            target_type=ev.target_type,
            target_id=ev.target_id,
            space_id=ev.space_id,
            ip=ev.ip,
            user_agent=ev.user_agent,
            request_id=ev.request_id,
            data=ev.data,
        )


class ErrorOut(BaseModel):
    status_code: int
    code: str
    reason: str
    message: str
    request_id: str


# OAuth clients


class ClientCreate(Body):
    name: str = Field(min_length=1, max_length=200, examples=["ci-pipeline"])
    scopes: list[str] = Field(min_length=1, max_length=100, examples=[["customers:read"]])
    environment: str | None = Field(None, description="Defaults to the caller's environment.")
    user_id: str | None = Field(None, description="Act as this user; else as you.")
    expires_at: datetime | None = None


class ClientUpdate(Body):
    name: str | None = Field(None, min_length=1, max_length=200)
    scopes: list[str] | None = Field(None, min_length=1, max_length=100)


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
        )


class ClientCreated(ClientOut):
    client_secret: str = Field(description="Shown once: store it now.")


# verify API


class VerifyRequest(Body):
    key: str = Field(min_length=1, max_length=512, description="The API key to verify.")
    scopes: list[str] = Field([], max_length=50, description="Scopes the key must hold.")
    space_id: str | None = Field(None, max_length=64, description="The space it acts in.")
    ip: str | None = Field(
        None, max_length=64, description="The end client's address, for the key's allow-list."
    )
    route: str | None = Field(None, max_length=512, description="The route, for route limits.")
    method: str = Field("GET", max_length=16)


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
    principal: VerifyPrincipal | None = None
    ratelimit: dict[str, object] | None = None
    credits_remaining: int | None = None


# the organisation


class OrgUpdate(Body):
    name: str | None = Field(None, min_length=1, max_length=200)
    rate_tier: str | None = Field(
        None, max_length=64, description="A tier of APIWARD_RATE_LIMIT_TIERS; null: default."
    )


class OrgOut(BaseModel):
    id: str
    name: str
    created_at: datetime
    rate_tier: str | None
    rate_limits: list[dict[str, object]] = Field(
        description="The limits of the org's plan: name, rate, key kind."
    )
