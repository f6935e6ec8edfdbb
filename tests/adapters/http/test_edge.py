"""The edge (``apiward.adapters.http.edge``): what the fast paths must never change."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import Depends, FastAPI, HTTPException
from fastapi.testclient import TestClient
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from apiward.adapters.http.app import create_app
from apiward.server import Apiward
from tests.conftest import Org, bootstrap, fast_settings

APIWARD_PATHS = [
    ("POST", "/v1/auth/token"),
    ("POST", "/v1/auth/refresh"),
    ("GET", "/v1/auth/check"),
    ("POST", "/v1/keys/verify"),
]


class Wall:
    """A host app's own middleware that refuses every request (an IP allow-list, say)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await JSONResponse({"wall": True}, status_code=403)(scope, receive, send)


def _refused() -> None:
    raise HTTPException(403, "the host app refuses")


def hosts(tmp_path: Path) -> Iterator[tuple[str, FastAPI]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'h.db'}"
    embedded = FastAPI()
    Apiward(fast_settings(database_url=url)).init_app(embedded, management_routes=True)
    embedded.add_middleware(Wall)
    yield "embedded, middleware after init_app", embedded
    before = FastAPI()
    before.add_middleware(Wall)
    Apiward(fast_settings(database_url=url)).init_app(before, management_routes=True)
    yield "embedded, middleware before init_app", before
    guarded = FastAPI(dependencies=[Depends(_refused)])
    Apiward(fast_settings(database_url=url)).init_app(guarded, management_routes=True)
    yield "embedded, an app-wide dependency", guarded
    server = create_app(fast_settings(database_url=url))
    server.add_middleware(Wall)
    yield "the server app, with middleware added", server


@pytest.mark.parametrize(("method", "path"), APIWARD_PATHS)
def test_the_host_apps_own_refusals_still_apply_to_apiwards_paths(
    tmp_path: Path, method: str, path: str
) -> None:
    """A fast path never passes over what the app put in front of its routes: with the
    app's own middleware or app-wide dependencies, apiward's routes answer, inside them."""
    for name, app in hosts(tmp_path):
        with TestClient(app) as client:
            r = client.request(method, path, json={"key": "x"})
            assert r.status_code == 403, (name, r.status_code, r.text)


def test_deeply_nested_json_to_verify_is_a_400_not_a_500(org: Org) -> None:
    verifier = org.create_key(["keys:verify"])["key"]
    for body in (b"[" * 5000, b'{"key": ' + b"[" * 5000):
        r = org.client.post(
            "/v1/keys/verify",
            headers={**org.headers(verifier), "Content-Type": "application/json"},
            content=body,
        )
        assert r.status_code in (400, 422), r.status_code
        assert "request_id" in r.json()


def test_a_client_gone_mid_body_is_not_a_server_error(org: Org) -> None:
    """A verify request whose client disconnects before its body ends is answered as the
    route answers it (nothing is a 5xx in the metrics)."""
    app: Any = org.client.app
    sent: list[dict[str, Any]] = []
    messages = iter([{"type": "http.request", "body": b'{"key":', "more_body": True}])

    async def receive() -> dict[str, Any]:
        return next(messages, {"type": "http.disconnect"})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/keys/verify",
        "raw_path": b"/v1/keys/verify",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), *_auth(org)],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
        "state": {},
    }
    org.client.portal.call(app, scope, receive, send)  # type: ignore[union-attr]
    metrics = org.client.get("/metrics").text
    five_hundreds = [
        line
        for line in metrics.splitlines()
        if line.startswith("apiward_http_requests_total") and 'status="5' in line
    ]
    assert five_hundreds == []


def _auth(org: Org) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {org.owner_key}".encode())]


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[Org]:
    settings = fast_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", trusted_proxies=["127.0.0.0/8"]
    )
    app = create_app(settings)
    with TestClient(app, client=("127.0.0.1", 5000)) as client:
        yield bootstrap(client)


@pytest.mark.parametrize("path", ["/v1/auth/check", "/v1/keys"])
def test_forwarded_for_in_several_lines_is_read_as_one_list(proxied: Org, path: str) -> None:
    """A proxy that adds its own X-Forwarded-For line after the client's (RFC 9110
    section 5.3: the lines are one comma-separated list, in order) is believed for its
    line: the client's own first line does not pass a key's address allow-list."""
    key = proxied.create_key(["keys:read"], ip_allow=["1.2.3.4/32"])["key"]
    auth = ("authorization", f"Bearer {key}")
    allowed = proxied.client.get(path, headers=[auth, ("x-forwarded-for", "1.2.3.4")])
    assert allowed.status_code == 200
    spoofed = [auth, ("x-forwarded-for", "1.2.3.4"), ("x-forwarded-for", "6.6.6.6")]
    refused = proxied.client.get(path, headers=spoofed)
    assert refused.status_code == 403, refused.text


def test_a_check_before_the_lifespan_started_is_a_503(tmp_path: Path) -> None:
    """An app called without its lifespan (no runtime yet) answers forward auth with a
    clear 503 in the deployment's error shape, on the fast path and through its query."""
    app = create_app(fast_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'n.db'}"))
    client = TestClient(app, raise_server_exceptions=False)  # not entered: no lifespan
    for path in ("/v1/auth/check", "/v1/auth/check?scope=a:b"):
        r = client.get(path)
        assert r.status_code == 503, (path, r.status_code, r.text)
        assert "not running" in r.json()["message"]
        assert r.headers["retry-after"] == "1"
