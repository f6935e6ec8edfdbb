"""apiward over HTTP against its floor, side by side in one run.

    .venv/bin/python -m bench.http [--seconds 5] [--store sqlite|postgres] [--only GROUP ...]

Needs wrk, nginx (the proxy rows are skipped without it) and ``pip install granian``
(the granian rows are skipped without it). Every measurement is wrk with 50
connections and 2 threads against 127.0.0.1, after a 1 s warm-up run that also warms
every worker's verification cache. The load generator and the servers share the
machine's cores, so only the ratios between rows of the same run mean anything.

Groups (``--only``):

- ``floor``: a raw ASGI callable answering a constant (bench/apps.py ``bare``) under
  uvicorn and granian, 1 and 2 workers;
- ``check``: ``GET /v1/auth/check`` with a valid key and ``X-Apiward-Require:
  things:read`` (``apiward serve``, i.e. uvicorn, and granian on
  ``apiward.adapters.http.app:create_app``), against the floor on the same server and
  worker count;
- ``verify``: ``POST /v1/keys/verify {"key": ...}`` by a caller holding
  ``keys:verify``, on the same servers;
- ``nginx``: docs/nginx.conf + docs/apiward_protect.conf in front of the bare app,
  against the same nginx asking a bare auth backend (``bare_auth``: 200, no body), and
  against the same nginx and upstream without ``auth_request``;
- ``fastapi``: bench/apps.py ``protected_app`` (``Apiward().init_app(app)``):
  ``/protected`` (``require("things:read")``) against the same route behind a
  hand-written dependency (``handwritten_app``), and ``/open`` against the same route
  in FastAPI without apiward.

The floor and the apiward rows send the same request headers. Beside each row's rate,
``cpu µs`` is the CPU the served processes (the servers, and nginx where it is in
front) spent per request, which the load generator sharing the cores does not blur.
Prints a table and writes ``bench/results/http.json`` (``bench/plot.py`` draws it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    BIN,
    ROOT,
    apiward,
    bench_env,
    free_port,
    fresh_postgres,
    machine,
    others_cpu,
    save,
    spawn,
    workdir,
    wrk,
)

CONNECTIONS = 50
THREADS = 2
# docs/architecture.md section 6: each path's share of its baseline, and the p99.
FLOOR_TARGETS = {"check": 0.60, "verify": 0.40}  # of the bare-ASGI floor, same server
P99_TARGET_MS = 5.0
PROTECTED_TARGET = 0.90  # require() route / the route behind a hand-written dependency
OPEN_TARGET = 0.97  # an unprotected route of an init_app app / FastAPI without apiward
PLAIN = "FastAPI without apiward"
NGINX_TARGET = 0.90  # auth_request to apiward / auth_request to the bare app
NGINX_AUTH = "nginx auth_request -> apiward, -> bare"
NGINX_BARE_AUTH = "nginx auth_request -> bare ASGI 200 (no body), -> bare"
HANDWRITTEN = "FastAPI, /protected by a hand-written dependency (bench/apps.py)"
GROUPS = ("floor", "check", "verify", "nginx", "fastapi")
APP_FACTORY = "apiward.adapters.http.app:create_app"
RAW_CHECK = "what-if: check's decision in raw ASGI"

Row = dict[str, Any]


# servers ------------------------------------------------------------------------------


def granian_available() -> bool:
    return (BIN / "granian").exists()


def uvicorn_cmd(target: str, port: int, workers: int, *, factory: bool = False) -> list[str]:
    """The flags ``apiward serve`` gives uvicorn (uvloop, httptools, no access log)."""
    cmd = [
        str(BIN / "uvicorn"),
        target,
        "--host=127.0.0.1",
        f"--port={port}",
        f"--workers={workers}",
        "--loop=uvloop",
        "--http=httptools",
        "--log-level=warning",
        "--no-access-log",
        "--no-proxy-headers",
    ]
    return [*cmd, "--factory"] if factory else cmd


def granian_cmd(target: str, port: int, workers: int, *, factory: bool = False) -> list[str]:
    cmd = [
        str(BIN / "granian"),
        "--interface=asgi",
        "--host=127.0.0.1",
        f"--port={port}",
        f"--workers={workers}",
        "--loop=uvloop",
        "--log-level=warning",
        "--no-access-log",
        target,
    ]
    return [*cmd, "--factory"] if factory else cmd


def app_cmd(
    server: str, target: str, port: int, workers: int, *, factory: bool = False
) -> list[str]:
    build = uvicorn_cmd if server == "uvicorn" else granian_cmd
    return build(target, port, workers, factory=factory)


def apiward_cmd(server: str, port: int, workers: int) -> list[str]:
    """apiward's own server (``apiward serve``: uvicorn), or granian on its app factory."""
    if server == "uvicorn":
        return [str(BIN / "apiward"), "serve", f"--port={port}", f"--workers={workers}"]
    return granian_cmd(APP_FACTORY, port, workers, factory=True)


@contextmanager
def serving(cmd: list[str], env: dict[str, str], port: int) -> Iterator[str]:
    with spawn(cmd, {**env, "PYTHONPATH": str(ROOT)}, port, settle=1.5) as base:
        yield base


# wrk ----------------------------------------------------------------------------------


def lua(path: Path, *, headers: dict[str, str], method: str = "GET", body: str = "") -> Path:
    lines = [f'wrk.method = "{method}"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    if body:
        lines.append(f"wrk.body = [[{body}]]")
    path.write_text("\n".join(lines) + "\n")
    return path


class Runner:
    def __init__(self, seconds: int, warmup: int) -> None:
        self.seconds = seconds
        self.warmup = warmup
        self.rows: list[Row] = []

    def probe(self, url: str, script: Path, expect: int = 200) -> None:
        """One request like wrk's, checked, so that a broken setup fails loudly."""
        method, headers, body = "GET", {}, None
        for line in script.read_text().splitlines():
            if line.startswith("wrk.method"):
                method = line.split('"')[1]
            elif line.startswith("wrk.headers"):
                parts = line.split('"')
                headers[parts[1]] = parts[3]
            elif line.startswith("wrk.body"):
                body = line.split("[[", 1)[1].rsplit("]]", 1)[0]
        r = httpx.request(method, url, headers=headers, content=body, timeout=10)
        if r.status_code != expect or (method == "POST" and not r.json().get("valid")):
            raise RuntimeError(f"{method} {url} answered {r.status_code}: {r.text[:500]}")

    def run(self, url: str, script: Path, **row: Any) -> Row:
        self.probe(url, script)
        wrk(url, script, connections=CONNECTIONS, threads=THREADS, seconds=self.warmup)
        with others_cpu() as others:
            result = wrk(
                url, script, connections=CONNECTIONS, threads=THREADS, seconds=self.seconds
            )
        if result["non_2xx"] or result["socket_errors"]:
            print(
                f"  warning: {result['non_2xx']:.0f} non-2xx, {result['socket_errors']:.0f} errors"
            )
        # The CPU the served processes (the server's, nginx's) spent per request: what
        # the load generator sharing the cores does not blur.
        served = others.pop("served_cpu_s", 0.0)
        out = {**row, **result, **others}
        out["served_us"] = round(served / result["requests"] * 1e6, 1) if result["requests"] else 0
        self.rows.append(out)
        print(
            f"  {row['group']:<8}{row['what'][:44]:<45}{row.get('server', ''):<9}"
            f"{row.get('workers', '')!s:>2}{result['rps']:>10,.0f}{result.get('p50_ms', 0):>8.2f}"
            f"{result.get('p99_ms', 0):>8.2f}{others.get('others_cores', 0):>8.2f}"
            f"{out['served_us']:>9.1f}",
            flush=True,
        )
        return out


# setup --------------------------------------------------------------------------------


def bootstrap(env: dict[str, str]) -> dict[str, str]:
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
    reader = apiward(env, "keys", "create", "--name", "reader", "--scope", "things:read")
    caller = apiward(env, "keys", "create", "--name", "verifier", "--scope", "keys:verify")
    return {"reader": str(reader["key"]), "caller": str(caller["key"])}


NGINX_MAIN = """
daemon off;
worker_processes 1;
{user}
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/server.conf;

    # The same upstream without auth_request: the nginx floor.
    server {{
        listen 127.0.0.1:{plain};
        location / {{ proxy_pass http://your_api; }}
    }}

    # Not in docs/nginx.conf: the upstream with keep-alive connections.
    upstream your_api_keepalive {{
        server 127.0.0.1:{upstream};
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{keepalive};
        location / {{
            proxy_pass http://your_api_keepalive;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def nginx_binary() -> str | None:
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )


# the groups ---------------------------------------------------------------------------


def run_http(
    runner: Runner,
    env: dict[str, str],
    keys: dict[str, str],
    tmp: Path,
    servers: list[str],
    workers: list[int],
    groups: set[str],
) -> None:
    """floor, check and verify: each server and worker count, floor first."""
    check = lua(
        tmp / "check.lua",
        headers={"Authorization": f"Bearer {keys['reader']}", "X-Apiward-Require": "things:read"},
    )
    verify = lua(
        tmp / "verify.lua",
        method="POST",
        headers={"Authorization": f"Bearer {keys['caller']}", "Content-Type": "application/json"},
        body=json.dumps({"key": keys["reader"]}),
    )
    for server in servers:
        for n in workers:
            if "floor" in groups or "check" in groups or "verify" in groups:
                port = free_port()
                with serving(app_cmd(server, "bench.apps:bare", port, n), env, port) as base:
                    runner.run(
                        f"{base}/v1/auth/check",
                        check,
                        group="floor",
                        what="bare ASGI constant",
                        server=server,
                        workers=n,
                    )
            if "check" in groups or "verify" in groups:
                port = free_port()
                with serving(apiward_cmd(server, port, n), env, port) as base:
                    if "check" in groups:
                        runner.run(
                            f"{base}/v1/auth/check",
                            check,
                            group="check",
                            what="GET /v1/auth/check",
                            server=server,
                            workers=n,
                        )
                    if "verify" in groups:
                        runner.run(
                            f"{base}/v1/keys/verify",
                            verify,
                            group="verify",
                            what="POST /v1/keys/verify",
                            server=server,
                            workers=n,
                        )
            if "check" in groups:
                port = free_port()
                cmd = app_cmd(server, "bench.apps:raw_check", port, n, factory=True)
                with serving(cmd, env, port) as base:
                    runner.run(
                        f"{base}/v1/auth/check",
                        check,
                        group="check",
                        what=RAW_CHECK,
                        server=server,
                        workers=n,
                    )


def run_nginx(
    runner: Runner, env: dict[str, str], keys: dict[str, str], tmp: Path, workers: int
) -> None:
    binary = nginx_binary()
    if binary is None:
        print("nginx is not installed: nginx rows skipped (apt-get install nginx)")
        return
    docs = ROOT / "docs"
    ports = {name: free_port() for name in ("apiward", "upstream", "auth", "plain", "keepalive")}
    conf = (docs / "nginx.conf").read_text()
    conf = conf.replace("127.0.0.1:8000", f"127.0.0.1:{ports['apiward']}")
    conf = conf.replace("127.0.0.1:9000", f"127.0.0.1:{ports['upstream']}")
    conf = conf.replace("127.0.0.1:8080", f"127.0.0.1:{ports['auth']}")
    nginx_dir = tmp / "nginx"
    nginx_dir.mkdir()
    (nginx_dir / "server.conf").write_text(conf)
    shutil.copy(docs / "apiward_protect.conf", nginx_dir / "apiward_protect.conf")
    for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (nginx_dir / d).mkdir()
    (nginx_dir / "nginx.conf").write_text(
        NGINX_MAIN.format(
            tmp=nginx_dir,
            user="user root;" if os.geteuid() == 0 else "",
            plain=ports["plain"],
            keepalive=ports["keepalive"],
            upstream=ports["upstream"],
        )
    )
    script = lua(tmp / "things.lua", headers={"Authorization": f"Bearer {keys['reader']}"})
    proxied_env = {**env, "APIWARD_TRUSTED_PROXIES": '["127.0.0.1/32"]'}
    upstream_cmd = uvicorn_cmd("bench.apps:bare", ports["upstream"], 1)
    nginx_cmd = [binary, "-p", str(nginx_dir), "-c", str(nginx_dir / "nginx.conf")]
    common = {"group": "nginx", "server": "uvicorn", "workers": workers}
    # The same nginx, with the check answered by the bare ASGI app: what the subrequest
    # itself costs, the baseline of apiward behind auth_request.
    bare_check = uvicorn_cmd("bench.apps:bare_auth", ports["apiward"], workers)
    with (
        serving(bare_check, env, ports["apiward"]),
        serving(upstream_cmd, env, ports["upstream"]),
        spawn(nginx_cmd, env, ports["auth"], settle=0.3),
    ):
        runner.run(
            f"http://127.0.0.1:{ports['auth']}/v1/things", script, what=NGINX_BARE_AUTH, **common
        )
    with (
        serving(apiward_cmd("uvicorn", ports["apiward"], workers), proxied_env, ports["apiward"]),
        serving(upstream_cmd, env, ports["upstream"]),
        spawn(nginx_cmd, env, ports["auth"], settle=0.3),
    ):
        runner.run(
            f"http://127.0.0.1:{ports['plain']}/v1/things",
            script,
            what="nginx -> bare (docs upstream, no auth)",
            **common,
        )
        runner.run(
            f"http://127.0.0.1:{ports['auth']}/v1/things",
            script,
            what=NGINX_AUTH,
            **common,
        )
        runner.run(
            f"http://127.0.0.1:{ports['keepalive']}/v1/things",
            script,
            what="nginx -> bare (upstream keepalive, no auth)",
            **common,
        )


def run_fastapi(
    runner: Runner,
    env: dict[str, str],
    keys: dict[str, str],
    tmp: Path,
    servers: list[str],
    rounds: int,
) -> None:
    """The same route open and protected, alternated ``rounds`` times in one process."""
    script = lua(tmp / "fastapi.lua", headers={"Authorization": f"Bearer {keys['reader']}"})
    for server in servers:
        port = free_port()
        cmd = app_cmd(server, "bench.apps:handwritten_app", port, 1, factory=True)
        with serving(cmd, {**env, "BENCH_HANDWRITTEN_KEY": keys["reader"]}, port) as base:
            for path, what in (("open", PLAIN), ("protected", HANDWRITTEN)):
                runner.run(
                    f"{base}/{path}", script, group="fastapi", what=what, server=server, workers=1
                )
        port = free_port()
        cmd = app_cmd(server, "bench.apps:protected_app", port, 1, factory=True)
        with serving(cmd, env, port) as base:
            for i in range(rounds):
                for path, what in (("open", "init_app, route open"), ("protected", "protected")):
                    runner.run(
                        f"{base}/{path}",
                        script,
                        group="fastapi",
                        what=f"init_app, /{path}"
                        if what != "protected"
                        else 'init_app, /protected require("things:read")',
                        server=server,
                        workers=1,
                        round=i,
                    )


# ratios -------------------------------------------------------------------------------


def merge_rounds(rows: list[Row]) -> list[Row]:
    """Rows measured in several rounds become one row: mean req/s, median percentiles."""
    merged: dict[tuple[str, str, str, int], list[Row]] = {}
    for row in rows:
        merged.setdefault((row["group"], row["what"], row["server"], row["workers"]), []).append(
            row
        )
    out = []
    for group in merged.values():
        if len(group) == 1:
            out.append({k: v for k, v in group[0].items() if k != "round"})
            continue
        row = {k: v for k, v in group[0].items() if k != "round"}
        row["rps"] = statistics.mean(r["rps"] for r in group)
        row["rps_rounds"] = [r["rps"] for r in group]
        for key in ("p50_ms", "p90_ms", "p99_ms"):
            row[key] = statistics.median(r.get(key, 0.0) for r in group)
        for key in ("non_2xx", "socket_errors", "requests"):
            row[key] = sum(r[key] for r in group)
        row["others_cores"] = max(r.get("others_cores", 0.0) for r in group)
        out.append(row)
    return out


def add_ratios(rows: list[Row]) -> None:
    def find(group: str, what: str, server: str, workers: int) -> Row | None:
        for r in rows:
            if (r["group"], r["what"], r["server"], r["workers"]) == (group, what, server, workers):
                return r
        return None

    for r in rows:
        base: Row | None = None
        if r["group"] in ("floor", "check", "verify"):
            base = find("floor", "bare ASGI constant", r["server"], r["workers"])
        elif r["group"] == "nginx":
            base = find(
                "nginx", "nginx -> bare (docs upstream, no auth)", r["server"], r["workers"]
            )
        elif r["group"] == "fastapi" and r["what"] not in (PLAIN, HANDWRITTEN):
            guarded = "/protected" in r["what"]
            base = find("fastapi", HANDWRITTEN if guarded else PLAIN, r["server"], 1)
        if base is not None:
            r["baseline"] = f"{base['what']} ({base['server']}, {base['workers']}w)"
            r["ratio"] = r["rps"] / base["rps"]
        floor = find("floor", "bare ASGI constant", r["server"], r["workers"])
        if floor is not None and r["group"] != "nginx":
            r["floor_ratio"] = r["rps"] / floor["rps"]


def verdicts(rows: list[Row]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    floors = {(r["server"], r["workers"]): r["rps"] for r in rows if r["group"] == "floor"}
    for n in (1, 2):
        if ("uvicorn", n) in floors and ("granian", n) in floors:
            out[f"floor_granian_over_uvicorn_{n}w"] = floors["granian", n] / floors["uvicorn", n]
    for r in rows:
        if r["group"] in ("check", "verify") and "ratio" in r and r["what"] != RAW_CHECK:
            key = f"{r['group']}_{r['server']}_{r['workers']}w"
            target = FLOOR_TARGETS[r["group"]]
            out[key] = {
                "ratio": r["ratio"],
                "target": target,
                "ratio_met": r["ratio"] >= target,
                "p99_ms": r.get("p99_ms"),
                "p99_met": r.get("p99_ms", 1e9) < P99_TARGET_MS,
            }
    nginx = {r["what"]: r for r in rows if r["group"] == "nginx"}
    if NGINX_AUTH in nginx and NGINX_BARE_AUTH in nginx:
        ratio = nginx[NGINX_AUTH]["rps"] / nginx[NGINX_BARE_AUTH]["rps"]
        out["nginx_auth_request"] = {
            "ratio": ratio,
            "target": NGINX_TARGET,
            "ratio_met": ratio >= NGINX_TARGET,
            "p99_ms": nginx[NGINX_AUTH].get("p99_ms"),
            "baseline": NGINX_BARE_AUTH,
        }
    for server in ("uvicorn", "granian"):
        fast = {r["what"]: r for r in rows if r["group"] == "fastapi" and r["server"] == server}
        for what, target, name, baseline in (
            (
                'init_app, /protected require("things:read")',
                PROTECTED_TARGET,
                "protected",
                HANDWRITTEN,
            ),
            ("init_app, /open", OPEN_TARGET, "open", PLAIN),
        ):
            if what in fast and baseline in fast:
                ratio = fast[what]["rps"] / fast[baseline]["rps"]
                out[f"fastapi_{name}_{server}"] = {
                    "ratio": ratio,
                    "target": target,
                    "ratio_met": ratio >= target,
                    "p99_ms": fast[what].get("p99_ms"),
                    "baseline": baseline,
                }
    return out


def git_state() -> dict[str, str]:
    """Which code was measured (read-only git queries)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--", "src")
    return {"commit": git("rev-parse", "--short", "HEAD"), "src": "modified" if dirty else "clean"}


def print_table(rows: list[Row], summary: dict[str, Any]) -> None:
    print(
        f"\n{'group':<8}{'what':<45}{'server':<9}{'w':>2}{'req/s':>10}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'floor':>7}{'ratio':>7}{'others':>7}{'cpu µs':>8}  ratio's baseline"
    )
    for r in rows:
        floor = f"{r['floor_ratio']:.2f}" if "floor_ratio" in r else ""
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else ""
        print(
            f"{r['group']:<8}{r['what'][:44]:<45}{r['server']:<9}{r['workers']:>2}"
            f"{r['rps']:>10,.0f}{r.get('p50_ms', 0):>8.2f}{r.get('p99_ms', 0):>8.2f}{floor:>7}"
            f"{ratio:>7}{r.get('others_cores', 0):>7.2f}{r.get('served_us', 0):>8.1f}"
            f"  {r.get('baseline', '')}"
        )
    print()
    for n in (1, 2):
        speedup = summary.get(f"floor_granian_over_uvicorn_{n}w")
        if speedup:
            faster, by = ("granian", speedup) if speedup >= 1 else ("uvicorn", 1 / speedup)
            print(f"floor, {n} worker(s): {faster} is faster, {by:.2f}x the other")
    for key, v in summary.items():
        if not isinstance(v, dict) or "ratio" not in v:
            continue
        met = "met" if v["ratio_met"] else "NOT met"
        baseline = v.get("baseline", "the floor")
        line = f"{key}: {v['ratio']:.2f}x {baseline} ({met}, target {v['target']:.2f}x)"
        if "p99_met" in v:
            p99 = "met" if v["p99_met"] else "NOT met"
            line += f"; p99 {v['p99_ms']} ms ({p99}, target < {P99_TARGET_MS} ms)"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--seconds", type=int, default=5, help="per measurement (after 1 s warm-up)"
    )
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--only", nargs="*", choices=GROUPS, default=list(GROUPS))
    parser.add_argument("--workers", nargs="*", type=int, default=[1, 2])
    parser.add_argument("--nginx-workers", type=int, default=1, help="apiward workers behind nginx")
    parser.add_argument("--rounds", type=int, default=2, help="fastapi open/protected alternations")
    args = parser.parse_args()
    groups = set(args.only)
    servers = ["uvicorn", "granian"] if granian_available() else ["uvicorn"]
    if len(servers) == 1:
        print("granian is not installed: granian rows skipped (pip install granian)")
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"warning: load average {load:.1f} before starting: other work shares the cores")
    runner = Runner(args.seconds, args.warmup)
    print(
        f"{'':2}{'group':<8}{'what':<45}{'server':<9}{'w':>2}{'req/s':>10}{'p50':>8}{'p99':>8}"
        f"{'others':>8}{'cpu µs':>9}"
    )
    with workdir() as tmp:
        db = fresh_postgres() if args.store == "postgres" else tmp / "bench.db"
        env = {**bench_env(db), "APIWARD_DOCS_ENABLED": "false"}
        keys = bootstrap(env)
        env["APIWARD_MIGRATE_ON_START"] = "false"  # done by init; granian workers would race
        run_http(runner, env, keys, tmp, servers, args.workers, groups)
        if "nginx" in groups:
            run_nginx(runner, env, keys, tmp, args.nginx_workers)
        if "fastapi" in groups:
            run_fastapi(runner, env, keys, tmp, servers, args.rounds)
    rows = merge_rounds(runner.rows)
    add_ratios(rows)
    summary = verdicts(rows)
    print_table(rows, summary)
    result = {
        "setup": {
            **machine(),
            "connections": CONNECTIONS,
            "wrk_threads": THREADS,
            "seconds": args.seconds,
            "warmup_seconds": args.warmup,
            "store": args.store,
            "nginx_apiward_workers": args.nginx_workers,
            "fastapi_rounds": args.rounds,
            "code": git_state(),
            "load1_before": round(load, 2),
        },
        "targets": {
            "of_floor": FLOOR_TARGETS,
            "p99_ms": P99_TARGET_MS,
            "protected_over_fastapi": PROTECTED_TARGET,
            "open_over_fastapi": OPEN_TARGET,
            "nginx_over_bare_auth_request": NGINX_TARGET,
        },
        "rows": rows,
        "summary": summary,
    }
    print(f"results: {save('http', result)}")


if __name__ == "__main__":
    main()
