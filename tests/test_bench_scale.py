"""bench/scale.py runs end to end on a small population (a smoke test: nothing is timed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_scale_benchmark_runs_and_writes_its_results(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.scale",
            "--store",
            "sqlite",
            "--keys",
            "12000",
            "--sample",
            "100",
            "--rounds",
            "2",
            "--cache-max-entries",
            "400",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert [m["keys"] for m in result["measurements"]] == [10_000, 12_000]
    for row in result["measurements"]:
        assert row["cold_key"]["n"] == row["cold_all"]["n"] == 100
        assert row["warm"]["n"] == 300
    assert {"cold_key_p50", "warm_p99"} <= set(result["ratios"])
    memory = result["memory"]
    assert memory["exceeds_bound"] and memory["distinct_keys_verified"] == 600
    assert [p["entries"] for p in memory["points"]] == [0, 400, 400]
