"""A bounded soak: a fixed rate of mixed calls (verify, forward auth, token grants,
management) against a real server process, with zero unexpected answers.

APIWARD_SOAK_SECONDS sets the length (15 s by default; the README reports a 60 s run).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections import Counter
from pathlib import Path

import httpx

from tests.adapters.test_processes import owner_key
from tests.live import server_process

SECONDS = float(os.environ.get("APIWARD_SOAK_SECONDS", "15"))
RATE = 100  # requests per second, spread over the mix


def test_soak_mixed_load(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'soak.db'}"
    owner = owner_key(db)
    auth = {"Authorization": f"Bearer {owner}"}
    with server_process(db) as base:

        async def run() -> tuple[Counter[str], list[float], int]:
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                verifier = (
                    await http.post(
                        "/v1/keys",
                        headers=auth,
                        json={"name": "verifier", "scopes": ["keys:verify"]},
                    )
                ).json()["key"]
                target = (
                    await http.post(
                        "/v1/keys", headers=auth, json={"name": "target", "scopes": ["things:read"]}
                    )
                ).json()["key"]
                client = (
                    await http.post(
                        "/v1/clients",
                        headers=auth,
                        json={"name": "soak", "scopes": ["things:read"]},
                    )
                ).json()
                calls = [
                    (
                        "verify",
                        "POST",
                        "/v1/keys/verify",
                        {
                            "headers": {"Authorization": f"Bearer {verifier}"},
                            "json": {"key": target},
                        },
                        {200},
                    ),
                    (
                        "check",
                        "GET",
                        "/v1/auth/check",
                        {
                            "headers": {
                                "Authorization": f"Bearer {target}",
                                "X-Apiward-Require": "things:read",
                            }
                        },
                        {200},
                    ),
                    (
                        "grant",
                        "POST",
                        "/v1/auth/token",
                        {
                            "json": {
                                "grant_type": "client_credentials",
                                "client_id": client["client_id"],
                                "client_secret": client["client_secret"],
                            }
                        },
                        {200},
                    ),
                    ("list", "GET", "/v1/keys?page_size=5", {"headers": auth}, {200}),
                    (
                        "create",
                        "POST",
                        "/v1/keys",
                        {"headers": auth, "json": {"name": "s", "scopes": ["things:read"]}},
                        {201},
                    ),
                    (
                        "denied",
                        "GET",
                        "/v1/users",
                        {"headers": {"Authorization": f"Bearer {target}"}},
                        {403},
                    ),
                ]
                outcomes: Counter[str] = Counter()
                latencies: list[float] = []
                tasks = []

                async def one(i: int) -> None:
                    name, method, path, kwargs, expected = calls[i % len(calls)]
                    start = time.perf_counter()
                    try:
                        r = await http.request(method, path, **kwargs)  # type: ignore[arg-type]
                        ok = r.status_code in expected
                        outcomes[f"{name}:{'ok' if ok else r.status_code}"] += 1
                    except httpx.HTTPError as exc:
                        outcomes[f"{name}:{type(exc).__name__}"] += 1
                    latencies.append(time.perf_counter() - start)

                # Every request of the run is sent, paced at RATE: a loop that falls
                # behind (a busy machine) catches up rather than sending fewer.
                total = int(SECONDS * RATE)
                begin = time.monotonic()
                i = 0
                while i < total:
                    due = min(total, int((time.monotonic() - begin) * RATE))
                    while i < due:
                        tasks.append(asyncio.create_task(one(i)))
                        i += 1
                    await asyncio.sleep(0.005)
                await asyncio.gather(*tasks)
                return outcomes, latencies, i

        started = time.monotonic()
        outcomes, latencies, sent = asyncio.run(run())
        took = time.monotonic() - started
    bad = {k: v for k, v in outcomes.items() if not k.endswith(":ok")}
    latencies.sort()
    p = {q: latencies[int(len(latencies) * q) - 1] * 1000 for q in (0.5, 0.9, 0.99)}
    print(
        f"soak {SECONDS:.0f}s at {RATE}/s: {sent} requests in {took:.1f} s, "
        f"unexpected {bad or 0}, "
        f"p50 {p[0.5]:.1f} ms, p90 {p[0.9]:.1f} ms, p99 {p[0.99]:.1f} ms, "
        f"max {latencies[-1] * 1000:.1f} ms, mean {statistics.mean(latencies) * 1000:.1f} ms"
    )
    assert sent == len(latencies) == int(SECONDS * RATE)  # every request was answered
    assert bad == {}, bad
