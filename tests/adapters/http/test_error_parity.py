"""One way to answer an error: the same refused request gets the same answer from every
door into apiward, under every error style (the four envelopes, and each shipped profile
in docs/profiles with its messages, fields and token style).

The doors: ``require()`` in a FastAPI app, ``ApiwardMiddleware`` in a plain Starlette
app, forward auth (``/v1/auth/check``, and its nginx form, where the body travels in
``X-Apiward-Error``) and the verify API, whose caller is refused as any protected route's
is. Each protects the same scope, so the answers are compared whole: status, body,
the headers that must match, and a request id that is the one in ``X-Request-Id``.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
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
from apiward.adapters.settings import Settings
from apiward.core.models import RateOverride
from apiward.server import Apiward, ApiwardMiddleware, Principal, require
from tests.conftest import fast_settings, migrated_sqlite

PROFILES = Path(__file__).parents[3] / "docs" / "profiles"
ENVELOPES = ["default", "nested", "detail", "problem"]
STYLES = ENVELOPES + sorted(f"profile:{p.stem}" for p in PROFILES.glob("*.toml"))

SCOPE = "keys:verify"
"""What every door protects: the verify API's own scope, so that its caller's refusals
are comparable with the others'."""

COMPARED = (
    "content-type",
    "www-authenticate",
    "retry-after",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "ratelimit-policy",
    "ratelimit",
)
"""The headers that must match (``x-request-id`` is checked apart: it differs)."""

_GENERATED_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class Answer:
    """An answer as compared: the request id set aside once checked, and the numbers
    that move with the clock (a limit's reset, its wait) written ``N``."""

    status: int
    body: str
    headers: tuple[tuple[str, str], ...]


def fastapi_app(aw: Apiward) -> FastAPI:
    app = FastAPI()
    aw.init_app(app)

    @app.get("/things")
    async def things(principal: Principal = require(SCOPE)) -> dict[str, str]:
        return {"org": principal.org_id}

    return app


def starlette_app(aw: Apiward) -> Starlette:
    async def things(request: Request) -> JSONResponse:
        return JSONResponse({"org": request.state.principal.org_id})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with aw.running():
            yield

    app = Starlette(routes=[Route("/things", things)], lifespan=lifespan)
    app.add_middleware(ApiwardMiddleware, apiward=aw, scopes=[SCOPE])
    return app


Door = Callable[[dict[str, str]], httpx.Response]
"""Sends the refused (or allowed) request with these headers through one door."""


@dataclass
class Doors:
    settings: Settings
    keys: dict[str, str]
    """The plaintext of each test key: ``ok``, ``narrow`` (lacks the scope) and
    ``once`` (one request a day)."""
    space: str
    """The organisation's default space (a profile may require the space header)."""
    doors: dict[str, Door]


@pytest.fixture(params=STYLES)
def doors(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Doors]:
    """Every door, each with its own runtime (and limiter) on one store, in one style."""
    style: str = request.param
    overrides: dict[str, Any] = {}
    if style.startswith("profile:"):
        monkeypatch.setenv("APIWARD_CONFIG_FILE", str(PROFILES / f"{style[8:]}.toml"))
    else:
        overrides["error_style"] = style
    url = migrated_sqlite(tmp_path / "parity.db")

    def settings() -> Settings:
        return fast_settings(database_url=url, **overrides)

    with ExitStack() as stack:
        embedded = stack.enter_context(TestClient(fastapi_app(Apiward(settings()))))
        middleware = stack.enter_context(TestClient(starlette_app(Apiward(settings()))))
        check = stack.enter_context(TestClient(create_app(settings())))
        nginx = stack.enter_context(TestClient(create_app(settings())))
        verify = stack.enter_context(TestClient(create_app(settings())))
        keys, space = make_keys(check)
        asked = {"X-Apiward-Require": SCOPE, "X-Original-URI": "/things"}
        yield Doors(
            settings(),
            keys,
            space,
            {
                "require()": lambda h: embedded.get("/things", headers=h),
                "ApiwardMiddleware": lambda h: middleware.get("/things", headers=h),
                "forward auth": lambda h: check.get("/v1/auth/check", headers={**h, **asked}),
                "forward auth, nginx": lambda h: nginx.get(
                    "/v1/auth/check", headers={**h, **asked, "X-Apiward-Proxy": "nginx"}
                ),
                "verify API": lambda h: verify.post(
                    "/v1/keys/verify", headers=h, json={"key": keys["ok"]}
                ),
            },
        )


def make_keys(client: TestClient) -> tuple[dict[str, str], str]:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]

    async def make() -> tuple[dict[str, str], str]:
        boot = await runtime.tenancy.bootstrap("Acme", "o@acme.test", "correct horse battery")
        owner = await runtime.operators.principal(boot.org.id)
        made = {
            "ok": await runtime.keys.create(owner, name="ok", scopes=[SCOPE]),
            "narrow": await runtime.keys.create(owner, name="narrow", scopes=["keys:read"]),
            "once": await runtime.keys.create(
                owner, name="once", scopes=[SCOPE], rate_limits=[RateOverride("daily", "1/day")]
            ),
        }
        return {name: key.plaintext for name, key in made.items()}, boot.space.id

    result: tuple[dict[str, str], str] = client.portal.call(make)  # type: ignore[union-attr]
    return result


def compared(response: httpx.Response) -> Answer:
    """``response`` as compared, once its request id is checked: a real one (made for
    the request, as none was sent), the same in the body as in ``X-Request-Id``. The
    nginx form's answer is read from where it travels (``X-Apiward-Status``,
    ``X-Apiward-Error``): nginx passes only a 401 or a 403 on."""
    request_id = response.headers["x-request-id"]
    assert _GENERATED_ID.match(request_id), request_id
    status, text = response.status_code, response.text
    if "x-apiward-error" in response.headers:
        status = int(response.headers["x-apiward-status"])
        text = response.headers["x-apiward-error"]
        assert response.status_code == (401 if status == 401 else 403), response.headers
    body = json.loads(text)
    inner = body["error"] if isinstance(body.get("error"), dict) else body
    if "request_id" in inner:
        assert inner["request_id"] == request_id, (text, request_id)
    headers = tuple(
        (name, re.sub(r"\d{3,}", "N", response.headers[name]))
        for name in COMPARED
        if name in response.headers
    )
    return Answer(status, re.sub(r"\d{4,}", "N", text.replace(request_id, "<id>")), headers)


def answers(doors: Doors, headers: dict[str, str]) -> dict[str, Answer]:
    """One request's answer from every door, each checked against ``require()``'s."""
    got = {name: compared(door(headers)) for name, door in doors.doors.items()}
    first = got["require()"]
    for name, answer in got.items():
        assert answer == first, (name, answer, first)
    return got


def test_every_door_refuses_alike(doors: Doors) -> None:
    """401 without or with an unknown credential, 403 naming the missing scope, 400 for
    an unknown API version, 429 with its limit headers: one answer from every door."""
    space = {doors.settings.space_header: doors.space}
    bearer = {name: {"Authorization": f"Bearer {key}", **space} for name, key in doors.keys.items()}
    version = {doors.settings.version_header: "1999-01-01"}
    refused = {
        "no credential": ({}, 401),
        "an unknown key": ({"Authorization": "Bearer aw_live_" + "x" * 40}, 401),
        "a missing scope": (bearer["narrow"], 403),
        "an unknown API version": ({**bearer["ok"], **version}, 400),
    }
    for what, (headers, status) in refused.items():
        answer = answers(doors, headers)["require()"]
        assert answer.status == status, (what, answer)
        named = {h for h, _ in answer.headers}
        assert "content-type" in named, (what, answer)
        if status == 401:
            assert "www-authenticate" in named, (what, answer)

    forbidden = json.loads(answers(doors, bearer["narrow"])["ApiwardMiddleware"].body)
    fields = doors.settings.error_fields
    if "detail" not in forbidden and (fields is None or "required_scope" in fields):
        assert forbidden.get("error", forbidden)["required_scope"] == SCOPE, forbidden

    allowed = [door(bearer["once"]).status_code for door in doors.doors.values()]
    assert allowed == [200] * len(doors.doors)  # each door has a limiter of its own
    limited = answers(doors, bearer["once"])["require()"]
    assert limited.status == 429, limited
    named = {h for h, _ in limited.headers}
    assert {"retry-after", "x-ratelimit-limit", "ratelimit", "ratelimit-policy"} <= named


def test_an_embedded_starlette_app_keeps_a_clients_request_id(doors: Doors) -> None:
    """The id a client sent is the one its refusal names, in the header and (where the
    style has room for it) the body, from ``ApiwardMiddleware`` as from ``require()``."""
    sent = {"X-Request-Id": "req-from-client-7"}
    got = [doors.doors[name](sent) for name in ("require()", "ApiwardMiddleware")]
    for answer in got:
        assert answer.status_code == 401
        assert answer.headers["x-request-id"] == "req-from-client-7"
    assert got[0].text == got[1].text
    if doors.settings.error_style != "detail" and "request_id" in (
        doors.settings.error_fields or ["request_id"]
    ):
        assert "req-from-client-7" in got[1].text


def test_the_head_limits_and_their_error_style_travel_to_worker_processes() -> None:
    """``apiward serve --workers`` pickles the connection's head limits for each worker
    process; the error style in them, with a deployment's own messages, comes back equal
    and still read-only."""
    import pickle

    from apiward.adapters.http.protocol import HeadLimits

    settings = fast_settings(
        error_style="nested",
        error_messages={"INVALID_KEY": "Your key is not valid"},
        error_fields=["code", "message"],
    )
    limits = HeadLimits.of(settings)
    back = pickle.loads(pickle.dumps(limits))  # noqa: S301 (its own bytes)
    assert back == limits
    assert back.errors.messages == {"INVALID_KEY": "Your key is not valid"}
    with pytest.raises(TypeError):
        back.errors.messages["INVALID_KEY"] = "changed"
