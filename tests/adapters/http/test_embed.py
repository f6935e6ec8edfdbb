"""Embedding: a plain Starlette app protected by ApiwardMiddleware."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from apiward.server import Apiward, ApiwardMiddleware
from tests.conftest import embedded_key, fast_settings, migrated_sqlite


def test_starlette_app_protected_by_middleware(tmp_path: Path) -> None:
    aw = Apiward(
        fast_settings(database_url=migrated_sqlite(tmp_path / "s.db"), error_style="nested")
    )

    async def customers(request: Request) -> JSONResponse:
        principal = request.state.principal
        return JSONResponse({"org": principal.org_id, "scopes": principal.scopes.as_list()})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with aw.running():
            yield

    app = Starlette(
        routes=[Route("/customers", customers), Route("/health", health)], lifespan=lifespan
    )
    app.add_middleware(
        ApiwardMiddleware, apiward=aw, scopes=["customers:read"], public_paths=["/health"]
    )
    with TestClient(app) as client:
        runtime = aw.runtime

        async def keys() -> tuple[str, str, str]:
            boot = await runtime.tenancy.bootstrap("Acme", "o@acme.test", "correct horse battery")
            owner = await runtime.operators.principal(boot.org.id)
            ok = await runtime.keys.create(owner, name="a", scopes=["customers:read"])
            no = await runtime.keys.create(owner, name="b", scopes=["invoices:read"])
            return boot.org.id, ok.plaintext, no.plaintext

        org_id, ok, no = client.portal.call(keys)  # type: ignore[union-attr]
        assert client.get("/health").json() == {"ok": True}
        r = client.get("/customers", headers={"Authorization": f"Bearer {ok}"})
        assert r.json() == {"org": org_id, "scopes": ["customers:read"]}
        missing = client.get("/customers")
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "UNAUTHORIZED"
        forbidden = client.get("/customers", headers={"Authorization": f"Bearer {no}"})
        assert forbidden.status_code == 403
        assert forbidden.json()["error"]["message"].endswith("customers:read")


def test_a_plain_asgi_app_protected_by_middleware(tmp_path: Path) -> None:
    """An ASGI callable that is not Starlette's (no ``scope["app"]``) is protected too:
    refused as ``require()`` refuses, and given the principal in the scope's state."""
    aw = Apiward(fast_settings(database_url=migrated_sqlite(tmp_path / "p.db")))

    async def plain(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            async with aw.running():
                assert (await receive())["type"] == "lifespan.startup"
                await send({"type": "lifespan.startup.complete"})
                assert (await receive())["type"] == "lifespan.shutdown"
            await send({"type": "lifespan.shutdown.complete"})
            return
        org = scope["state"]["principal"].org_id.encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": org})

    with TestClient(ApiwardMiddleware(plain, apiward=aw, scopes=["customers:read"])) as client:
        org_id, plaintext = embedded_key(client, aw.runtime, ["customers:read"])
        allowed = client.get("/anything", headers={"Authorization": f"Bearer {plaintext}"})
        assert (allowed.status_code, allowed.text) == (200, org_id)
        refused = client.get("/anything")
        assert refused.status_code == 401
        assert refused.json()["code"] == "UNAUTHORIZED"
        assert refused.json()["request_id"] == refused.headers["x-request-id"]


def test_a_fastapi_route_behind_require_finds_the_principal_in_request_state(
    tmp_path: Path,
) -> None:
    """``require`` returns the principal and also leaves it where middleware and helpers of
    the host app look (``request.state.principal``), as ``ApiwardMiddleware`` does."""
    from fastapi import FastAPI

    from apiward.server import require

    aw = Apiward(fast_settings(database_url=migrated_sqlite(tmp_path / "s.db")))
    app = FastAPI()
    aw.init_app(app)

    @app.get("/things", dependencies=[require("things:read")])
    async def things(request: Request) -> dict[str, str]:
        return {"org": request.state.principal.org_id}

    with TestClient(app) as client:
        org_id, plaintext = embedded_key(client, aw.runtime, ["things:read"])
        r = client.get("/things", headers={"Authorization": f"Bearer {plaintext}"})
        assert r.status_code == 200
        assert r.json() == {"org": org_id}


def test_init_app_tries_the_apps_own_routes_before_apiwards(tmp_path: Path) -> None:
    """A request for one of the app's routes is matched before apiward's routes are
    tried (they cost their matching on every request otherwise); apiward's still answer."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient as FastAPIClient

    app = FastAPI()
    Apiward(fast_settings(database_url=migrated_sqlite(tmp_path / "o.db"))).init_app(app)

    @app.get("/open")
    async def open_() -> dict[str, bool]:
        return {"ok": True}

    with FastAPIClient(app) as client:
        own = [getattr(r, "path", None) for r in app.router.routes].index("/open")
        included = [i for i, r in enumerate(app.router.routes) if hasattr(r, "original_router")]
        assert included and own < min(included)
        assert client.get("/open").json() == {"ok": True}
        token = client.post("/v1/auth/token", json={"grant_type": "password"})
        assert token.status_code == 400  # apiward's token endpoint, judging the request
        assert client.get("/v1/auth/check").status_code == 401


def test_an_embedded_app_says_which_issuer_it_publishes_unless_told(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Embedded, apiward cannot know the address its host app is served on: without
    APIWARD_PUBLIC_URL it warns which issuer its tokens and OAuth metadata will name."""
    from fastapi import FastAPI

    def start(**settings: str) -> tuple[str, str]:
        app = FastAPI()
        Apiward(
            fast_settings(database_url=migrated_sqlite(tmp_path / "i.db"), **settings)
        ).init_app(app)
        with TestClient(app) as client:
            issuer = client.get("/.well-known/oauth-authorization-server").json()["issuer"]
        return issuer, capsys.readouterr().out

    issuer, logged = start()
    assert issuer == "http://127.0.0.1:8000"
    assert "issuer_not_configured" in logged and "APIWARD_PUBLIC_URL" in logged
    issuer, logged = start(public_url="https://api.example.test")
    assert issuer == "https://api.example.test"
    assert "issuer_not_configured" not in logged


def test_an_app_warns_at_start_of_apiward_variables_it_does_not_know(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi import FastAPI

    monkeypatch.setenv("APIWARD_EROR_STYLE", "nested")
    app = FastAPI()
    Apiward(fast_settings(database_url=migrated_sqlite(tmp_path / "u.db"))).init_app(app)
    with TestClient(app):
        pass
    logged = capsys.readouterr().out
    assert "unknown_setting" in logged and "did you mean APIWARD_ERROR_STYLE?" in logged


def test_authenticate_as_a_dependency_takes_nothing_from_the_client(tmp_path: Path) -> None:
    """``Depends(authenticate)`` (exported beside ``require``) reads the request alone:
    the route, method, counted rule and scopes it judges by are never query parameters
    a client could set, to pass as another route, pick a cheaper limit or dodge a scope
    the route would be counted against."""
    from fastapi import Depends, FastAPI

    from apiward.server import Principal, authenticate

    aw = Apiward(fast_settings(database_url=migrated_sqlite(tmp_path / "d.db")))
    app = FastAPI()
    aw.init_app(app)

    @app.get("/things")
    async def things(principal: Principal = Depends(authenticate)) -> dict[str, str | None]:
        return {"org": principal.org_id, "route": principal.context.route}

    with TestClient(app) as client:
        org_id, plaintext = embedded_key(client, aw.runtime, ["things:read"])
        operation = client.get("/openapi.json").json()["paths"]["/things"]["get"]
        assert operation.get("parameters", []) == []
        assert operation["security"] == [{"bearer": []}]  # as a ``require()`` route's
        asked = client.get(
            "/things?route=/elsewhere&method=DELETE&counted_route=/free&scopes=admin:all",
            headers={"Authorization": f"Bearer {plaintext}"},
        )
        assert asked.status_code == 200, asked.text
        assert asked.json() == {"org": org_id, "route": "/things"}


def test_a_mounted_app_behind_the_middleware_guards_with_the_middlewares_principal(
    tmp_path: Path,
) -> None:
    """A FastAPI app mounted under a host that ``ApiwardMiddleware`` protects: its own
    guards (``Depends(authenticate)``, ``require()`` with a scope) reuse the principal
    the middleware found, and the runtime that found it, though the mounted app
    (``request.app``) holds no runtime of its own. With ``init_app`` on the mounted app
    too, its refusals are apiward's answers, inside the host's one envelope: one request
    id, the one the logs carry."""
    from fastapi import Depends, FastAPI
    from prometheus_client.parser import text_string_to_metric_families
    from starlette.routing import Mount

    from apiward.server import Principal, authenticate, require

    aw = Apiward(fast_settings(database_url=migrated_sqlite(tmp_path / "m.db")))
    sub = FastAPI()
    aw.init_app(sub, auth_routes=False)

    @sub.get("/me")
    async def me(principal: Principal = Depends(authenticate)) -> dict[str, str]:
        return {"org": principal.org_id}

    @sub.get("/things")
    async def things(principal: Principal = require("things:read")) -> dict[str, str]:
        return {"org": principal.org_id}

    @sub.get("/invoices")
    async def invoices(principal: Principal = require("invoices:read")) -> dict[str, str]:
        return {"org": principal.org_id}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with aw.running():
            yield

    host = Starlette(routes=[Mount("/api", app=sub)], lifespan=lifespan)
    host.add_middleware(ApiwardMiddleware, apiward=aw, scopes=["things:read"])
    with TestClient(host) as client:
        org_id, key = embedded_key(client, aw.runtime, ["things:read"])
        bearer = {"Authorization": f"Bearer {key}"}
        for path in ("/api/me", "/api/things"):
            answer = client.get(path, headers=bearer)
            assert answer.status_code == 200, (path, answer.text)
            assert answer.json() == {"org": org_id}
            assert len(answer.headers.get_list("x-request-id")) == 1
        refused = client.get("/api/invoices", headers={**bearer, "X-Request-Id": "req-mounted"})
        assert refused.status_code == 403, refused.text
        assert refused.json()["required_scope"] == "invoices:read"
        assert refused.headers.get_list("x-request-id") == ["req-mounted"]
        assert refused.json()["request_id"] == "req-mounted"
        counted = [
            s.value
            for family in text_string_to_metric_families(aw.runtime.metrics.render().decode())
            for s in family.samples
            if s.name == "apiward_http_requests_total"
        ]
        assert sum(counted) == 3  # each request once, by the host's envelope


def test_a_second_guard_that_refuses_spends_nothing(tmp_path: Path) -> None:
    """A router's ``require()`` admits (and meters) the request, the route's own
    ``require()`` refuses it: what the first spent is given back, once, as for any
    refusal (credits count every give-back; a rate limit stops at full)."""
    from fastapi import APIRouter, FastAPI

    from apiward.core.limits import Credits
    from apiward.server import Principal, require

    limited = [{"name": "per-credential", "rate": "3/minute", "key": "credential"}]
    aw = Apiward(
        fast_settings(database_url=migrated_sqlite(tmp_path / "g.db"), rate_limits=limited)
    )
    app = FastAPI()
    aw.init_app(app)
    router = APIRouter(dependencies=[require("things:read")])

    @router.get("/things")
    async def things() -> dict[str, bool]:
        return {"ok": True}

    @router.get("/invoices")
    async def invoices(principal: Principal = require("invoices:read")) -> dict[str, bool]:
        return {"ok": True}

    app.include_router(router)
    with TestClient(app) as client:
        runtime = aw.runtime

        async def made() -> tuple[Principal, str, str]:
            boot = await runtime.tenancy.bootstrap("Acme", "o@acme.test", "correct horse battery")
            owner = await runtime.operators.principal(boot.org.id)
            key = await runtime.keys.create(
                owner, name="a", scopes=["things:read"], credits=Credits(10)
            )
            return owner, key.key.id, key.plaintext

        async def credits_left(owner: Principal, key_id: str) -> int | None:
            held = (await runtime.keys.get(owner, key_id)).credits
            return held.remaining if held else None

        owner, key_id, key = client.portal.call(made)  # type: ignore[union-attr]
        bearer = {"Authorization": f"Bearer {key}"}
        for _ in range(3):
            refused = client.get("/invoices", headers=bearer)
            assert refused.status_code == 403, refused.text
        assert client.portal.call(credits_left, owner, key_id) == 10  # type: ignore[union-attr]
        statuses = [client.get("/things", headers=bearer).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        assert client.portal.call(credits_left, owner, key_id) == 7  # type: ignore[union-attr]
