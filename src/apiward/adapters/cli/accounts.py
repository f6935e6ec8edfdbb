"""``apiward accounts``: list, disable and enable portal accounts."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from apiward.adapters.cli.shared import JsonOption, out, run
from apiward.adapters.cli.tables import Column, show

if TYPE_CHECKING:
    from apiward.adapters.runtime import Runtime
    from apiward.core.models import Account

app = typer.Typer(help="Portal accounts: list, disable, enable.", no_args_is_help=True)


def _account_dict(account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "email": account.email,
        "name": account.name,
        "created_at": account.created_at.isoformat(),
        "confirmed": account.confirmed,
        "disabled": account.disabled_at is not None,
    }


def _show_accounts(items: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(items))
        return
    rows = [
        [
            a["id"],
            a["email"],
            a["name"],
            "disabled" if a["disabled"] else "active" if a["confirmed"] else "unconfirmed",
            a["created_at"][:16].replace("T", " "),
        ]
        for a in items
    ]
    show(
        out,
        (
            Column("id", whole=True),
            Column("email", keep=9, least=16),
            Column("name", keep=2, least=8),
            Column("state", keep=8),
            Column("created", keep=1, least=16),
        ),
        rows,
    )


@app.command("list")
def accounts_list(
    page: Annotated[int, typer.Option(min=1)] = 1,
    page_size: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    as_json: JsonOption = False,
) -> None:
    """Accounts, oldest first."""
    from apiward.core.models import PageRequest

    async def job(runtime: Runtime) -> list[dict[str, Any]]:
        found = await runtime.portal.list_accounts(PageRequest(page, page_size))
        return [_account_dict(a) for a in found.items]

    _show_accounts(run(job), as_json)


def _set_disabled(email: str, disabled: bool, as_json: bool) -> None:
    from apiward.core.models import RequestContext

    async def job(runtime: Runtime) -> list[dict[str, Any]]:
        context = RequestContext(user_agent="apiward-cli")
        return [_account_dict(await runtime.portal.set_disabled(email, disabled, context))]

    _show_accounts(run(job), as_json)


@app.command("disable")
def accounts_disable(
    email: Annotated[str, typer.Argument(help="The account's email.")], as_json: JsonOption = False
) -> None:
    """Refuse the account's sign-ins; its sessions and refresh tokens end at once."""
    _set_disabled(email, True, as_json)


@app.command("enable")
def accounts_enable(
    email: Annotated[str, typer.Argument(help="The account's email.")], as_json: JsonOption = False
) -> None:
    """Let a disabled account sign in again."""
    _set_disabled(email, False, as_json)
