"""Settings > Analytics: verifications over time by outcome, the success rate, the top
keys and the routes that fail most, for 24 hours, 7 days or 30 days, for every key or one.

The chart is SVG drawn here, on the server: no script and no inline style, so the
dashboard's Content-Security-Policy holds (colours are SVG presentation attributes).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request
from markupsafe import Markup, escape
from starlette.responses import Response

from apiward.adapters.dashboard.web import DashboardRoute, Me, api_base, render, signed_in
from apiward.adapters.http.deps import AnalyticsDep, ClockDep, KeysDep
from apiward.core import analytics
from apiward.core.analytics import OUTCOMES, WOULD_REFUSE, Bucket
from apiward.core.models import PageRequest
from apiward.services.analytics import Analytics

router = APIRouter(route_class=DashboardRoute)
_ALL = PageRequest(page=1, page_size=100)

PERIODS = {"24h": ("24h", "hour"), "7d": ("7d", "hour"), "30d": ("30d", "day")}
COLOURS = {
    "VALID": "#2f855a",
    "NOT_FOUND": "#c05621",
    "DISABLED": "#975a16",
    "EXPIRED": "#b7791f",
    "REVOKED": "#9b2c2c",
    "FORBIDDEN": "#6b46c1",
    "INSUFFICIENT_PERMISSIONS": "#805ad5",
    "RATE_LIMITED": "#2b6cb0",
    "USAGE_EXCEEDED": "#2c5282",
    "WOULD_REFUSE": "#d69e2e",
}

WIDTH, HEIGHT, LEFT, BOTTOM = 760, 220, 44, 24


@dataclass(frozen=True, slots=True)
class Summary:
    total: int
    valid: int

    @property
    def success_rate(self) -> str:
        return "n/a" if not self.total else f"{100 * self.valid / self.total:.1f}%"


def chart(rows: list[Bucket], slots: list[int], label: str) -> Markup:
    """Stacked bars per slot, one colour per outcome, with the y axis's maximum."""
    per_slot: dict[int, Counter[str]] = {s: Counter() for s in slots}
    for row in rows:
        if row.start in per_slot:
            per_slot[row.start][row.outcome] += row.count
    top = max((sum(c.values()) for c in per_slot.values()), default=0) or 1
    bar = (WIDTH - LEFT) / max(1, len(slots))
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH}" y2="{HEIGHT - BOTTOM}" '
        'stroke="#a0aec0"/>',
        f'<text x="{LEFT - 6}" y="14" text-anchor="end" font-size="11" fill="#4a5568">'
        f"{top:,}</text>",
        f'<text x="{LEFT - 6}" y="{HEIGHT - BOTTOM}" text-anchor="end" font-size="11" '
        'fill="#4a5568">0</text>',
    ]
    usable = HEIGHT - BOTTOM - 8
    for i, slot in enumerate(slots):
        y: float = HEIGHT - BOTTOM
        x = LEFT + i * bar
        for outcome in OUTCOMES:  # one outcome alone is charted as itself
            n = per_slot[slot][outcome]
            if not n:
                continue
            h = usable * n / top
            y -= h
            when = datetime.fromtimestamp(slot, UTC).strftime("%Y-%m-%d %H:%M")
            parts.append(
                f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{max(bar - 2, 1):.1f}" '
                f'height="{h:.1f}" fill="{COLOURS[outcome]}"><title>{when} UTC: '
                f"{n:,} {outcome}</title></rect>"
            )
    parts.append(
        f'<line x1="{LEFT}" y1="{HEIGHT - BOTTOM - usable / 2:.1f}" x2="{WIDTH}" '
        f'y2="{HEIGHT - BOTTOM - usable / 2:.1f}" stroke="#e2e8f0"/>'
        f'<text x="{LEFT - 6}" y="{HEIGHT - BOTTOM - usable / 2 + 4:.1f}" text-anchor="end" '
        f'font-size="11" fill="#4a5568">{top / 2:,.4g}</text>'
    )
    for i in time_labels(len(slots)):
        when = datetime.fromtimestamp(slots[i], UTC).strftime("%d %b %H:%M")
        if i == 0:
            anchor, x = "start", float(LEFT)
        elif i == len(slots) - 1:
            anchor, x = "end", float(WIDTH)
        else:
            anchor, x = "middle", LEFT + (i + 0.5) * bar
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - 6}" text-anchor="{anchor}" font-size="11" '
            f'fill="#4a5568">{when}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every value above is a number or escaped


def period_slots(since: str, granularity: str, now: datetime) -> list[int]:
    """The start (epoch seconds) of each bar of a chart of the period ``since`` to now."""
    step = analytics.GRANULARITIES[granularity]
    start = int(analytics.moment(since, now, None).timestamp()) // step * step
    return list(range(start, int(now.timestamp()) + 1, step))


def summarise(series: list[Bucket]) -> Summary:
    return Summary(
        sum(r.count for r in series), sum(r.count for r in series if r.outcome == "VALID")
    )


@dataclass(frozen=True, slots=True)
class Traffic:
    """One credential's (or one environment's) last 24 hours, drawn."""

    label: str
    chart: Markup
    summary: Summary
    by_outcome: Counter[str]
    would_refuse: int
    """Requests a rule in report mode would have refused (counted beside the decisions)."""


async def last_day(
    verifications: Analytics,
    me: Me,
    environment: str,
    now: datetime,
    what: str,
    **only: str,
) -> Traffic | None:
    """The last 24 hours of verifications by outcome, ``only`` those of a key or client
    (``key_id=``, ``client_id=``); None for a role that may not read analytics."""
    if not me.can("analytics:read"):
        return None
    q = analytics.query(
        since="24h", until=None, granularity="hour", now=now, group_by="outcome", **only
    )
    counted = await verifications.verifications(me.principal, q, environment=environment)
    series = [r for r in counted if r.outcome != WOULD_REFUSE]
    reported = sum(r.count for r in counted if r.outcome == WOULD_REFUSE)
    label = f"Verifications{what} per hour, last 24h, by outcome"
    slots = period_slots("24h", "hour", now)
    drawn = chart(series, slots, label)
    return Traffic(label, drawn, summarise(series), outcomes(series), reported)


def time_labels(slots: int, most: int = 5) -> list[int]:
    """The slots that get a time under the chart: the first, the last and evenly spaced
    ones between, at most ``most`` (five fit the chart's width without overlapping)."""
    if slots <= 0:
        return []
    if slots <= most:
        return list(range(slots))
    return sorted({round(i * (slots - 1) / (most - 1)) for i in range(most)})


@router.get("/analytics")
async def page(
    request: Request,
    clock: ClockDep,
    verifications: AnalyticsDep,
    keys: KeysDep,
    me: Me = Depends(signed_in),
) -> Response:
    me.require("analytics:read")
    period = request.query_params.get("period", "24h")
    since, granularity = PERIODS.get(period, PERIODS["24h"])
    key_id = request.query_params.get("key") or None
    now = clock.now()
    principal = me.principal
    env = me.env

    async def counts(**kw: str | int | None) -> list[Bucket]:
        q = analytics.query(since=since, until=None, granularity=granularity, now=now, **kw)  # type: ignore[arg-type]
        return await verifications.verifications(principal, q, environment=env)

    counted = await counts(group_by="outcome", key_id=key_id)
    series = [r for r in counted if r.outcome != WOULD_REFUSE]
    reported = [r for r in counted if r.outcome == WOULD_REFUSE]
    top_keys = await counts(group_by="key", limit=10, key_id=key_id)
    failures = await counts(group_by="route,outcome", key_id=key_id)
    failing: Counter[str] = Counter()
    for row in failures:
        if row.outcome not in ("VALID", WOULD_REFUSE):
            failing[row.route or "(none)"] += row.count
    slots = period_slots(since, granularity, now)
    summary = summarise(series)
    names = {}
    listed = await keys.list_keys(principal, _ALL, environment=env)
    for k in listed.items:
        names[k.id] = k.name
    label = f"Verifications per {granularity}, last {since}, by outcome"
    would = f"Would have been refused by rules in report mode, per {granularity}, last {since}"
    return render(
        request,
        "analytics.html",
        section="analytics",
        chart=chart(series, slots, label),
        label=label,
        would_chart=chart(reported, slots, would) if reported else None,
        would_label=would,
        would_total=sum(r.count for r in reported),
        summary=summary,
        by_outcome=outcomes(series),
        top_keys=[r for r in top_keys if r.key_id],
        failing=failing.most_common(10),
        names=names,
        periods=list(PERIODS),
        period=period,
        key_id=key_id,
        colours=COLOURS,
        base=api_base(request),
    )


def outcomes(rows: list[Bucket]) -> Counter[str]:
    """The count of each outcome in ``rows``."""
    out: Counter[str] = Counter()
    for row in rows:
        out[row.outcome] += row.count
    return out
