"""``apiward keys usage`` and ``apiward clients usage``: which scopes a credential's
allowed requests used, and narrowing it to them (``apiward.services.scope_usage``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from apiward.adapters.cli.shared import as_operator, out, run
from apiward.adapters.cli.tables import Column, minute, show

if TYPE_CHECKING:
    from apiward.adapters.runtime import Runtime
    from apiward.core.models import Principal

SinceOption = Annotated[str, typer.Option("--since", help="7d, 30d, 90d or an ISO time or date.")]
NarrowOption = Annotated[
    bool, typer.Option("--narrow", help="Narrow its scopes to the ones its requests used.")
]
COLUMNS = (
    Column("scope", whole=True),
    Column("requests", right=True, keep=3),
    Column("last used", keep=2, least=10),
    Column("granted by", keep=1),
)


def scope_usage(
    kind: Literal["key", "client"],
    credential_id: str,
    since: str,
    *,
    narrow: bool,
    org: str | None,
    as_json: bool,
) -> None:
    """Show the report of one key or client, as the owner of its organisation, in its
    environment; with ``narrow``, update its scopes to the used ones through the service
    (the same authority check as ``PATCH``)."""
    from apiward.adapters.http.schemas.scope_usage import ScopeUsageOut
    from apiward.core.errors import InvalidInput

    async def job(runtime: Runtime, principal: Principal) -> dict[str, Any]:
        await runtime.flush_scope_usage()  # what this process counted (none, usually)
        usage = runtime.scope_usage
        if kind == "key":
            report = await usage.of_key(principal, credential_id, since)
        else:
            report = await usage.of_client(principal, credential_id, since)
        data = ScopeUsageOut.of(credential_id, report).model_dump(mode="json")
        if narrow:
            if not report.narrowed:
                raise InvalidInput(
                    f"No allowed request of {credential_id} needed a scope since {since}: "
                    "nothing to narrow it to (disable or revoke it instead)."
                )
            narrowed = list(report.narrowed)
            if kind == "key":
                key = await runtime.keys.update(principal, credential_id, scopes=narrowed)
                data["scopes"] = list(key.scopes)
            else:
                client = await runtime.clients.update(principal, credential_id, scopes=narrowed)
                data["scopes"] = list(client.scopes)
            data["unused"] = []
        return data

    async def environment(runtime: Runtime) -> str:
        principal = await runtime.operators.principal(org)
        if kind == "key":
            return (await runtime.keys.get(principal, credential_id)).environment
        return (await runtime.clients.get(principal, credential_id)).environment

    data = as_operator(org, run(environment), job)
    if as_json:
        print(json.dumps(data))
        return
    rows = [
        [u["scope"], str(u["requests"]), u["last_used_on"], u["granted_by"] or "(not any more)"]
        for u in data["used"]
    ]
    show(out, COLUMNS, rows, footer=f"since {minute(data['since'])} UTC")
    if narrow:
        out.print(f"narrowed to: {' '.join(data['scopes'])}")
    elif data["unused"]:
        out.print(f"unused: {' '.join(data['unused'])}")
        if data["narrowed"]:
            out.print(f"narrow to what was used ({' '.join(data['narrowed'])}):")
            print(f"  apiward {kind}s usage {credential_id} --since {since} --narrow")
    elif data["used"]:
        out.print(f"every scope of the {kind} was used")
    else:
        out.print(f"no allowed request of this {kind} needed a scope")
