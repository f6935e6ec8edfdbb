"""A real nginx in front of a small upstream, asking a real apiward on every request.

Runs docs/nginx.conf (with its ports changed), so the documented configuration is the
tested one.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from apiward.adapters.http.app import create_app
from apiward.adapters.runtime import build
from apiward.core.models import RateOverride
from tests.conftest import IN_CI, fast_settings
from tests.live import free_port, serve

DOCS = Path(__file__).parents[3] / "docs"
THINGS_ROUTE = {"name": "things-route", "rate": "4/minute", "key": "credential"}


def nginx_binary() -> str:
    path = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if path is None:
        message = "nginx is not installed; `apt-get install nginx` to run the proxy tests."
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"path": request.url.path, "headers": dict(request.headers)})


@dataclass
class Stack:
    url: str
    keys: dict[str, str]
    org_id: str
    error_log: Path


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    binary = nginx_binary()
    settings = fast_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'n.db'}",
        trusted_proxies=["127.0.0.1/32"],
        rate_limit_routes=[{"route": "/v1/things", "limits": [THINGS_ROUTE]}],
    )

    async def setup() -> tuple[str, dict[str, str]]:
        runtime = build(settings)
        await runtime.start(background=False)
        try:
            boot = await runtime.tenancy.bootstrap("Acme", "o@acme.test", "correct horse battery")
            owner = await runtime.operators.principal(boot.org.id)
            keys = {}
            for name, scopes in {"reader": ["things:read"], "other": ["invoices:read"]}.items():
                keys[name] = (await runtime.keys.create(owner, name=name, scopes=scopes)).plaintext
            limited = await runtime.keys.create(
                owner,
                name="limited",
                scopes=["things:read"],
                rate_limits=[RateOverride("per-key", "2/minute", "credential")],
            )
            keys["limited"] = limited.plaintext
            return boot.org.id, keys
        finally:
            await runtime.stop()

    org_id, keys = asyncio.run(setup())
    upstream = Starlette(routes=[Route("/{path:path}", echo)])
    with serve(create_app(settings)) as apiward_url, serve(upstream) as upstream_url:
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
            [binary, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
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
            yield Stack(f"http://127.0.0.1:{port}", keys, org_id, tmp_path / "error.log")
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
    host, port = stack.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.putrequest("GET", target, skip_accept_encoding=True)
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
