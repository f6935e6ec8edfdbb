"""Settings > Members & roles: spaces, users and their role in each space, custom roles."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType

from fastapi import APIRouter, Depends, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from apiward.adapters.dashboard.keys import ScopeChoices, read_scopes, scope_choices
from apiward.adapters.dashboard.web import (
    DashboardRoute,
    FieldErrors,
    Flash,
    Me,
    notice,
    paging,
    render,
    see_other,
    signed_in,
    text,
    url,
)
from apiward.adapters.http.deps import PortalDep, TenancyDep, runtime_of
from apiward.adapters.http.errors import status_of
from apiward.core.errors import ApiwardError, InvalidInput
from apiward.core.models import Membership, PageRequest
from apiward.core.passwords import weakness
from apiward.services.portal import Portal
from apiward.services.tenancy import Tenancy, check_email, check_name, check_role_name

router = APIRouter(route_class=DashboardRoute)

NOTICES = {
    "user_created": "The user is created.",
    "user_disabled": "The user is disabled: their keys and sessions stop working.",
    "user_enabled": "The user is enabled again.",
    "granted": "The role is granted.",
    "removed": "The role is removed.",
    "space_created": "The space is created.",
    "role_created": "The role is created.",
    "role_deleted": "The role is deleted.",
    "invited": "The invitation is sent. It works once, until it expires.",
    "invitation_revoked": "The invitation is revoked: its link no longer works.",
    "mfa_reset": "The member's two-factor sign-in is off: their next sign-in asks for the "
    "password only, and they can set up a new authenticator.",
}
_ALL = PageRequest(page=1, page_size=100)


async def _page(
    request: Request,
    me: Me,
    tenancy: Tenancy,
    portal: Portal,
    *,
    flash: Flash | None = None,
    status: int = 200,
    values: FormData | None = None,
    errors: FieldErrors | None = None,
) -> Response:
    me.require("users:read")
    principal = me.principal
    users = await tenancy.list_users(principal, paging(request))
    memberships: dict[str, list[Membership]] = {}
    for user in users.items:
        memberships[user.id] = await tenancy.memberships(principal, user.id)
    spaces = (
        (await tenancy.list_spaces(principal, _ALL, include_archived=True)).items
        if me.can("spaces:read")
        else []
    )
    roles = await tenancy.list_roles(principal) if me.can("roles:read") else []
    invitations = await portal.invitations(principal)
    return render(
        request,
        "members.html",
        status=status,
        flash=flash or notice(request, NOTICES),
        section="members",
        users=users,
        memberships=memberships,
        spaces=spaces,
        space_names={s.id: s.name for s in spaces},
        roles=roles,
        invitations=invitations,
        scopes=await scope_choices(tenancy, me, request)
        if me.can("roles:manage")
        else ScopeChoices([], []),
        values=values or FormData(),
        empty=FormData(),
        errors=errors or FieldErrors(),
    )


@router.get("/members")
async def members(
    request: Request, tenancy: TenancyDep, portal: PortalDep, me: Me = Depends(signed_in)
) -> Response:
    return await _page(request, me, tenancy, portal)


async def _act(
    request: Request,
    me: Me,
    tenancy: Tenancy,
    portal: Portal,
    scope: str,
    change: Callable[[FormData], Awaitable[object]],
    done: str,
    checks: Mapping[str, Callable[[FormData], object]] = MappingProxyType({}),
) -> Response:
    """Check each field of ``checks`` (its id: its validator), each error next to its
    field, then make the change; a refusal of the whole change is shown above the page."""
    me.require(scope)
    form = await request.form()
    errors = FieldErrors()
    for field_id, check in checks.items():
        with errors.on(field_id):
            check(form)
    if not errors:
        try:
            await change(form)
        except ApiwardError as exc:
            return await _page(
                request,
                me,
                tenancy,
                portal,
                flash=Flash.error(exc),
                status=status_of(exc),
                values=form,
            )
    if errors:
        return await _page(
            request,
            me,
            tenancy,
            portal,
            flash=errors.flash(),
            status=400,
            values=form,
            errors=errors,
        )
    anchor = {"space": "spaces", "role": "roles", "invited": "invitations"}.get(
        done.split("_")[0], "users"
    )
    return see_other(url("/members", done=done) + "#" + anchor)


@router.post("/members/users")
async def create_user(
    request: Request, tenancy: TenancyDep, portal: PortalDep, me: Me = Depends(signed_in)
) -> Response:
    async def change(form: FormData) -> object:
        return await tenancy.create_user(
            me.principal,
            text(form, "email", 254),
            name=text(form, "name") or None,
            password=text(form, "password", 1024) or None,
            role=text(form, "role", 40) or None,
            space_id=text(form, "space_id", 64) or None,
        )

    checks = {
        "new-email": lambda form: check_email(text(form, "email", 254)),
        "new-name": lambda form: text(form, "name") and check_name(text(form, "name"), "user"),
        "new-password": lambda form: _strong(text(form, "password", 1024), text(form, "email")),
    }
    return await _act(request, me, tenancy, portal, "users:manage", change, "user_created", checks)


def _strong(password: str, email: str) -> None:
    """A new user's password, when one is given, passes the strength check."""
    problem = weakness(password, email=email) if password else None
    if problem:
        raise InvalidInput(problem)


@router.post("/members/users/{user_id}/roles")
async def grant(
    user_id: str,
    request: Request,
    tenancy: TenancyDep,
    portal: PortalDep,
    me: Me = Depends(signed_in),
) -> Response:
    async def change(form: FormData) -> object:
        return await tenancy.grant(
            me.principal, user_id, text(form, "role", 40), text(form, "space_id", 64) or None
        )

    return await _act(request, me, tenancy, portal, "users:manage", change, "granted")


@router.post("/members/users/{user_id}/roles/remove")
async def remove(
    user_id: str,
    request: Request,
    tenancy: TenancyDep,
    portal: PortalDep,
    me: Me = Depends(signed_in),
) -> Response:
    async def change(form: FormData) -> object:
        space_id = text(form, "space_id", 64) or None
        await tenancy.revoke_membership(me.principal, user_id, space_id)
        return None

    return await _act(request, me, tenancy, portal, "users:manage", change, "removed")


@router.post("/members/users/{user_id}/disable")
async def disable_user(
    user_id: str,
    request: Request,
    tenancy: TenancyDep,
    portal: PortalDep,
    me: Me = Depends(signed_in),
) -> Response:
    async def change(form: FormData) -> object:
        return await tenancy.update_user(me.principal, user_id, name=None, disabled=True)

    return await _act(request, me, tenancy, portal, "users:manage", change, "user_disabled")


@router.post("/members/users/{user_id}/enable")
async def enable_user(
    user_id: str,
    request: Request,
    tenancy: TenancyDep,
    portal: PortalDep,
    me: Me = Depends(signed_in),
) -> Response:
    async def change(form: FormData) -> object:
        return await tenancy.update_user(me.principal, user_id, name=None, disabled=False)

    return await _act(request, me, tenancy, portal, "users:manage", change, "user_enabled")


@router.post("/members/users/{user_id}/reset-mfa")
async def reset_second_factor(
    user_id: str,
    request: Request,
    tenancy: TenancyDep,
    portal: PortalDep,
    me: Me = Depends(signed_in),
) -> Response:
    async def change(form: FormData) -> object:
        return await runtime_of(request).two_factor.reset_member(me.principal, user_id)

    return await _act(request, me, tenancy, portal, "users:manage", change, "mfa_reset")


@router.post("/members/spaces")
async def create_space(
    request: Request, tenancy: TenancyDep, portal: PortalDep, me: Me = Depends(signed_in)
) -> Response:
    async def change(form: FormData) -> object:
        return await tenancy.create_space(me.principal, text(form, "name"))

    checks = {"space-name": lambda form: check_name(text(form, "name"), "space")}
    return await _act(
        request, me, tenancy, portal, "spaces:manage", change, "space_created", checks
    )


@router.post("/members/roles")
async def create_role(
    request: Request, tenancy: TenancyDep, portal: PortalDep, me: Me = Depends(signed_in)
) -> Response:
    me.require("roles:manage")
    form = await request.form()
    errors = FieldErrors()
    name = text(form, "name", 40)
    with errors.on("role-name"):
        check_role_name(name)
    scopes = read_scopes(form, errors, "A role", runtime_of(request).catalogue)
    if not errors:
        try:
            await tenancy.create_role(me.principal, name, scopes, text(form, "description", 500))
        except ApiwardError as exc:
            errors.add(exc)
    if errors:
        return await _page(
            request,
            me,
            tenancy,
            portal,
            flash=errors.flash(),
            status=400,
            values=form,
            errors=errors,
        )
    return see_other(url("/members", done="role_created") + "#roles")


@router.post("/members/roles/{name}/delete")
async def delete_role(
    name: str, request: Request, tenancy: TenancyDep, portal: PortalDep, me: Me = Depends(signed_in)
) -> Response:
    async def change(form: FormData) -> object:
        await tenancy.delete_role(me.principal, name)
        return None

    return await _act(request, me, tenancy, portal, "roles:manage", change, "role_deleted")


@router.post("/members/invitations")
async def invite(
    request: Request, tenancy: TenancyDep, portal: PortalDep, me: Me = Depends(signed_in)
) -> Response:
    async def change(form: FormData) -> object:
        return await portal.invite(me.principal, text(form, "email", 254), text(form, "role", 40))

    checks = {"invite-email": lambda form: check_email(text(form, "email", 254))}
    return await _act(request, me, tenancy, portal, "users:manage", change, "invited", checks)


@router.post("/members/invitations/{invitation_id}/revoke")
async def revoke_invitation(
    invitation_id: str,
    request: Request,
    tenancy: TenancyDep,
    portal: PortalDep,
    me: Me = Depends(signed_in),
) -> Response:
    async def change(form: FormData) -> object:
        await portal.revoke_invitation(me.principal, invitation_id)
        return None

    return await _act(request, me, tenancy, portal, "users:manage", change, "invitation_revoked")
