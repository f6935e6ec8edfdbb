"""``apiward usage``: verifications over time, by outcome, as a table and sparklines."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from apiward.adapters.cli.shared import EnvOption, JsonOption, OrgOption, as_operator, out, run
from apiward.adapters.cli.tables import GAP, Column, show

if TYPE_CHECKING:
    from apiward.adapters.runtime import Runtime
    from apiward.core.models import Principal

SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[int]) -> str:
    """Counts as a line of block characters, the largest the tallest."""
    top = max(values, default=0)
    if top == 0:
        return SPARKS[0] * len(values)
    return "".join(SPARKS[min(len(SPARKS) - 1, v * (len(SPARKS) - 1) // top)] for v in values)


def usage(
    key: Annotated[str | None, typer.Option("--key", help="Only this key (key_...).")] = None,
    client: Annotated[str | None, typer.Option("--client", help="Only this client.")] = None,
    since: Annotated[str, typer.Option("--since", help="1h, 24h, 7d, 30d or an ISO time.")] = "24h",
    granularity: Annotated[
        str | None, typer.Option("--granularity", help="minute, hour or day.")
    ] = None,
    environment: EnvOption = "live",
    unattributed: Annotated[
        bool,
        typer.Option(
            "--unattributed", help="Refusals of credentials no organisation owns (unknown keys)."
        ),
    ] = False,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Verifications over time, by outcome: a table and a sparkline."""
    from apiward.core import analytics

    async def job(runtime: Runtime, principal: Principal | None) -> dict[str, Any]:
        await runtime.flush_analytics()  # what this process counted (none, usually)
        q = analytics.query(
            since=since,
            until=None,
            granularity=granularity,
            group_by="outcome",
            now=runtime.clock.now(),
            key_id=key,
            client_id=client,
        )
        if principal is None:
            rows = await runtime.analytics.unattributed(q)
        else:
            rows = await runtime.analytics.verifications(principal, q)
        slots = list(q.buckets())
        per: dict[str, dict[int, int]] = {}
        for row in rows:
            per.setdefault(row.outcome, {})[row.start] = row.count
        return {
            "granularity": q.granularity,
            "since": q.since.isoformat(),
            "slots": slots,
            "outcomes": {o: [c.get(s, 0) for s in slots] for o, c in sorted(per.items())},
        }

    data = (
        run(lambda runtime: job(runtime, None))
        if unattributed
        else as_operator(org, environment, job)
    )
    if as_json:
        print(json.dumps(data))
        return
    totals: dict[str, list[int]] = dict(data["outcomes"])
    outcomes = list(data["outcomes"].values())
    totals["all"] = [sum(c[i] for c in outcomes) for i in range(len(data["slots"]))]
    label = max([7, *(len(name) for name in totals)])
    figures = max([5, *(len(f"{sum(c):,}") for c in totals.values())])
    room = max(8, out.width - label - figures - 2 * GAP)  # the newest slots that fit
    shown = totals["all"][-room:]
    out.print(
        f"Verifications since {data['since'][:16].replace('T', ' ')}, per {data['granularity']}"
        + ("" if len(shown) == len(totals["all"]) else f" (the last {len(shown)} shown)"),
        markup=False,
    )
    rows = [[name, f"{sum(c):,}", sparkline(c[-room:])] for name, c in totals.items()]
    show(
        out,
        (
            Column("outcome", whole=True),
            Column("total", whole=True, right=True),
            Column("over time", whole=True),
        ),
        rows,
    )
