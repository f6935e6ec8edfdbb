"""One way to answer an error: the same refused request gets the same answer (status,
body, headers, request id) from ``require()`` in a FastAPI app, from
``ApiwardMiddleware`` in a plain Starlette app and from forward auth asked for the same
scope, under every error style."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from apiward.adapters.http.app import create_app
from apiward.core.models import RateOverride
from apiward.server import Apiward, ApiwardMiddleware, Principal, require
from tests.conftest import fast_settings

STYLES = ["default", "nested", "detail", "problem"]
COMPARED = ("content-type", "www-authenticate", "retry-after", "x-ratelimit-limit")
"""The headers an answer is compared by (besides ``x-request-id``, checked apart)."""


def fastapi_app(aw: Apiward) -> FastAPI:
    app = FastAPI()
    aw.init_app(app)

    @app.get("/customers")
    async def customers(principal: Principal = require("customers:read")) -> dict[str, str]:
        return {"org": principal.org_id}

    return app


def starlette_app(aw: Apiward) -> Starlette:
    async def customers(request: Request) -> JSONResponse:
        return JSONResponse({"org": request.state.principal.org_id})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with aw.running():
            yield

    app = Starlette(routes=[Route("/customers", customers)], lifespan=lifespan)
    app.add_middleware(ApiwardMiddleware, apiward=aw, scopes=["customers:read"])
    return app


@pytest.fixture(params=STYLES)
def clients(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[TestClient]]:
    """Both apps on one store, in the deployment's error style."""

    def settings() -> Any:
        return fast_settings(
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'one.db'}",
            error_style=request.param,
        )

    with ExitStack() as stack:
        first = stack.enter_context(TestClient(fastapi_app(Apiward(settings()))))
        second = stack.enter_context(TestClient(starlette_app(Apiward(settings()))))
        third = stack.enter_context(TestClient(create_app(settings())))
        yield [first, second, third]


def ask(client: TestClient, headers: dict[str, str]) -> httpx.Response:
    """``GET /customers`` of the protected app, or forward auth's check of it."""
    response: httpx.Response
    if isinstance(client.app, FastAPI) and client.app.title != "FastAPI":  # create_app's
        required = {"X-Apiward-Require": "customers:read", "X-Original-URI": "/customers"}
        response = client.get("/v1/auth/check", headers={**headers, **required})
    else:
        response = client.get("/customers", headers=headers)
    return response


def keys(client: TestClient) -> dict[str, str]:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]

    async def make() -> dict[str, str]:
        boot = await runtime.tenancy.bootstrap("Acme", "o@acme.test", "correct horse battery")
        owner = await runtime.operators.principal(boot.org.id)
        made = {
            "ok": await runtime.keys.create(owner, name="ok", scopes=["customers:read"]),
            "narrow": await runtime.keys.create(owner, name="narrow", scopes=["invoices:read"]),
            "once": await runtime.keys.create(
                owner,
                name="once",
                scopes=["customers:read"],
                rate_limits=[RateOverride("daily", "1/day")],
            ),
        }
        return {name: key.plaintext for name, key in made.items()}

    result: dict[str, str] = client.portal.call(make)  # type: ignore[union-attr]
    return result


def compared(response: httpx.Response) -> tuple[int, Any, dict[str, str]]:
    """An answer with its request id checked against its header and then set aside, and
    the seconds of a rate limit's wait rounded away (the two apps answer a moment apart)."""
    request_id = response.headers["x-request-id"]
    body = response.json()
    text = re.sub(r"\d{4,}", "N", response.text.replace(request_id, "<id>"))
    assert request_id in response.text or "request_id" not in text, response.text
    headers = {k: response.headers[k] for k in COMPARED if k in response.headers}
    if "retry-after" in headers:
        assert int(headers.pop("retry-after")) > 80_000, response.headers
    assert body  # a body in every style
    return response.status_code, text, headers


def test_require_and_the_middleware_refuse_alike(clients: list[TestClient]) -> None:
    plaintext = keys(clients[0])
    bearer = {name: {"Authorization": f"Bearer {key}"} for name, key in plaintext.items()}
    refused = {
        "no credentials": ({}, 401),
        "an unknown key": ({"Authorization": "Bearer aw_live_" + "x" * 40}, 401),
        "a missing scope": (bearer["narrow"], 403),
        "an unknown API version": ({**bearer["ok"], "Apiward-Version": "1999-01-01"}, 400),
    }
    for what, (headers, status) in refused.items():
        answers = [compared(ask(c, headers)) for c in clients]
        assert answers[0][0] == status, (what, answers[0])
        assert answers[0] == answers[1] == answers[2], what
    forbidden = clients[1].get("/customers", headers=bearer["narrow"]).json()
    if forbidden.keys() != {"detail"}:  # the one style without room for it
        assert forbidden.get("error", forbidden)["required_scope"] == "customers:read"

    for client in clients:  # each app has its own limiter: one request a day each
        assert ask(client, bearer["once"]).status_code == 200
    limited = [compared(ask(c, bearer["once"])) for c in clients]
    assert limited[0][0] == 429
    assert limited[0] == limited[1] == limited[2]


def test_the_middleware_keeps_a_clients_request_id_and_echoes_it(
    clients: list[TestClient],
) -> None:
    starlette = clients[1]
    answer = starlette.get("/customers", headers={"X-Request-Id": "req-from-client-7"})
    assert answer.status_code == 401
    assert answer.headers["x-request-id"] == "req-from-client-7"
    assert "req-from-client-7" in answer.text or answer.json().keys() == {"detail"}
