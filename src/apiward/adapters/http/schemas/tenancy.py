"""Request and response bodies of the org, spaces, users, invitations, roles and audit."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from apiward.adapters.http.schemas.common import Body
from apiward.core.hygiene import HygienePolicy
from apiward.core.models import AuditEvent, EmailLink, Membership, Role, Space, User

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
    archived_by: str | None = Field(
        None,
        description="The user whose credential archived the space (null when not archived or "
        "unknown); bringing it back needs that user's authority.",
    )

    @classmethod
    def of(cls, space: Space) -> SpaceOut:
        return cls(
            id=space.id,
            name=space.name,
            is_default=space.is_default,
            created_at=space.created_at,
            archived_at=space.archived_at,
            archived_by=space.archived_by,
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


# the organisation


ReminderDay = Annotated[int, Field(ge=1, le=365)]
Percent = Annotated[int, Field(ge=1, le=100)]


class KeyHygiene(Body):
    """An organisation's own key hygiene policy; it only tightens the operator's."""

    unused_days: int | None = Field(
        None,
        ge=1,
        le=3650,
        description="Disable keys unused for this many days; at most the operator's "
        "limit when one is set; null: the operator's.",
    )
    expiry_reminder_days: list[ReminderDay] = Field(
        default_factory=list,
        max_length=10,
        description="Reminder days before a key's expiry, added to the operator's.",
    )
    credit_thresholds: list[Percent] = Field(
        default_factory=list,
        max_length=10,
        description="Percentages of refilling credits spent that are announced, added to "
        "the operator's.",
    )
    shared_networks: int | None = Field(
        None,
        ge=2,
        le=1_000_000,
        description="Send key.anomaly when a key's requests of one UTC day come from this "
        "many networks (/24 of IPv4, /48 of IPv6); at most the operator's; null: the "
        "operator's.",
    )
    shared_countries: int | None = Field(
        None,
        ge=2,
        le=300,
        description="Send key.anomaly when a key's requests of one UTC day come from this "
        "many countries (a country source must be configured); at most the operator's.",
    )
    shared_disable: bool = Field(
        False,
        description="Also disable a key when key.anomaly is sent (the operator's true stays true).",
    )

    def policy(self) -> HygienePolicy:
        return HygienePolicy(
            unused_days=self.unused_days,
            expiry_days=tuple(sorted(set(self.expiry_reminder_days), reverse=True)),
            credit_percents=tuple(sorted(set(self.credit_thresholds))),
            shared_networks=self.shared_networks,
            shared_countries=self.shared_countries,
            shared_disable=self.shared_disable,
        )

    @classmethod
    def of(cls, policy: HygienePolicy) -> KeyHygiene:
        """An organisation's own policy, as it was sent."""
        return cls(**KeyHygieneInForce.of(policy).model_dump())


class KeyHygieneInForce(BaseModel):
    """The key hygiene policy that applies to an organisation: the operator's, tightened
    by the organisation's own (its lists can be longer than one request may send)."""

    unused_days: int | None
    expiry_reminder_days: list[int]
    credit_thresholds: list[int]
    shared_networks: int | None
    shared_countries: int | None
    shared_disable: bool

    @classmethod
    def of(cls, policy: HygienePolicy) -> KeyHygieneInForce:
        return cls(
            unused_days=policy.unused_days,
            expiry_reminder_days=list(policy.expiry_days),
            credit_thresholds=list(policy.credit_percents),
            shared_networks=policy.shared_networks,
            shared_countries=policy.shared_countries,
            shared_disable=policy.shared_disable,
        )


class OrgUpdate(Body):
    name: str | None = Field(None, min_length=1, max_length=200)
    rate_tier: str | None = Field(
        None, max_length=64, description="A tier of APIWARD_RATE_LIMIT_TIERS; null: default."
    )
    key_hygiene: KeyHygiene | None = Field(
        None,
        description="The organisation's own key hygiene policy, tightening the operator's "
        "(README, 'Keeping keys healthy'); null: the operator's alone.",
    )
    require_mfa: bool | None = Field(
        None,
        description="Whether every member must sign in to the dashboard with a second "
        "factor (README, 'Two-factor sign-in'); changing it needs an owner's powers.",
    )


class OrgOut(BaseModel):
    id: str
    name: str
    created_at: datetime
    rate_tier: str | None
    rate_limits: list[dict[str, object]] = Field(
        description="The limits of the org's plan: name, rate, key kind."
    )
    key_hygiene: KeyHygiene | None = Field(
        None, description="The organisation's own key hygiene policy (null: none)."
    )
    key_hygiene_in_force: KeyHygieneInForce | None = Field(
        None, description="The policy that applies: the operator's, tightened by the org's."
    )
    require_mfa: bool = Field(
        False, description="Whether every member must sign in with a second factor."
    )
