"""``/v1/org``, ``/v1/spaces``, ``/v1/users``, ``/v1/invitations``, ``/v1/roles`` and
``/v1/audit-events``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from apiward.adapters.http.access import Environments, Reach
from apiward.adapters.http.deps import AuditDep, LimitsDep, PortalDep, TenancyDep
from apiward.adapters.http.routes.common import pagination
from apiward.adapters.http.schemas.common import Instant, PageOut, page_of
from apiward.adapters.http.schemas.tenancy import (
    AuditEventOut,
    InvitationCreate,
    InvitationOut,
    KeyHygiene,
    KeyHygieneInForce,
    MembershipOut,
    MembershipPut,
    OrgOut,
    OrgUpdate,
    ProjectCreate,
    ProjectOut,
    RoleCreate,
    RoleOut,
    RoleUpdate,
    SpaceCreate,
    SpaceOut,
    SpaceUpdate,
    UserCreate,
    UserOut,
    UserUpdate,
)
from apiward.adapters.http.security import require
from apiward.core.hygiene import HygienePolicy
from apiward.core.models import AuditFilter, Organisation, PageRequest, Principal
from apiward.services.limiting import RequestLimits

router = APIRouter()
PRIMARY = Environments.PRIMARY
OWNER = "owner:*"
TIERS = "operator:tiers"
Paging = Annotated[PageRequest, Depends(pagination)]

# the organisation -----------------------------------------------------------------


async def _org_out(
    request_limits: RequestLimits, org: Organisation, in_force: HygienePolicy
) -> OrgOut:
    plan = request_limits.plan_for(org.rate_tier)
    limits = [
        {
            "name": p.name,
            "limit": p.limit,
            "period_seconds": p.period,
            "key": p.key,
            "mode": p.mode,
        }
        for p in plan.policies
    ]
    return OrgOut(
        id=org.id,
        name=org.name,
        created_at=org.created_at,
        rate_tier=org.rate_tier,
        rate_limits=limits,
        key_hygiene=KeyHygiene.of(org.key_hygiene) if org.key_hygiene else None,
        key_hygiene_in_force=KeyHygieneInForce.of(in_force),
        require_mfa=org.require_mfa,
    )


@router.get("/v1/org", response_model=OrgOut, tags=["Organisation"])
async def get_org(
    tenancy: TenancyDep, limits: LimitsDep, principal: Principal = require("org:read")
) -> OrgOut:
    """The caller's organisation, the rate limits of its plan and its key hygiene."""
    org = await tenancy.get_org(principal.org_id)
    return await _org_out(limits, org, tenancy.hygiene_in_force(org))


@router.patch("/v1/org", response_model=OrgOut, tags=["Organisation"])
async def update_org(
    body: OrgUpdate,
    tenancy: TenancyDep,
    limits: LimitsDep,
    principal: Principal = require(
        "org:manage", environments=PRIMARY, reach=Reach.ORG, powers=(TIERS,)
    ),
) -> OrgOut:
    """Rename the organisation, move it to a rate-limit tier (`null`: the default), or
    set its own key hygiene policy (`null`: the operator's alone), which may only tighten
    the operator's: a shorter unused limit, more reminder days and credit thresholds, or
    require every member to sign in to the dashboard with a second factor."""
    hygiene = body.key_hygiene
    org = await tenancy.update_org(
        principal,
        name=body.name,
        rate_tier=body.rate_tier,
        clear_tier="rate_tier" in body.model_fields_set and body.rate_tier is None,
        key_hygiene=hygiene.policy() if hygiene else None,
        clear_hygiene="key_hygiene" in body.model_fields_set and hygiene is None,
        require_mfa=body.require_mfa,
    )
    return await _org_out(limits, org, tenancy.hygiene_in_force(org))


# spaces -------------------------------------------------------------------------


@router.get("/v1/spaces", response_model=PageOut[SpaceOut], tags=["Spaces"])
async def list_spaces(
    tenancy: TenancyDep,
    paging: Paging,
    include_archived: bool = False,
    principal: Principal = require("spaces:read"),
) -> dict[str, object]:
    page = await tenancy.list_spaces(principal, paging, include_archived=include_archived)
    return page_of(page, [SpaceOut.of(s) for s in page.items])


@router.post("/v1/spaces", status_code=201, response_model=SpaceOut, tags=["Spaces"])
async def create_space(
    body: SpaceCreate,
    tenancy: TenancyDep,
    principal: Principal = require("spaces:manage", environments=PRIMARY, reach=Reach.ORG),
) -> SpaceOut:
    return SpaceOut.of(await tenancy.create_space(principal, body.name))


@router.get("/v1/spaces/{space_id}", response_model=SpaceOut, tags=["Spaces"])
async def get_space(
    space_id: str, tenancy: TenancyDep, principal: Principal = require("spaces:read")
) -> SpaceOut:
    return SpaceOut.of(await tenancy.get_space(principal, space_id))


@router.patch("/v1/spaces/{space_id}", response_model=SpaceOut, tags=["Spaces"])
async def update_space(
    space_id: str,
    body: SpaceUpdate,
    tenancy: TenancyDep,
    principal: Principal = require("spaces:manage", environments=PRIMARY, reach=Reach.SPACE),
) -> SpaceOut:
    """Rename a space, or archive it (`archived: true`) and bring it back."""
    space = await tenancy.update_space(principal, space_id, name=body.name, archived=body.archived)
    return SpaceOut.of(space)


# users --------------------------------------------------------------------------


@router.get("/v1/users", response_model=PageOut[UserOut], tags=["Users"])
async def list_users(
    tenancy: TenancyDep, paging: Paging, principal: Principal = require("users:read")
) -> dict[str, object]:
    page = await tenancy.list_users(principal, paging)
    return page_of(page, [UserOut.of(u) for u in page.items])


@router.post("/v1/users", status_code=201, response_model=UserOut, tags=["Users"])
async def create_user(
    body: UserCreate,
    tenancy: TenancyDep,
    principal: Principal = require(
        "users:manage", environments=PRIMARY, reach=Reach.SPACE, powers=(OWNER,)
    ),
) -> UserOut:
    user = await tenancy.create_user(
        principal,
        body.email,
        name=body.name,
        password=body.password,
        role=body.role,
        space_id=body.space_id,
    )
    return UserOut.of(user)


@router.get("/v1/projects", response_model=list[ProjectOut], tags=["Projects"])
async def list_projects(
    portal: PortalDep, principal: Principal = require("projects:read", reach=Reach.ACCOUNT)
) -> list[ProjectOut]:
    """The projects of the caller's portal account (its acting user's), with its role in
    each."""
    projects = await portal.projects(await portal.account_of(principal))
    return [
        ProjectOut(id=p.org.id, name=p.org.name, role=p.role, created_at=p.org.created_at)
        for p in projects
    ]


@router.post("/v1/projects", status_code=201, response_model=ProjectOut, tags=["Projects"])
async def create_project(
    body: ProjectCreate,
    portal: PortalDep,
    principal: Principal = require("projects:manage", environments=PRIMARY, reach=Reach.ACCOUNT),
) -> ProjectOut:
    """Create a project (an organisation with its environments) owned by the caller's
    portal account. Its keys are created in the new project, by its owner."""
    account = await portal.account_of(principal)
    project = await portal.create_project(account, body.name, principal.context)
    org = project.org
    return ProjectOut(id=org.id, name=org.name, role=project.role, created_at=org.created_at)


@router.get("/v1/invitations", response_model=list[InvitationOut], tags=["Users"])
async def list_invitations(
    portal: PortalDep, principal: Principal = require("users:read")
) -> list[InvitationOut]:
    """Invitations not yet accepted, revoked or expired, newest first."""
    links = await portal.invitations(principal)
    return [InvitationOut.of(link) for link in links]


@router.post("/v1/invitations", status_code=201, response_model=InvitationOut, tags=["Users"])
async def create_invitation(
    body: InvitationCreate,
    portal: PortalDep,
    principal: Principal = require(
        "users:manage", environments=PRIMARY, reach=Reach.ORG, powers=(OWNER,)
    ),
) -> InvitationOut:
    """Email an invitation to join the organisation with a role. The link in the email
    works once, until it expires; it is never returned here. A new invitation to the
    same address replaces the earlier one."""
    link = await portal.invite(principal, body.email, body.role)
    return InvitationOut.of(link)


@router.delete("/v1/invitations/{invitation_id}", status_code=204, tags=["Users"])
async def revoke_invitation(
    invitation_id: str,
    portal: PortalDep,
    principal: Principal = require("users:manage", environments=PRIMARY, reach=Reach.ORG),
) -> Response:
    """Revoke an invitation: its link stops working."""
    await portal.revoke_invitation(principal, invitation_id)
    return Response(status_code=204)


@router.get("/v1/users/{user_id}", response_model=UserOut, tags=["Users"])
async def get_user(
    user_id: str, tenancy: TenancyDep, principal: Principal = require("users:read")
) -> UserOut:
    return UserOut.of(await tenancy.get_user(principal, user_id))


@router.patch("/v1/users/{user_id}", response_model=UserOut, tags=["Users"])
async def update_user(
    user_id: str,
    body: UserUpdate,
    tenancy: TenancyDep,
    principal: Principal = require(
        "users:manage", environments=PRIMARY, reach=Reach.SPACE, powers=(OWNER,)
    ),
) -> UserOut:
    """Rename a user, or disable (`disabled: true`) and re-enable them."""
    user = await tenancy.update_user(principal, user_id, name=body.name, disabled=body.disabled)
    return UserOut.of(user)


@router.get("/v1/users/{user_id}/memberships", response_model=list[MembershipOut], tags=["Users"])
async def list_memberships(
    user_id: str, tenancy: TenancyDep, principal: Principal = require("users:read")
) -> list[MembershipOut]:
    items = await tenancy.memberships(principal, user_id)
    return [MembershipOut.of(m) for m in items]


@router.put("/v1/users/{user_id}/memberships", response_model=MembershipOut, tags=["Users"])
async def put_membership(
    user_id: str,
    body: MembershipPut,
    tenancy: TenancyDep,
    principal: Principal = require(
        "users:manage", environments=PRIMARY, reach=Reach.SPACE, powers=(OWNER,)
    ),
) -> MembershipOut:
    """Give the user a role in one space, or in every space when `space_id` is omitted."""
    membership = await tenancy.grant(principal, user_id, body.role, body.space_id)
    return MembershipOut.of(membership)


@router.delete("/v1/users/{user_id}/memberships", status_code=204, tags=["Users"])
async def delete_membership(
    user_id: str,
    tenancy: TenancyDep,
    space_id: str | None = Query(None, max_length=64, description="Omit for the org-wide role."),
    principal: Principal = require(
        "users:manage", environments=PRIMARY, reach=Reach.SPACE, powers=(OWNER,)
    ),
) -> Response:
    await tenancy.revoke_membership(principal, user_id, space_id)
    return Response(status_code=204)


# roles --------------------------------------------------------------------------


@router.get("/v1/roles", response_model=PageOut[RoleOut], tags=["Roles"])
async def list_roles(
    tenancy: TenancyDep, paging: Paging, principal: Principal = require("roles:read")
) -> dict[str, object]:
    roles = await tenancy.list_roles(principal)
    items = roles[paging.offset : paging.offset + paging.page_size]
    return {
        "items": [RoleOut.of(r) for r in items],
        "total": len(roles),
        "page": paging.page,
        "page_size": paging.page_size,
    }


@router.post("/v1/roles", status_code=201, response_model=RoleOut, tags=["Roles"])
async def create_role(
    body: RoleCreate,
    tenancy: TenancyDep,
    principal: Principal = require(
        "roles:manage", environments=PRIMARY, reach=Reach.ORG, powers=(OWNER,)
    ),
) -> RoleOut:
    role = await tenancy.create_role(principal, body.name, body.scopes, body.description)
    return RoleOut.of(role)


@router.get("/v1/roles/{name}", response_model=RoleOut, tags=["Roles"])
async def get_role(
    name: str, tenancy: TenancyDep, principal: Principal = require("roles:read")
) -> RoleOut:
    return RoleOut.of(await tenancy.get_role(principal, name))


@router.patch("/v1/roles/{name}", response_model=RoleOut, tags=["Roles"])
async def update_role(
    name: str,
    body: RoleUpdate,
    tenancy: TenancyDep,
    principal: Principal = require(
        "roles:manage", environments=PRIMARY, reach=Reach.ORG, powers=(OWNER,)
    ),
) -> RoleOut:
    role = await tenancy.update_role(
        principal, name, scopes=body.scopes, description=body.description
    )
    return RoleOut.of(role)


@router.delete("/v1/roles/{name}", status_code=204, tags=["Roles"])
async def delete_role(
    name: str,
    tenancy: TenancyDep,
    principal: Principal = require(
        "roles:manage", environments=PRIMARY, reach=Reach.ORG, powers=(OWNER,)
    ),
) -> Response:
    await tenancy.delete_role(principal, name)
    return Response(status_code=204)


# audit --------------------------------------------------------------------------


@router.get("/v1/audit-events", response_model=PageOut[AuditEventOut], tags=["Audit"])
async def list_audit_events(
    audit: AuditDep,
    paging: Paging,
    type: str | None = Query(None, max_length=64, description="e.g. key.revoked"),
    actor_user_id: str | None = Query(None, max_length=64),
    target_id: str | None = Query(None, max_length=64),
    credential_id: str | None = Query(
        None, max_length=64, description="Events by this credential or about it."
    ),
    since: Instant | None = None,
    until: Instant | None = None,
    principal: Principal = require("audit:read"),
) -> dict[str, object]:
    flt = AuditFilter(
        type=type,
        actor_user_id=actor_user_id,
        target_id=target_id,
        since=since,
        until=until,
        credential_id=credential_id,
    )
    page = await audit.list(principal, flt, paging)
    return page_of(page, [AuditEventOut.of(e) for e in page.items])
