"""The dashboard's router: signing in and out, static files, and every page's routes."""

from __future__ import annotations

import functools
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from starlette.responses import RedirectResponse, Response

from apiward.adapters.dashboard import (
    analytics,
    audit,
    client_page,
    clients,
    key_page,
    keys,
    members,
    overview,
    portal,
    usage,
    webhooks,
)
from apiward.adapters.dashboard.sessions import (
    COOKIE,
    COOKIE_PATH,
    MFA_COOKIE,
    PENDING_SECONDS,
    SecondStep,
    secure_cookies,
)
from apiward.adapters.dashboard.web import (
    PREFIX,
    DashboardRoute,
    Flash,
    Me,
    SessionsDep,
    error_page,
    notice,
    public_page,
    see_other,
    set_session_cookie,
    text,
    url,
    visiting,
)
from apiward.adapters.http.access import PUBLIC, declare
from apiward.adapters.http.deps import SettingsDep
from apiward.adapters.http.errors import status_of
from apiward.adapters.http.security import request_context
from apiward.adapters.settings import Settings
from apiward.core.errors import ApiwardError, ConfirmFirst, NotFound, SignInExpired

STATIC = Path(__file__).parent / "static"
_STATIC_TYPES = {
    "dashboard.css": "text/css",
    "dashboard.js": "text/javascript",
    "favicon.svg": "image/svg+xml",
}
NOTICES = {
    "signed_out": "You have signed out.",
    "confirmed": "Your email address is confirmed. Sign in to create your first project.",
    "password_reset": "Your password is changed and every session signed out. Sign in with "
    "the new password.",
}

router = APIRouter(prefix=PREFIX, route_class=DashboardRoute, include_in_schema=False)


def _next(target: str) -> str:
    """Where to go after signing in: a dashboard page, never another site."""
    if (
        target.startswith(PREFIX + "/")
        and not target.startswith("//")
        and "\\" not in target
        and target.isprintable()
    ):
        return target
    return url("/overview")


@router.get("")
@declare(PUBLIC)
async def home() -> RedirectResponse:
    return see_other(url("/overview"))


def _login_page(
    request: Request, *, status: int = 200, flash: Flash | None = None, **values: str
) -> Response:
    return public_page(
        request,
        "login.html",
        status=status,
        flash=flash or notice(request, NOTICES),
        email=values.get("email", ""),
        org_id=values.get("org_id", ""),
        unconfirmed=values.get("unconfirmed", ""),
        next=_next(values.get("next") or request.query_params.get("next", "")),
    )


@router.get("/login")
@declare(PUBLIC)
async def login_form(request: Request, settings: SettingsDep, sessions: SessionsDep) -> Response:
    cookie = request.cookies.get(COOKIE)
    env = settings.environments[0]
    if cookie and await sessions.resolve(cookie, request_context(request), env):
        return see_other(_next(request.query_params.get("next", "")))
    return _login_page(request)


@router.post("/login")
@declare(PUBLIC)
async def login(request: Request, settings: SettingsDep, sessions: SessionsDep) -> Response:
    form = await request.form()
    email = text(form, "email", 254)
    org_id = text(form, "org_id", 64)
    next_ = _next(text(form, "next", 2000))
    try:
        opened = await sessions.sign_in(
            email,
            text(form, "password", 1024),
            request_context(request),
            org_id=org_id or None,
        )
    except ApiwardError as exc:
        return _login_page(
            request,
            status=status_of(exc),
            flash=Flash.error(exc),
            email=email,
            org_id=org_id,
            unconfirmed=exc.email if isinstance(exc, ConfirmFirst) else "",
            next=next_,
        )
    if isinstance(opened, SecondStep):
        # The password is right; no session until the authenticator's code is too.
        response = see_other(url("/login/code", next=next_))
        response.set_cookie(
            MFA_COOKIE,
            opened.cookie,
            max_age=PENDING_SECONDS,
            path=COOKIE_PATH,
            httponly=True,
            samesite="strict",
            secure=secure_cookies(request, settings),
        )
        return response
    response = see_other(next_)
    set_session_cookie(request, response, opened[0], settings)
    return response


def _code_page(request: Request, *, status: int = 200, flash: Flash | None = None) -> Response:
    return public_page(
        request,
        "login_code.html",
        status=status,
        flash=flash,
        next=_next(request.query_params.get("next", "")),
    )


def _expired(request: Request, settings: Settings) -> Response:
    response = _login_page(request, status=401, flash=Flash.error(SignInExpired()))
    _drop_pending(request, response, settings)
    return response


def _drop_pending(request: Request, response: Response, settings: Settings) -> None:
    response.delete_cookie(
        MFA_COOKIE, path=COOKIE_PATH, httponly=True, secure=secure_cookies(request, settings)
    )


@router.get("/login/code")
@declare(PUBLIC)
async def login_code_form(
    request: Request, settings: SettingsDep, sessions: SessionsDep
) -> Response:
    if await sessions.pending(request.cookies.get(MFA_COOKIE)) is None:
        return _expired(request, settings)
    return _code_page(request)


@router.post("/login/code")
@declare(PUBLIC)
async def login_code(request: Request, settings: SettingsDep, sessions: SessionsDep) -> Response:
    form = await request.form()
    try:
        cookie, _ = await sessions.second_step(
            request.cookies.get(MFA_COOKIE), text(form, "code", 64), request_context(request)
        )
    except SignInExpired:
        return _expired(request, settings)
    except ApiwardError as exc:
        return _code_page(request, status=status_of(exc), flash=Flash.error(exc))
    response = see_other(_next(text(form, "next", 2000)))
    set_session_cookie(request, response, cookie, settings)
    _drop_pending(request, response, settings)
    return response


@router.post("/logout")
async def logout(
    request: Request, settings: SettingsDep, sessions: SessionsDep, me: Me = Depends(visiting)
) -> Response:
    await sessions.sign_out(me.visitor, request_context(request))
    response = see_other(url("/login", done="signed_out"))
    response.delete_cookie(
        COOKIE, path=COOKIE_PATH, httponly=True, secure=secure_cookies(request, settings)
    )
    return response


@functools.cache
def _static(name: str) -> bytes:
    return (STATIC / name).read_bytes()


@router.get("/static/{name}")
@declare(PUBLIC)
async def static(name: str) -> Response:
    media_type = _STATIC_TYPES.get(name)
    if media_type is None:
        return Response("Not found", status_code=404, media_type="text/plain")
    return Response(
        _static(name), media_type=media_type, headers={"Cache-Control": "public, max-age=3600"}
    )


PAGES = (
    overview,
    keys,
    key_page,
    clients,
    client_page,
    members,
    usage,
    analytics,
    audit,
    webhooks,
    portal,
)
"""In this order: ``/keys/new`` before ``/keys/{key_id}``, and so on."""
for module in PAGES:
    router.include_router(module.router)


@router.api_route("/{rest:path}", methods=["GET", "HEAD"])
@declare(PUBLIC)
async def unknown(request: Request) -> Response:
    """An address under the dashboard that is no page: the dashboard's 404 page (an
    answer in the API's JSON would be a dead end in a browser). Registered last, after
    every page."""
    missing = NotFound("page", "", message="There is no dashboard page at this address.")
    return error_page(request, missing)
