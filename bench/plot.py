"""Draw bench/results/bench.png from the JSON the other scripts wrote.

    .venv/bin/python -m bench.plot      # needs matplotlib (pip install matplotlib)

Left: each HTTP row's requests per second as a share of its baseline (the bare ASGI
floor on the same server and worker count; for the nginx rows, the same nginx without
auth_request), with the 60% line of docs/architecture.md. Middle: p50 and p99 latency
(log scale) with the 5 ms line. Right: in-process verifications per second against the
300,000/s line. Missing JSON files leave their panel empty.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from bench.common import RESULTS

COLORS = {
    "floor": "#9e9e9e",
    "check": "#1f77b4",
    "verify": "#2ca02c",
    "nginx": "#9467bd",
    "fastapi": "#ff7f0e",
}


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return dict(json.loads(path.read_text())) if path.exists() else None


def label(row: dict[str, Any]) -> str:
    what = str(row["what"]).replace("what-if: ", "what-if ")
    group = "" if what.startswith("nginx") else f"{row['group']}: "
    return f"{group}{what} [{row['server']} {row['workers']}w]"


def share(row: dict[str, Any]) -> float | None:
    value = row.get("ratio") if row["group"] == "nginx" else row.get("floor_ratio")
    return float(value) if value is not None else None


def http_panels(ax_ratio: Axes, ax_latency: Axes, data: dict[str, Any]) -> None:
    rows = data["rows"]
    targets = data["targets"]
    ys = list(range(len(rows)))[::-1]
    labels = [label(r) for r in rows]
    colors = [COLORS.get(r["group"], "black") for r in rows]
    shares = [share(r) or 0.0 for r in rows]
    cap = 1.45  # bars past it (nginx with upstream keep-alive) are cut, their label is not
    ax_ratio.barh(ys, [min(s, cap) for s in shares], color=colors)
    for y, r, s in zip(ys, rows, shares, strict=True):
        text = f"{s:.0%}  {r['rps']:,.0f}/s" + (" (bar cut)" if s > cap else "")
        ax_ratio.text(min(s, cap) + 0.01, y, text, va="center", fontsize=7)
    check_target = targets["of_floor"]["check"]
    ax_ratio.axvline(check_target, color="red", linestyle="--", linewidth=1)
    ax_ratio.text(
        check_target, len(rows) - 0.4, f" check target {check_target:.0%}", color="red", fontsize=8
    )
    ax_ratio.set_yticks(ys, labels, fontsize=7)
    ax_ratio.set_xlim(0, 1.75)
    ax_ratio.set_xlabel("req/s as a share of the baseline (floor; nginx rows: nginx without auth)")
    ax_ratio.set_title("Throughput against the floor, same run", fontsize=10)

    p50 = [max(float(r.get("p50_ms", 0)), 0.01) for r in rows]
    p99 = [max(float(r.get("p99_ms", 0)), 0.01) for r in rows]
    height = 0.4
    ax_latency.barh([y + height / 2 for y in ys], p50, height, color="#8fbbd9", label="p50")
    ax_latency.barh([y - height / 2 for y in ys], p99, height, color="#1f4e79", label="p99")
    ax_latency.axvline(targets["p99_ms"], color="red", linestyle="--", linewidth=1)
    ax_latency.text(targets["p99_ms"], len(rows) - 0.4, " p99 target 5 ms", color="red", fontsize=8)
    ax_latency.set_xscale("log")
    ax_latency.set_yticks(ys, [""] * len(rows))
    ax_latency.set_xlabel("latency, ms (log), 50 connections")
    ax_latency.set_title("Latency percentiles", fontsize=10)
    ax_latency.legend(loc="lower right", fontsize=8)


def inprocess_panel(ax: Axes, data: dict[str, Any]) -> None:
    rows = data["rows"]
    ys = list(range(len(rows)))[::-1]
    values = [r["per_second"] / 1000 for r in rows]
    ax.barh(ys, values, color="#17becf")
    for y, v in zip(ys, values, strict=True):
        ax.text(v + 5, y, f"{v:,.0f}k/s", va="center", fontsize=8)
    target = data["target_per_second"] / 1000
    ax.axvline(target, color="red", linestyle="--", linewidth=1, label=f"target {target:,.0f}k/s")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks(ys, [str(r["what"]) for r in rows], fontsize=7)
    ax.set_xlim(0, max([*values, target]) * 1.3)
    ax.set_xlabel("verifications per second, thousands (one core)")
    ax.set_title("In-process API key verification", fontsize=10)


def endpoints_panel(ax: Axes, data: dict[str, Any]) -> None:
    rows = data["rows"]
    ys = list(range(len(rows)))[::-1]
    values = [float(r["us"]) for r in rows]
    ax.barh(ys, values, color="#bcbd22")
    for y, v in zip(ys, values, strict=True):
        ax.text(v + 3, y, f"{v:,.1f} µs", va="center", fontsize=8)
    ax.set_yticks(ys, [str(r["what"]) for r in rows], fontsize=7)
    ax.set_xlim(0, max(values) * 1.3)
    ax.set_xlabel("CPU µs per request through the ASGI app (no server, one core)")
    ax.set_title("Where a request's time goes (bench/endpoints.py)", fontsize=10)


def main() -> Path:
    http = load("http")
    inprocess = load("inprocess")
    endpoints = load("endpoints")
    n = len(http["rows"]) if http else 4
    fig = plt.figure(figsize=(19, 0.34 * n + 3.4), layout="constrained")
    grid = fig.add_gridspec(2, 3, width_ratios=[1.25, 0.8, 1.1], height_ratios=[1, 1])
    ax_ratio = fig.add_subplot(grid[:, 0])
    ax_latency = fig.add_subplot(grid[:, 1])
    ax_inprocess = fig.add_subplot(grid[0, 2])
    ax_endpoints = fig.add_subplot(grid[1, 2])
    subtitle = ""
    if http:
        http_panels(ax_ratio, ax_latency, http)
        setup = http["setup"]
        versions = setup.get("versions", {})
        code = setup.get("code", {})
        subtitle = (
            f"{setup['cpu']}, {setup['cores']} cores, Python {setup['python']}; wrk "
            f"{setup['connections']} connections, {setup['wrk_threads']} threads, "
            f"{setup['seconds']} s per row, on the same cores; uvicorn "
            f"{versions.get('uvicorn', '?')}, granian {versions.get('granian', '?')}, fastapi "
            f"{versions.get('fastapi', '?')}; store {setup['store']}; code "
            f"{code.get('commit', '?')} (src {code.get('src', '?')})"
        )
    if inprocess:
        inprocess_panel(ax_inprocess, inprocess)
    if endpoints:
        endpoints_panel(ax_endpoints, endpoints)
    fig.suptitle(f"apiward benchmarks (bench/results/*.json)\n{subtitle}", fontsize=10)
    out = RESULTS / "bench.png"
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
