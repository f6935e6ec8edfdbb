"""A real nginx in front of a Node.js upstream, asking a real apiward on every request.

Runs docs/nginx.conf (with its ports changed), so the documented configuration is the
tested one. The upstream (upstream.mjs) routes with the WHATWG URL parser and reads
paths as permissively as upstreams do, and says which route served each request: the
proxy contract (docs/forward-auth.md) holds when no spelling of a path reaches a route
apiward did not judge it as.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from apiward.adapters.http.app import create_app
from apiward.adapters.runtime import build
from tests.adapters.http.proxy_keys import CREDITS, ROUTES, proxy_keys
from tests.adapters.limiter.conftest import start_private_redis
from tests.conftest import IN_CI, fast_settings, require_postgres
from tests.live import free_port, serve

DOCS = Path(__file__).parents[3] / "docs"
UPSTREAM = Path(__file__).parent / "upstream.mjs"


def binary(name: str, package: str) -> str:
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
    )
    if path is None:
        message = f"{name} is not installed; `apt-get install {package}` to run the proxy tests."
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@dataclass
class Stack:
    url: str
    keys: dict[str, str]
    key_ids: dict[str, str]
    org_id: str
    error_log: Path
    apiward_url: str


@contextmanager
def node_upstream() -> Iterator[str]:
    """upstream.mjs on a free port, until the block ends; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [binary("node", "nodejs"), str(UPSTREAM), str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if line.strip() != "listening":
            raise RuntimeError(f"the Node upstream did not start: {line}{proc.stdout.read()!r}")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


BACKENDS = [
    "sqlite-memory",
    pytest.param("postgres-redis", marks=[pytest.mark.postgres, pytest.mark.redis]),
]
"""The stores and limiters the path table runs on (the other tests: SQLite, memory)."""


def backend_settings(name: str, tmp_path: Path, stack: ExitStack) -> dict[str, Any]:
    if name == "sqlite-memory":
        return {"database_url": f"sqlite+aiosqlite:///{tmp_path / 'n.db'}"}
    redis = start_private_redis(tmp_path)
    stack.callback(redis.kill)
    return {
        "database_url": require_postgres(),
        "redis_url": redis.url,
        "rate_limit_failure_mode": "closed",  # a Redis fault fails loudly, never falls back
    }


@pytest.fixture
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    with ExitStack() as cleanup:
        yield from _stack(getattr(request, "param", "sqlite-memory"), tmp_path, cleanup)


def _stack(backend: str, tmp_path: Path, cleanup: ExitStack) -> Iterator[Stack]:
    nginx = binary("nginx", "nginx")
    settings = fast_settings(
        trusted_proxies=["127.0.0.1/32"],
        rate_limit_routes=ROUTES,
        **backend_settings(backend, tmp_path, cleanup),
    )

    async def setup() -> tuple[str, dict[str, str], dict[str, str]]:
        runtime = build(settings)
        await runtime.start(background=False)
        try:
            boot = await runtime.tenancy.bootstrap("Acme", "o@acme.test", "correct horse battery")
            keys, ids = await proxy_keys(
                runtime, boot.org.id, metered_scopes=("things:read", "invoices:read")
            )
            return boot.org.id, keys, ids
        finally:
            await runtime.stop()

    org_id, keys, key_ids = asyncio.run(setup())
    with serve(create_app(settings)) as apiward_url, node_upstream() as upstream_url:
        port = free_port()
        server = (DOCS / "nginx.conf").read_text()
        server = server.replace("127.0.0.1:8000", apiward_url.removeprefix("http://"))
        server = server.replace("127.0.0.1:9000", upstream_url.removeprefix("http://"))
        server = server.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
        (tmp_path / "server.conf").write_text(server)
        shutil.copy(DOCS / "apiward_protect.conf", tmp_path / "apiward_protect.conf")
        for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (tmp_path / d).mkdir()
        (tmp_path / "nginx.conf").write_text(f"""
daemon off;
worker_processes 1;
user root;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log info;
events {{ worker_connections 128; }}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    include {tmp_path}/server.conf;
}}
""")
        proc = subprocess.Popen(
            [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/", timeout=0.5)
                    break
                except httpx.TransportError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        out = proc.stdout.read().decode() if proc.stdout else ""
                        raise RuntimeError(f"nginx did not start: {out}") from None
                    time.sleep(0.05)
            yield Stack(
                f"http://127.0.0.1:{port}",
                keys,
                key_ids,
                org_id,
                tmp_path / "error.log",
                apiward_url,
            )
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def test_allowed_request_reaches_upstream_with_identity(stack: Stack) -> None:
    key = stack.keys["reader"]
    r = httpx.get(f"{stack.url}/v1/things", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200
    seen = r.json()["headers"]
    assert seen["x-apiward-org"] == stack.org_id
    assert seen["x-apiward-scopes"] == "things:read"
    assert seen["x-apiward-credential-kind"] == "api_key"
    assert "authorization" not in seen


def test_refusals_reach_the_client_with_apiwards_body(stack: Stack) -> None:
    missing = httpx.get(f"{stack.url}/v1/things")
    assert missing.status_code == 401
    assert missing.json()["reason"] == "MISSING_CREDENTIAL"
    assert missing.headers["www-authenticate"].startswith('Bearer realm="apiward"')
    assert missing.headers["x-request-id"] == missing.json()["request_id"]
    other = stack.keys["other"]
    denied = httpx.get(f"{stack.url}/v1/things", headers={"Authorization": f"Bearer {other}"})
    assert denied.status_code == 403
    assert denied.json()["message"] == "API key does not have the required permission: things:read"
    # The same key is fine where no scope is required.
    assert (
        httpx.get(
            f"{stack.url}/v1/invoices", headers={"Authorization": f"Bearer {other}"}
        ).status_code
        == 200
    )


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer garbage",
        "Basic Zm9vOmJhcg==",
        "Bearer " + "x" * 3000,
        "Bearer eyJ.eyJ.sig",
        "Bearer aw_live_\u00e9",
    ],
)
def test_bad_input_through_the_proxy_is_a_clean_4xx(stack: Stack, authorization: str) -> None:
    r = httpx.get(f"{stack.url}/v1/things", headers={b"Authorization": authorization.encode()})
    assert r.status_code == 401
    assert json.loads(r.text)["code"] == "UNAUTHORIZED"
    log = stack.error_log.read_text()
    assert "auth request unexpected status" not in log


def test_rate_limits_pass_through_nginx(stack: Stack) -> None:
    auth = {"Authorization": f"Bearer {stack.keys['limited']}"}
    first = httpx.get(f"{stack.url}/v1/things", headers=auth)
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit"] == "2"
    assert first.headers["x-ratelimit-remaining"] == "1"
    assert httpx.get(f"{stack.url}/v1/things", headers=auth).status_code == 200
    limited = httpx.get(f"{stack.url}/v1/things", headers=auth)
    assert limited.status_code == 429
    assert limited.json()["code"] == "RATE_LIMITED"
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert limited.headers["ratelimit-policy"] == '"per-key";q=2;w=60'


def raw_get(stack: Stack, target: str, **headers: str) -> tuple[int, dict[str, str], str]:
    """A request line sent exactly as written (``curl --path-as-is``): no client library
    normalises it first."""
    return raw(stack, "GET", target, **headers)


def raw(stack: Stack, method: str, target: str, **headers: str) -> tuple[int, dict[str, str], str]:
    """``raw_get`` with any method."""
    host, port = stack.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        answer = connection.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read().decode()
    finally:
        connection.close()


def test_every_spelling_of_a_path_is_one_route_to_the_limits(stack: Stack) -> None:
    auth = {"Authorization": f"Bearer {stack.keys['reader']}"}
    spellings = ["/v1/things", "/v1/%74hings", "/v1//things", "/v1/./things", "/v1/x/../things"]
    answers = [raw_get(stack, s, **auth) for s in spellings]
    assert [status for status, _, _ in answers] == [200, 200, 200, 200, 429]
    assert all(h["x-ratelimit-limit"] == "4" for _, h, _ in answers[:4])
    assert [h["x-ratelimit-remaining"] for _, h, _ in answers[:4]] == ["3", "2", "1", "0"]
    assert json.loads(answers[4][2])["message"].startswith(
        "Too many requests: the 'things-route' rate limit"
    )


@pytest.mark.parametrize("target", ["/v1/THINGS", "/v1/%54hings", "/V1/things", "/v1/other"])
def test_paths_no_location_names_are_refused_by_default(stack: Stack, target: str) -> None:
    status, _, body = raw_get(stack, target, Authorization=f"Bearer {stack.keys['reader']}")
    assert status == 404, body
    assert json.loads(body)["code"] == "NOT_FOUND"
    assert '"path"' not in body  # the upstream never answered


def test_a_public_location_needs_no_credential(stack: Stack) -> None:
    status, _, body = raw_get(stack, "/v1/status")
    assert status == 200 and json.loads(body)["path"] == "/v1/status"


def test_a_path_without_one_meaning_is_a_400(stack: Stack) -> None:
    status, _, body = raw_get(
        stack, "/v1/things/%2Fetc", Authorization=f"Bearer {stack.keys['reader']}"
    )
    assert status == 400, body
    assert "original request's path" in json.loads(body)["message"]


# Spellings of /v1/things (and of its neighbours) that some upstream reads as /v1/things,
# each as a client can send it past nginx; the upstream reads every one as permissively
# as upstreams do (upstream.mjs).
SPELLINGS = [
    "/v1/things",
    "/v1/things/",
    "/v1/things/.",
    "/v1/things/./",
    "/v1/things?x=1",
    "/v1/%74hings",
    "/v1/%74%68ings/",
    "/v1//things",
    "/v1/./things",
    "/v1/x/../things",
    "/v1/THINGS",
    "/v1/Things/",
    "/v1/things;x",
    "/v1/things;x/",
    "/v1/things%3Bx",
    "/v1/things%3b",
    "/v1/invoices\\..\\things",
    "/v1/invoices\\..\\things/",
    "/v1/invoices/..\\things",
    "/v1/events\\..\\things",
    "/v1/invoices%5C..%5Cthings",
    "/v1/invoices%5c..%5cthings",
    "/v1/invoices%2F..%2Fthings",
    "/v1/invoices/..%2Fthings",
    "/v1/invoices/%2e%2e/things",
    "/v1/invoices/.%2E/things",
    "/v1/events/%2E%2E/things",
    "/v1/invoices/..;/things",
    "/v1/invoices;/../things",
    "/v1/invoices/x;/../../things",
    "/v1/invoices#/../../things",
    "/v1/invoices%23/../../things",
    "/v1/invoices?/../../things",
    "/v1/invoices/%09../things",
    "/v1/invoices/..%09/things",
    "//v1/things",
    "//upstream.test/v1/things",
    "http://upstream.test/v1/invoices/../things",
    "http://upstream.test/v1/invoices\\..\\things",
    "/v1/things%00",
    "/v1/things%2F",
    "/v1/invoices",
    "/v1/invoices/",
    "/v1/events/1",
]
TABLE_METHODS = ["GET", "POST", "DELETE"]


def served(body: str) -> str | None:
    """The route the upstream served (none: nginx or apiward answered)."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict) or "headers" not in data:
        return None
    route: str | None = data["route"]
    return route or "(no route)"


def through(stack: Stack, method: str, key: str) -> dict[str, tuple[int, str | None]]:
    """Every spelling, sent with ``key``: its status and the route the upstream served."""
    answers = {}
    for target in SPELLINGS:
        status, _, body = raw(stack, method, target, Authorization=f"Bearer {stack.keys[key]}")
        assert status < 500, (target, status, body)
        answers[target] = (status, served(body))
    return answers


@pytest.mark.parametrize("stack", BACKENDS, indirect=True)
@pytest.mark.parametrize("method", TABLE_METHODS)
def test_no_spelling_takes_a_key_to_a_route_its_scopes_do_not_reach(
    stack: Stack, method: str
) -> None:
    """A key holding only invoices:read reaches /v1/invoices, never /v1/things."""
    answers = through(stack, method, "other")
    leaks = {t: a for t, a in answers.items() if a[1] == "/v1/things"}
    assert not leaks
    assert answers["/v1/invoices"] == (200, "/v1/invoices")
    assert answers["/v1/invoices/"] == (200, "/v1/invoices")


@pytest.mark.parametrize("stack", BACKENDS, indirect=True)
@pytest.mark.parametrize("method", TABLE_METHODS)
def test_a_spent_route_limit_stays_spent_for_every_spelling(stack: Stack, method: str) -> None:
    """Once a key spent its limit on /v1/things (the DELETE rule's for DELETE), no
    spelling reaches /v1/things, and the ones that name it are 429, not a 400."""
    auth = {"Authorization": f"Bearer {stack.keys[f'writer-{method}']}"}
    spent = [raw(stack, method, "/v1/things", **auth)[0] for _ in range(5)]
    assert spent == ([200] + [429] * 4 if method == "DELETE" else [200] * 4 + [429])
    answers = through(stack, method, f"writer-{method}")
    leaks = {t: a for t, a in answers.items() if a[1] == "/v1/things"}
    assert not leaks
    same = ["/v1/things/", "/v1/things/.", "/v1/things/./", "/v1/%74hings", "/v1//things"]
    same += ["/v1/./things", "/v1/x/../things", "/v1/things?x=1", "/v1/%74%68ings/"]
    assert {t: answers[t][0] for t in same} == dict.fromkeys(same, 429)


def credits_left(stack: Stack) -> int:
    admin = {"Authorization": f"Bearer {stack.keys['admin']}"}
    key = httpx.get(f"{stack.apiward_url}/v1/keys/{stack.key_ids['metered']}", headers=admin)
    left: int = key.json()["credits"]["remaining"]
    return left


@pytest.mark.parametrize("stack", BACKENDS, indirect=True)
@pytest.mark.parametrize("method", TABLE_METHODS)
def test_every_request_the_upstream_serves_is_charged(stack: Stack, method: str) -> None:
    """A metered key pays one credit for each request that reached the upstream, by
    whatever spelling, and nothing for one that did not (nor for reads of /v1/events,
    which a route rule exempts)."""
    answers = through(stack, method, "metered")
    reached = [route for _, route in answers.values() if route is not None]
    assert "/v1/things" in reached and "/v1/invoices" in reached
    exempt = reached.count("/v1/events") if method == "GET" else 0
    assert credits_left(stack) == CREDITS - len(reached) + exempt


@pytest.mark.parametrize("stack", BACKENDS, indirect=True)
def test_rules_for_some_methods_apply_to_the_clients_method(stack: Stack) -> None:
    """nginx asks apiward with GET; the client's method, in X-Original-Method, is the one
    route rules see: reads of /v1/events are exempt from the key's limit, writes are not,
    and deletes of /v1/things have a limit of their own."""
    auth = {"Authorization": f"Bearer {stack.keys['limited']}"}
    reads = [raw(stack, "GET", "/v1/events/1", **auth)[0] for _ in range(4)]
    writes = [raw(stack, m, "/v1/events/1", **auth)[0] for m in ("POST", "DELETE")]
    assert (reads, writes) == ([200] * 4, [200, 200])
    assert raw(stack, "POST", "/v1/events/1", **auth)[0] == 429
    deleter = {"Authorization": f"Bearer {stack.keys['writer-DELETE']}"}
    deletes = [raw(stack, "DELETE", "/v1/things/", **deleter)[0] for _ in range(2)]
    assert deletes == [200, 429]
    status, _, body = raw(stack, "GET", "/v1/things", **deleter)
    assert (status, json.loads(body)["method"]) == (200, "GET")


IDENTITY = ["Org", "Environment", "Space", "User", "Client", "Scopes", "Credential"]
IDENTITY += ["Credential-Kind", "Api-Version", "External-Id"]


def test_identity_headers_a_client_sends_never_reach_the_upstream(stack: Stack) -> None:
    """apiward sends every identity header, empty without a value, and nginx sets each
    from its answer, so a client's own never passes (an API key has no client)."""
    forged = {f"X-Apiward-{name}": "forged" for name in IDENTITY}
    auth = {"Authorization": f"Bearer {stack.keys['reader']}"}
    status, _, body = raw_get(stack, "/v1/things", **auth, **forged)
    assert status == 200
    seen = json.loads(body)["headers"]
    assert [n for n in IDENTITY if seen.get(f"x-apiward-{n.lower()}") == "forged"] == []
    assert seen["x-apiward-org"] == stack.org_id


@pytest.mark.parametrize("name", ["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"])
def test_a_method_override_never_reaches_the_upstream(stack: Stack, name: str) -> None:
    """Upstreams that honour a method-override header act on its method, which the
    route rules did not judge: a 400, before anything is spent."""
    auth = {"Authorization": f"Bearer {stack.keys['writer-DELETE']}"}
    status, _, body = raw(stack, "POST", "/v1/things", **auth, **{name: "DELETE"})
    assert status == 400, body
    assert "method-override" in json.loads(body)["message"]
    assert raw(stack, "DELETE", "/v1/things", **auth)[0] == 200  # its limit is untouched
