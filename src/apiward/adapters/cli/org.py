"""``apiward org``: the organisation and its rate-limit tier."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from apiward.adapters.cli.shared import JsonOption, OrgOption, as_operator, fail, out, run
from apiward.adapters.cli.tables import Column, show

if TYPE_CHECKING:
    from apiward.adapters.runtime import Runtime
    from apiward.core.hygiene import HygienePolicy
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


def _policy_dict(policy: HygienePolicy | None) -> dict[str, Any] | None:
    if policy is None:
        return None
    return {
        "unused_days": policy.unused_days,
        "expiry_reminder_days": list(policy.expiry_days),
        "credit_thresholds": list(policy.credit_percents),
        "shared_networks": policy.shared_networks,
        "shared_countries": policy.shared_countries,
        "shared_disable": policy.shared_disable,
    }


def _show_hygiene(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(data))
        return
    policies = (data["in_force"], data["own"], data["operator"])

    def row(title: str, show_one: Callable[[dict[str, Any]], str]) -> list[str]:
        return [title, *(show_one(p) if p else "-" for p in policies)]

    out.print(f"[bold]{data['name']}[/bold] ({data['id']}): key hygiene")
    show(
        out,
        (
            Column("", whole=True),
            Column("in force", whole=True),
            Column("organisation's own", keep=2),
            Column("operator's", keep=1),
        ),
        [
            row(
                "unused keys disabled",
                lambda p: f"{d} days" if (d := p["unused_days"]) else "never",
            ),
            row("expiry reminders, days", lambda p: _listed(p["expiry_reminder_days"])),
            row("credits spent, %", lambda p: _listed(p["credit_thresholds"])),
            row("shared key, networks a day", lambda p: _at(p["shared_networks"])),
            row("shared key, countries a day", lambda p: _at(p["shared_countries"])),
            row("shared key disabled", lambda p: "yes" if p["shared_disable"] else "no"),
        ],
        footer=None if data["own"] else "the organisation has no policy of its own",
    )


def _after(days: int | None) -> str:
    return f"{days} days" if days else "never"


def _at(threshold: int | None) -> str:
    return f"key.anomaly at {threshold}" if threshold else "never"


def _listed(values: list[int]) -> str:
    return ", ".join(map(str, values)) or "none"


@app.command("hygiene")
def org_hygiene(
    unused_days: Annotated[
        int | None,
        typer.Option("--unused-days", help="Disable keys unused for this many days."),
    ] = None,
    expiry_reminder: Annotated[
        list[int] | None,
        typer.Option("--expiry-reminder", help="Days before expiry to remind (repeatable)."),
    ] = None,
    credit_threshold: Annotated[
        list[int] | None,
        typer.Option("--credit-threshold", help="Percent of credits spent to announce."),
    ] = None,
    shared_networks: Annotated[
        int | None,
        typer.Option("--shared-networks", help="Networks a day that make a key shared."),
    ] = None,
    shared_countries: Annotated[
        int | None,
        typer.Option("--shared-countries", help="Countries a day that make a key shared."),
    ] = None,
    shared_disable: Annotated[
        bool, typer.Option("--shared-disable", help="Disable a key found shared.")
    ] = False,
    clear: Annotated[
        bool, typer.Option("--clear", help="Drop the organisation's own policy.")
    ] = False,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the key hygiene policy in force, or set the organisation's own, which may
    only tighten the operator's (APIWARD_KEY_*): unused keys disabled sooner, reminders
    and thresholds added, shared keys announced (key.anomaly) sooner or disabled.
    Setting replaces the organisation's own policy whole."""
    from pydantic import ValidationError

    from apiward.adapters.http.schemas.tenancy import KeyHygiene

    setting = (
        unused_days is not None
        or bool(expiry_reminder)
        or bool(credit_threshold)
        or shared_networks is not None
        or shared_countries is not None
        or shared_disable
    )
    if setting and clear:
        fail("--clear drops the organisation's own policy; give it alone.")
    own = None
    if setting:
        try:
            own = KeyHygiene(
                unused_days=unused_days,
                expiry_reminder_days=expiry_reminder or [],
                credit_thresholds=credit_threshold or [],
                shared_networks=shared_networks,
                shared_countries=shared_countries,
                shared_disable=shared_disable,
            ).policy()
        except ValidationError as exc:
            problem = exc.errors()[0]
            field = {
                "unused_days": "--unused-days",
                "expiry_reminder_days": "--expiry-reminder",
                "credit_thresholds": "--credit-threshold",
                "shared_networks": "--shared-networks",
                "shared_countries": "--shared-countries",
            }.get(str(problem["loc"][0]), str(problem["loc"][0]))
            fail(f"{field}: {problem['msg']}")

    async def job(runtime: Runtime, principal: Principal) -> dict[str, Any]:
        tenancy = runtime.tenancy
        if setting or clear:
            found = await tenancy.update_org(
                principal, name=None, rate_tier=None, key_hygiene=own, clear_hygiene=clear
            )
        else:
            found = await runtime.operators.resolve_org(org)
        return {
            "id": found.id,
            "name": found.name,
            "own": _policy_dict(found.key_hygiene),
            "in_force": _policy_dict(tenancy.hygiene_in_force(found)),
            "operator": _policy_dict(tenancy.hygiene),
        }

    _show_hygiene(as_operator(org, "live", job), as_json)
