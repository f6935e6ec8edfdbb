"""``apiward invitations``: invite people to an organisation by email."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from apiward.adapters.cli.shared import JsonOption, OrgOption, as_operator, out
from apiward.adapters.cli.tables import Column, show

if TYPE_CHECKING:
    from apiward.adapters.runtime import Runtime
    from apiward.core.models import Principal

app = typer.Typer(help="Invite people to an organisation by email.", no_args_is_help=True)


def _show_invitations(items: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(items))
        return
    rows = [[i["id"], i["email"], i["role"], i["expires_at"][:16].replace("T", " ")] for i in items]
    show(
        out,
        (
            Column("id", whole=True),
            Column("email", keep=9, least=16),
            Column("role", keep=8),
            Column("expires", keep=1, least=16),
        ),
        rows,
    )


@app.command("create")
def invitations_create(
    email: Annotated[str, typer.Option("--email", help="Who to invite.")],
    role: Annotated[str, typer.Option("--role", help="The role they get.")] = "developer",
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Email an invitation (or, with no SMTP server configured, log it)."""
    from apiward.adapters.http.schemas.tenancy import InvitationOut

    async def job(runtime: Runtime, principal: Principal) -> list[dict[str, Any]]:
        link = await runtime.portal.invite(principal, email, role)
        return [InvitationOut.of(link).model_dump(mode="json")]

    _show_invitations(as_operator(org, "live", job), as_json)


@app.command("list")
def invitations_list(org: OrgOption = None, as_json: JsonOption = False) -> None:
    """Invitations waiting for an answer."""
    from apiward.adapters.http.schemas.tenancy import InvitationOut

    async def job(runtime: Runtime, principal: Principal) -> list[dict[str, Any]]:
        links = await runtime.portal.invitations(principal)
        return [InvitationOut.of(link).model_dump(mode="json") for link in links]

    _show_invitations(as_operator(org, "live", job), as_json)


@app.command("revoke")
def invitations_revoke(
    invitation_id: Annotated[str, typer.Argument(help="The invitation's id (lnk_...).")],
    org: OrgOption = None,
) -> None:
    """Revoke an invitation: its link stops working."""

    async def job(runtime: Runtime, principal: Principal) -> None:
        await runtime.portal.revoke_invitation(principal, invitation_id)

    as_operator(org, "live", job)
    out.print(f"Revoked {invitation_id}.")
