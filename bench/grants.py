"""Token grants per second against a real server: client_credentials and refresh.

    .venv/bin/python bench/grants.py [--workers 2] [--seconds 10]

Starts `apiward serve` on a throw-away SQLite database, creates an OAuth client and a
pool of single-use refresh tokens, and drives the token endpoint with wrk (50
connections). Each refresh request presents a token never used before, so every one is
a real rotation (a locked read, two writes and a signature), not a grace-window replay.

In the same run, the floor of docs/architecture.md section 6 (bench/apps.py ``bare``
under uvicorn with ``apiward serve``'s flags and the same worker count) is measured with
the same wrk request, and ``client_credentials`` is reported against its target share of
it (``CLIENT_CREDENTIALS_TARGET``). A cold start comes first: 50 new connections at
once on a server that has answered nothing, each connection's first request timed
apart (``first_requests``). With Node.js, the same grant (a form-encoded
``client_secret_post`` body, an ES256 ``at+jwt`` access token) is asked of
node-oidc-provider 9 (``bench/oidc/server.mjs``, one process, installed from npm on
first use) and of apiward with one worker, and apiward's rate is reported against
``NODE_TARGET`` times node's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx

from bench.common import (
    ROOT,
    apiward,
    bench_env,
    free_port,
    fresh_postgres,
    save,
    server,
    spawn,
    workdir,
    wrk,
)
from bench.http import uvicorn_cmd

CLIENT_CREDENTIALS_TARGET = 0.15  # of the floor, per worker
NODE_TARGET = 1.2  # client_credentials, one process each, against node-oidc-provider
OIDC = Path(__file__).parent / "oidc"

LUA_FORM = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "{body}"
"""

LUA_CLIENT = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[{body}]]
"""

LUA_REFRESH = """local tokens = {{}}
for line in io.lines("{path}") do tokens[#tokens + 1] = line end
local counter = 0
local id = 0
setup = function(thread) thread:set("id", id); id = id + 1 end
init = function(args) counter = id end
request = function()
  local token = tokens[(counter % #tokens) + 1]
  counter = counter + {threads}
  return wrk.format("POST", nil, {{["Content-Type"] = "application/json"}},
                    '{{"refresh_token": "' .. token .. '"}}')
end
"""


async def refresh_tokens(base: str, count: int) -> list[str]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        sem = asyncio.Semaphore(16)

        async def one() -> str:
            async with sem:
                r = await http.post(
                    "/v1/auth/token",
                    json={"username": "bench@apiward.test", "password": "correct horse battery"},
                )
                r.raise_for_status()
                return str(r.json()["refresh_token"])

        return list(await asyncio.gather(*(one() for _ in range(count))))


async def first_requests(
    port: int, body: str, seconds: float, connections: int = 50
) -> dict[str, float]:
    """On a server that has answered nothing yet: ``connections`` new connections at
    once, each sending the grant as fast as it is answered for ``seconds``; the latency
    of each connection's first request (a cold cache's reads) and of all of them, in ms."""
    request = (
        "POST /v1/auth/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()
    firsts: list[float] = []
    every: list[float] = []
    began = time.perf_counter()

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        first = True
        while time.perf_counter() - began < seconds:
            sent = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            await reader.readexactly(length)
            took = (time.perf_counter() - sent) * 1000
            every.append(took)
            if first:
                firsts.append(took)
                first = False
        writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    firsts.sort()
    every.sort()
    return {
        "first_p50_ms": round(firsts[len(firsts) // 2], 1),
        "first_max_ms": round(firsts[-1], 1),
        "p50_ms": round(every[len(every) // 2], 1),
        "p99_ms": round(every[int(len(every) * 0.99)], 1),
        "requests": len(every),
    }


def node_provider() -> list[str] | None:
    """The command that starts node-oidc-provider (its packages installed from npm on
    first use), or None without Node.js."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        print("Node.js is not installed: the node-oidc-provider row is skipped")
        return None
    if not (OIDC / "node_modules").exists():
        subprocess.run(
            [npm, "ci", "--prefix", str(OIDC), "--no-audit", "--no-fund", "--loglevel=error"],
            check=True,
        )
    return [node, str(OIDC / "server.mjs")]


def against_node(
    env: dict[str, str], client: dict[str, object], tmp: Path, seconds: int
) -> dict[str, dict[str, float]]:
    """apiward (one worker) and node-oidc-provider answering the same form-encoded
    client_credentials request, one after the other in the same run."""
    node = node_provider()
    if node is None:
        return {}
    form = {
        "grant_type": "client_credentials",
        "client_id": str(client["client_id"]),
        "client_secret": str(client["client_secret"]),
        "scope": "keys:read",
    }
    (tmp / "form.lua").write_text(LUA_FORM.format(body=urlencode(form)))
    port = free_port()
    cmd = [*node, str(port), form["client_id"], form["client_secret"]]
    with spawn(cmd, env, port) as base:
        probe = httpx.post(f"{base}/token", data=form, timeout=10)
        assert probe.status_code == 200, probe.text
        theirs = wrk(f"{base}/token", tmp / "form.lua", seconds=seconds)
    with server(env, 1) as base:
        probe = httpx.post(f"{base}/v1/auth/token", data=form, timeout=10)
        assert probe.status_code == 200, probe.text
        ours = wrk(f"{base}/v1/auth/token", tmp / "form.lua", seconds=seconds)
    return {"node_oidc_provider": theirs, "client_credentials_form": ours}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--refresh-pool", type=int, default=20000)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    with workdir() as tmp:
        db = fresh_postgres() if args.store == "postgres" else tmp / "bench.db"
        env = bench_env(
            db,
            APIWARD_ARGON2_TIME_COST="1",
            APIWARD_ARGON2_MEMORY_KIB="1024",
            APIWARD_LOGIN_MAX_FAILURES="1000000",
            APIWARD_LOGIN_IP_MAX_FAILURES="1000000",
        )
        apiward(
            env,
            "init",
            "--org-name",
            "Bench",
            "--email",
            "bench@apiward.test",
            "--password",
            "correct horse battery",
        )
        client = apiward(env, "clients", "create", "--name", "bench", "--scope", "keys:read")
        body = json.dumps(
            {
                "grant_type": "client_credentials",
                "client_id": client["client_id"],
                "client_secret": client["client_secret"],
            }
        )
        (tmp / "client.lua").write_text(LUA_CLIENT.format(body=body))
        port = free_port()
        bare = uvicorn_cmd("bench.apps:bare", port, args.workers)
        with spawn(bare, {**env, "PYTHONPATH": str(ROOT)}, port) as base:
            floor = wrk(f"{base}/v1/auth/token", tmp / "client.lua", seconds=args.seconds)
        with server(env, args.workers) as base:
            cold = asyncio.run(first_requests(int(base.rsplit(":", 1)[1]), body, 5))
        with server(env, args.workers) as base:
            cc = wrk(f"{base}/v1/auth/token", tmp / "client.lua", seconds=args.seconds)
            tokens = asyncio.run(refresh_tokens(base, args.refresh_pool))
            (tmp / "tokens.txt").write_text("\n".join(tokens))
            (tmp / "refresh.lua").write_text(LUA_REFRESH.format(path=tmp / "tokens.txt", threads=2))
            rf = wrk(f"{base}/v1/auth/refresh", tmp / "refresh.lua", seconds=args.seconds)
        node = against_node(env, client, tmp, args.seconds)
    results = {
        "setup": {
            "workers": args.workers,
            "connections": 50,
            "store": args.store,
            "seconds": args.seconds,
            "refresh_pool": args.refresh_pool,
        },
        "floor": floor,
        "client_credentials": cc,
        "refresh": rf,
        "cold_start": cold,
        "client_credentials_of_floor": cc["rps"] / floor["rps"],
        "client_credentials_target": CLIENT_CREDENTIALS_TARGET,
        **node,
    }
    path = save(f"grants-{args.store}", results)
    print(f"{'grant':<20}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>10}")
    names = ["floor", "client_credentials", "refresh", *node]
    for name in names:
        r = results[name]
        assert isinstance(r, dict)
        print(
            f"{name:<20}{r['rps']:>10.0f}{r.get('p50_ms', 0):>10}{r.get('p99_ms', 0):>10}"
            f"{r['non_2xx']:>10.0f}"
        )
    share = results["client_credentials_of_floor"]
    assert isinstance(share, float)
    met = "met" if share >= CLIENT_CREDENTIALS_TARGET else "NOT met"
    print(
        f"client_credentials: {share:.2f}x the floor with {args.workers} worker(s) "
        f"({met}, target {CLIENT_CREDENTIALS_TARGET:.2f}x)"
    )
    print(
        f"cold start, 50 new connections: first requests p50 {cold['first_p50_ms']} ms, "
        f"max {cold['first_max_ms']} ms; every request p50 {cold['p50_ms']} ms, "
        f"p99 {cold['p99_ms']} ms"
    )
    if node:
        ratio = node["client_credentials_form"]["rps"] / node["node_oidc_provider"]["rps"]
        met = "met" if ratio >= NODE_TARGET else "NOT met"
        print(
            f"client_credentials, one process each: {ratio:.2f}x node-oidc-provider "
            f"({met}, target {NODE_TARGET:.1f}x)"
        )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
