"""Request and response bodies of ``/v1/keys``: keys, their rate limits and credits."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from apiward.adapters.http.schemas.common import Body, Expiry, ExternalId, Meta
from apiward.core.limits import Credits, Refill
from apiward.core.models import ApiKey, RateOverride


class RateLimitIn(Body):
    name: str = Field(min_length=1, max_length=64, examples=["per-key"])
    rate: str = Field(
        max_length=32,
        examples=["1000/hour"],
        description="count/period, the period one day at most",
    )
    key: Literal["org", "credential", "ip", "user", "route"] = "credential"
    mode: Literal["enforce", "report"] = Field(
        "enforce",
        description="report: counted as what it would refuse (WOULD_REFUSE in analytics), "
        "never enforced nor shown in headers.",
    )


class RateLimitOut(BaseModel):
    name: str
    rate: str
    key: str
    mode: str = "enforce"
    replaces_plan: bool = Field(
        description="Set by the operator: replaces the plan's limit of this name. A "
        "tenant's own limit is applied beside the plan's, counted for this key alone, so "
        "it can only restrict."
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
    return (
        None
        if limits is None
        else [RateOverride(r.name, r.rate, r.key, mode=r.mode) for r in limits]
    )


class KeyCreate(Body):
    name: str = Field(min_length=1, max_length=200, examples=["billing-sync"])
    scopes: list[str] = Field(min_length=1, max_length=100, examples=[["customers:read"]])
    environment: str | None = Field(None, description="Defaults to the caller's environment.")
    user_id: str | None = Field(None, description="Tie the key to a user; else it acts as you.")
    expires_at: Expiry | None = None
    ip_allow: list[str] = Field([], max_length=100, examples=[["203.0.113.0/24"]])
    space_allow: list[str] = Field([], max_length=100)
    api_version: str | None = Field(None, description="Pin this API version for the key.")
    rate_limits: list[RateLimitIn] = Field(
        [],
        max_length=20,
        description="This key's own limits (periods of at most one day). An operator's "
        "replace the plan's limits of the same name; a tenant's apply beside them, counted "
        "for this key alone.",
    )
    credits: CreditsIn | None = Field(None, description="Usage credits; omit for unlimited.")
    external_id: ExternalId | None = None
    meta: Meta | None = None


class KeyUpdate(Body):
    name: str | None = Field(None, min_length=1, max_length=200)
    scopes: list[str] | None = Field(None, min_length=1, max_length=100)
    ip_allow: list[str] | None = Field(None, max_length=100)
    space_allow: list[str] | None = Field(None, max_length=100)
    expires_at: Expiry | None = None
    api_version: str | None = None
    rate_limits: list[RateLimitIn] | None = Field(None, max_length=20)
    credits: CreditsIn | None = Field(None, description="Set the balance; null removes it.")
    external_id: ExternalId | None = Field(None, description="Set it; null removes it.")
    meta: Meta | None = Field(None, description="Replaces the whole object; {} or null empties it.")


class KeyRoll(Body):
    grace_seconds: int = Field(
        0,
        ge=0,
        le=30 * 86400,
        description="How long the old key keeps working; 0 revokes it at once.",
    )


class OperatorBoundsOut(BaseModel):
    """What the operator set on a key, which its tenant may only tighten (null: nothing)."""

    expires_at: datetime | None = Field(description="The key's expiry may only be earlier.")
    ip_allow: list[str] | None = Field(
        description="Every block of the key's IP allow-list lies inside one of these."
    )
    space_allow: list[str] | None = Field(
        description="The key's space allow-list is a subset of these."
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
    operator_bounds: OperatorBoundsOut
    external_id: str | None = Field(description="Your own id of whom the key is for.")
    meta: Meta = Field(description="Your own data about the key ({} when none).")

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
            operator_bounds=OperatorBoundsOut(
                expires_at=key.operator_expires_at,
                ip_allow=_listed(key.operator_ip_allow),
                space_allow=_listed(key.operator_space_allow),
            ),
            external_id=key.external_id,
            meta=key.meta,
        )


def _listed(values: tuple[str, ...] | None) -> list[str] | None:
    return None if values is None else list(values)


class KeyCreated(KeyOut):
    key: str = Field(description="The plaintext key. Shown once: store it now.")
