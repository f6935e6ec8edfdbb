"""``apiward org``: the organisation and its rate-limit tier."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from apiward.adapters.cli.shared import JsonOption, OrgOption, as_operator, out, run
from apiward.adapters.cli.tables import Column, show

if TYPE_CHECKING:
    from apiward.adapters.runtime import Runtime
    from apiward.core.models import Organisation, Principal

app = typer.Typer(help="The organisation and its rate-limit tier.", no_args_is_help=True)


def _org_dict(runtime: Runtime, org: Organisation) -> dict[str, Any]:
    plan = runtime.limits.plan_for(org.rate_tier)
    return {
        "id": org.id,
        "name": org.name,
        "rate_tier": org.rate_tier,
        "rate_limits": [
            {
                "name": p.name,
                "limit": p.limit,
                "period_seconds": p.period,
                "key": p.key,
                "mode": p.mode,
            }
            for p in plan.policies
        ],
    }


def _show_org(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(data))
        return
    out.print(f"[bold]{data['name']}[/bold] ({data['id']}), tier: {data['rate_tier'] or 'default'}")
    rows = [
        [p["name"], str(p["limit"]), f"{p['period_seconds']:g}", p["key"]]
        for p in data["rate_limits"]
    ]
    show(
        out,
        (
            Column("limit", keep=9, least=12),
            Column("count", keep=8, right=True),
            Column("per seconds", keep=7, right=True),
            Column("keyed by", keep=6),
        ),
        rows,
    )


@app.command("show")
def org_show(org: OrgOption = None, as_json: JsonOption = False) -> None:
    """The organisation and the rate limits of its plan."""

    async def job(runtime: Runtime) -> dict[str, Any]:
        return _org_dict(runtime, await runtime.operators.resolve_org(org))

    _show_org(run(job), as_json)


@app.command("set-tier")
def org_set_tier(
    tier: Annotated[str, typer.Argument(help="A tier of APIWARD_RATE_LIMIT_TIERS, or 'default'.")],
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Move the organisation to another rate-limit tier; running servers follow at once."""

    async def job(runtime: Runtime, principal: Principal) -> dict[str, Any]:
        default = tier == "default"
        updated = await runtime.tenancy.update_org(
            principal, name=None, rate_tier=None if default else tier, clear_tier=default
        )
        return _org_dict(runtime, updated)

    _show_org(as_operator(org, "live", job), as_json)
