"""``apiward projects``: the projects of portal accounts, each one an organisation."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from apiward.adapters.cli.shared import JsonOption, out, run
from apiward.adapters.cli.tables import Column, show

if TYPE_CHECKING:
    from apiward.adapters.runtime import Runtime
    from apiward.core.models import Organisation

app = typer.Typer(
    help="Projects of portal accounts (each one an organisation).", no_args_is_help=True
)


def _show_projects(items: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(items))
        return
    rows = [
        [p["id"], p["name"], p.get("role") or "", p["created_at"][:16].replace("T", " ")]
        for p in items
    ]
    show(
        out,
        (
            Column("id", whole=True),
            Column("name", keep=9, least=12),
            Column("role", keep=8),
            Column("created", keep=1, least=16),
        ),
        rows,
    )


@app.command("create")
def projects_create(
    name: Annotated[str, typer.Argument(help="The project's name.")],
    owner: Annotated[str, typer.Option("--owner", help="Email of the owning account.")],
    as_json: JsonOption = False,
) -> None:
    """Create a project owned by a portal account (its live and test environments too)."""
    from apiward.core.models import RequestContext

    async def job(runtime: Runtime) -> list[dict[str, Any]]:
        account = await runtime.portal.account_of_email(owner)
        context = RequestContext(user_agent="apiward-cli")
        project = await runtime.portal.create_project(account, name, context)
        return [_project_dict(project.org, project.role)]

    _show_projects(run(job), as_json)


def _project_dict(org: Organisation, role: str | None) -> dict[str, Any]:
    return {
        "id": org.id,
        "name": org.name,
        "role": role,
        "created_at": org.created_at.isoformat(),
    }


@app.command("list")
def projects_list(
    owner: Annotated[
        str | None, typer.Option("--account", help="Only this account's projects, by email.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Every organisation of this instance, or the projects of one account."""

    async def job(runtime: Runtime) -> list[dict[str, Any]]:
        if owner is None:
            return [_project_dict(org, None) for org in await runtime.tenancy.list_orgs()]
        projects = await runtime.portal.projects(await runtime.portal.account_of_email(owner))
        return [_project_dict(p.org, p.role) for p in projects]

    _show_projects(run(job), as_json)
