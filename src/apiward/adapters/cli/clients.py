"""``apiward clients``: create, list and revoke OAuth clients."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from apiward.adapters.cli.scope_usage import NarrowOption, SinceOption, scope_usage
from apiward.adapters.cli.shared import (
    EnvOption,
    ExternalIdOption,
    JsonOption,
    MetaOption,
    OrgOption,
    as_operator,
    meta_option,
    out,
)
from apiward.adapters.cli.tables import Column, show

if TYPE_CHECKING:
    from apiward.adapters.runtime import Runtime
    from apiward.core.models import OAuthClient, Principal

app = typer.Typer(help="Create and manage OAuth clients.", no_args_is_help=True)


def _client_dict(client: OAuthClient, now: datetime) -> dict[str, Any]:
    from apiward.adapters.http.schemas.clients import ClientOut

    return ClientOut.of(client, now).model_dump(mode="json")


CLIENT_COLUMNS = (
    Column("client_id", whole=True),
    Column("name", keep=5, least=8),
    Column("env", keep=4),
    Column("scopes", keep=3, least=12),
    Column("state", keep=6),
    Column("last used", keep=1, least=16),
)


def _show_clients(items: list[dict[str, Any]], as_json: bool, secret: str | None = None) -> None:
    if as_json:
        data: Any = items[0] if len(items) == 1 and secret is not None else items
        if secret is not None:
            data = {**items[0], "client_secret": secret}
        print(json.dumps(data))
        return
    rows = [
        [
            c["client_id"],
            c["name"],
            c["environment"],
            " ".join(c["scopes"]),
            c["state"],
            (c["last_used_at"] or "never")[:16].replace("T", " "),
        ]
        for c in items
    ]
    show(out, CLIENT_COLUMNS, rows)
    if secret:
        out.print("\nThe client secret (shown once, store it now):")
        print(secret)


@app.command("create")
def clients_create(
    name: Annotated[str, typer.Option("--name", help="What the client is for.")],
    scopes: Annotated[list[str], typer.Option("--scope", help="A scope; repeat for more.")],
    environment: EnvOption = "live",
    user: Annotated[str | None, typer.Option("--user", help="Act as this user id.")] = None,
    external_id: ExternalIdOption = None,
    meta: MetaOption = None,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a client and print its secret once."""
    data = meta_option(meta)

    async def job(runtime: Runtime, principal: Principal) -> tuple[dict[str, Any], str]:
        created = await runtime.clients.create(
            principal,
            name=name,
            scopes=scopes,
            environment=environment,
            user_id=user,
            external_id=external_id,
            meta=data,
        )
        return _client_dict(created.client, runtime.clock.now()), created.secret

    shown, secret = as_operator(org, environment, job)
    _show_clients([shown], as_json, secret)


@app.command("list")
def clients_list(
    environment: EnvOption = "live",
    external_id: Annotated[
        str | None, typer.Option("--external-id", help="Only the clients of this external id.")
    ] = None,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """List clients (never their secrets)."""
    from apiward.core.models import PageRequest

    async def job(runtime: Runtime, principal: Principal) -> list[dict[str, Any]]:
        page = await runtime.clients.list_clients(
            principal, PageRequest(1, 100), external_id=external_id
        )
        return [_client_dict(c, runtime.clock.now()) for c in page.items]

    _show_clients(as_operator(org, environment, job), as_json)


@app.command("usage")
def clients_usage(
    client_id: Annotated[str, typer.Argument(help="The client_id.")],
    since: SinceOption = "30d",
    narrow: NarrowOption = False,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Which of the client's scopes its allowed requests used (counted per day), which
    it never needed, and with --narrow, narrow it to what was used (an ordinary update)."""
    scope_usage("client", client_id, since, narrow=narrow, org=org, as_json=as_json)


@app.command("revoke")
def clients_revoke(
    client_id: Annotated[str, typer.Argument(help="The client_id.")],
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Refuse the client, and every access token it holds, at once."""

    async def job(runtime: Runtime, principal: Principal) -> list[dict[str, Any]]:
        env = (await runtime.clients.get(principal, client_id)).environment
        principal = await runtime.operators.principal(org, env)
        client = await runtime.clients.revoke(principal, client_id)
        return [_client_dict(client, runtime.clock.now())]

    _show_clients(as_operator(org, "live", job), as_json)
