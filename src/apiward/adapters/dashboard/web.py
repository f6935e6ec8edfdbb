"""What every dashboard page shares.

``DashboardRoute`` wraps each page and action: it checks the CSRF token of every POST,
sends people without a session to the sign-in page, turns the services' errors into a
page (never a 500, never JSON) and adds the security headers a dashboard needs
(OWASP Secure Headers): a strict Content-Security-Policy with no inline script or
style, ``frame-ancestors 'none'`` and ``X-Frame-Options: DENY`` against clickjacking,
and ``Cache-Control: no-store`` so that no page, least of all one showing a secret,
is kept by the browser or a proxy.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import jinja2
from fastapi import Depends, Request
from fastapi.routing import APIRoute
from starlette.datastructures import FormData
from starlette.responses import HTMLResponse, RedirectResponse, Response

from apiward import __version__
from apiward.adapters.dashboard import csrf
from apiward.adapters.dashboard.sessions import (
    COOKIE,
    COOKIE_PATH,
    SIGN_IN_COOKIE,
    Sessions,
    SignedIn,
    Visitor,
    new_secret,
    secure_cookies,
)
from apiward.adapters.http.access import PROJECT, SESSION, declare
from apiward.adapters.http.deps import PortalDep, SettingsDep, runtime_of
from apiward.adapters.http.errors import status_of
from apiward.adapters.http.security import request_context
from apiward.adapters.http.state import state_of
from apiward.adapters.settings import Settings
from apiward.core.errors import (
    ApiwardError,
    ExceedsAuthority,
    InsufficientScope,
    InvalidInput,
    ProjectRequired,
    SecondFactorRequired,
    SignInRequired,
)
from apiward.core.models import Account, PageRequest, Principal
from apiward.services.portal import Project

PREFIX = "/dashboard"
PUBLIC_FORMS = frozenset(
    {
        "/login",
        "/login/code",
        "/signup",
        "/forgot",
        "/reset",
        "/confirm/resend",
        "/invitations/accept",
    }
)
"""Forms posted before signing in: their CSRF token comes from the sign-in cookie."""
TEMPLATES = Path(__file__).parent / "templates"

CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}

# (section, path, label, scope needed to read it)
NAVIGATION = (
    ("overview", "/overview", "Overview", ""),
    ("keys", "/keys", "API keys", "keys:read"),
    ("clients", "/clients", "OAuth clients", "clients:read"),
    ("members", "/members", "Members & roles", "users:read"),
    ("usage", "/usage", "Rate limits & usage", "keys:read"),
    ("analytics", "/analytics", "Analytics", "analytics:read"),
    ("audit", "/audit", "Audit log", "audit:read"),
    ("webhooks", "/webhooks", "Webhooks", "webhooks:read"),
)


@dataclass(frozen=True, slots=True)
class Flash:
    """A message at the top of a page: ``kind`` is ``success`` or ``error``."""

    kind: str
    text: str

    @classmethod
    def error(cls, exc: ApiwardError) -> Flash:
        return cls("error", exc.message)


class FieldErrors:
    """A form's errors: each field's own message, shown next to it, and one for the
    whole form (a change refused as a whole), shown above it."""

    def __init__(self) -> None:
        self.fields: dict[str, str] = {}
        self.form: str | None = None

    @contextlib.contextmanager
    def on(self, field: str) -> Iterator[None]:
        """Record the invalid input the block raises as ``field``'s error (its first)."""
        try:
            yield
        except InvalidInput as exc:
            self.fields.setdefault(field, exc.message)

    def add(self, exc: ApiwardError) -> None:
        """A refusal of the whole change; one because the scopes would hold what their
        author does not (``ExceedsAuthority`` naming a scope) is the scopes field's."""
        if isinstance(exc, ExceedsAuthority) and exc.scope is not None:
            self.fields.setdefault("scopes", exc.message)
        else:
            self.form = exc.message

    def get(self, field: str) -> str | None:
        return self.fields.get(field)

    def __bool__(self) -> bool:
        return bool(self.fields or self.form)

    def flash(self) -> Flash:
        if self.form:
            return Flash("error", self.form)
        n = len(self.fields)
        return Flash(
            "error",
            "Correct the field marked below."
            if n == 1
            else f"Correct the {n} fields marked below.",
        )


@dataclass(frozen=True, slots=True)
class Me:
    """The signed-in person, the project and environment the page shows, their projects
    (a portal account's) and their form token."""

    visitor: Visitor
    csrf: str
    env: str
    environments: tuple[str, ...]
    projects: tuple[Project, ...] = ()

    @property
    def account(self) -> Account | None:
        return self.visitor.account

    @property
    def in_project(self) -> bool:
        return self.visitor.signed is not None

    @property
    def signed(self) -> SignedIn:
        if self.visitor.signed is None:
            raise ProjectRequired()
        return self.visitor.signed

    @property
    def principal(self) -> Principal:
        return self.signed.principal

    def can(self, scope: str) -> bool:
        """Whether the user's role grants ``scope`` here ("": whether they are in a project)."""
        return self.in_project and (not scope or self.principal.grants(scope))

    def require(self, scope: str) -> None:
        """The scope the HTTP route for this action requires, or a 403 page."""
        if not self.can(scope):
            raise InsufficientScope(scope, subject="Your role")


def url(path: str, **query: object) -> str:
    """A dashboard URL; query values that are None or empty are left out."""
    params = {k: str(v) for k, v in query.items() if v not in (None, "")}
    return PREFIX + path + ("?" + urlencode(params) if params else "")


def api_base(request: Request) -> str:
    """Where the API is reached, for the commands a page shows: ``APIWARD_PUBLIC_URL``,
    else the address this page was reached at."""
    settings = runtime_of(request).settings
    return (settings.public_url or str(request.base_url)).rstrip("/")


def page_url(request: Request, page: int) -> str:
    """This page's URL at another page number (filters kept, notices dropped)."""
    params = {k: v for k, v in request.query_params.items() if k not in ("page", "done")}
    params["page"] = str(page)
    return request.url.path + "?" + urlencode(params)


def _ago(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "never"
    seconds = int((now - value).total_seconds())
    future = seconds < 0
    seconds = abs(seconds)
    for size, unit in ((86400 * 365, "year"), (86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            n = seconds // size
            text = f"{n} {unit}{'s' if n != 1 else ''}"
            return f"in {text}" if future else f"{text} ago"
    return "in a moment" if future else "just now"


def _credential(value: str | None) -> str:
    """How an audited action was taken: a dashboard session, the CLI, a key or client."""
    if not value:
        return ""
    if value.startswith("ses_"):
        return "in the dashboard"
    if value == "cli":
        return "with the CLI"
    return f"with {value}"


def _utc(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


def _period(seconds: float) -> str:
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return unit if n == 1 else f"{n} {unit}s"
    return f"{seconds:g} seconds"


@functools.cache
def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["ago"] = _ago
    env.filters["utc"] = _utc
    env.filters["period"] = _period
    env.filters["credential"] = _credential
    env.globals["url"] = url
    env.globals["page_url"] = page_url
    env.globals["version"] = __version__
    return env


def render(
    request: Request,
    template: str,
    *,
    status: int = 200,
    flash: Flash | None = None,
    **context: Any,
) -> HTMLResponse:
    runtime = runtime_of(request)  # pages are also drawn outside the handlers (error pages)
    me = state_of(request).dashboard_me
    nav = [
        (section, PREFIX + path, label)
        for section, path, label, scope in NAVIGATION
        if me is not None and me.can(scope)
    ]
    html = (
        templates()
        .get_template(template)
        .render(
            request=request,
            me=me,
            nav=nav,
            flash=flash,
            now=runtime.clock.now(),
            platform=runtime.settings.platform_name,
            **context,
        )
    )
    return HTMLResponse(html, status_code=status)


def public_page(
    request: Request,
    template: str,
    *,
    status: int = 200,
    flash: Flash | None = None,
    **context: Any,
) -> Response:
    """A page for people not signed in (sign-in, sign-up, password reset...): its forms
    carry the token of the sign-in cookie, set here when the browser has none."""
    settings = runtime_of(request).settings
    state_of(request).dashboard_me = None  # drawn as a card, even for someone signed in
    secret = request.cookies.get(SIGN_IN_COOKIE) or new_secret()
    insecure = request.url.scheme == "http" and secure_cookies(request, settings)
    response = render(
        request,
        template,
        status=status,
        flash=flash,
        csrf=csrf.token_for(secret),
        insecure=insecure,
        signup=settings.signup_enabled,
        **context,
    )
    if SIGN_IN_COOKIE not in request.cookies:
        response.set_cookie(
            SIGN_IN_COOKIE,
            secret,
            path=COOKIE_PATH,
            httponly=True,
            samesite="strict",
            secure=secure_cookies(request, settings),
        )
    return response


def set_session_cookie(
    request: Request, response: Response, cookie: str, settings: Settings
) -> None:
    """Hand the browser its session cookie, and drop the sign-in form's cookie."""
    secure = secure_cookies(request, settings)
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=settings.session_ttl_seconds,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=secure,
    )
    response.delete_cookie(SIGN_IN_COOKIE, path=COOKIE_PATH, httponly=True, secure=secure)


def see_other(target: str) -> RedirectResponse:
    """The answer to a successful POST (Post/Redirect/Get)."""
    return RedirectResponse(target, status_code=303)


def secured(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _sign_in_target(request: Request) -> str:
    target = request.url.path
    if request.method == "GET" and request.url.query:
        target += "?" + request.url.query
    return url("/login", next=target if request.method == "GET" else None)


def error_page(request: Request, exc: ApiwardError) -> Response:
    status = status_of(exc)
    return render(
        request,
        "error.html",
        status=500 if status >= 500 else status,
        error=exc,
        title={403: "Not allowed", 404: "Not found"}.get(status, "Something is not right"),
    )


class DashboardRoute(APIRoute):
    """Every dashboard route: CSRF on POST, sign-in redirects, error pages, headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        public_form = self.path.removeprefix(PREFIX) in PUBLIC_FORMS

        async def route(request: Request) -> Response:
            try:
                if request.method == "POST":
                    form = await request.form()
                    if public_form:
                        cookies = (request.cookies.get(SIGN_IN_COOKIE), request.cookies.get(COOKIE))
                        csrf.check_any(cookies, form.get("csrf"))
                    else:
                        csrf.check(request.cookies.get(COOKIE), form.get("csrf"))
                response = await handle(request)
            except SignInRequired:
                response = see_other(_sign_in_target(request))
            except ProjectRequired:
                response = see_other(url("/projects"))
            except SecondFactorRequired:
                response = see_other(url("/account", done="mfa_required"))
            except ApiwardError as exc:
                response = error_page(request, exc)
            return secured(response)

        return route


def environment_of(request: Request, settings: Settings, form: FormData | None = None) -> str:
    """The environment a page or action is about: ``env`` of the form or the query."""
    environments = settings.environments
    wanted = (form.get("env") if form is not None else None) or request.query_params.get("env")
    return wanted if isinstance(wanted, str) and wanted in environments else environments[0]


async def sessions_of(request: Request) -> Sessions:
    """The dashboard's sessions, over the app's runtime."""
    return Sessions(runtime_of(request))


SessionsDep = Annotated[Sessions, Depends(sessions_of)]


@declare(SESSION)
async def visiting(
    request: Request, settings: SettingsDep, sessions: SessionsDep, portal: PortalDep
) -> Me:
    """The dependency of the pages of a signed-in person, with a project open or not."""
    form = await request.form() if request.method == "POST" else None
    env = environment_of(request, settings, form)
    cookie = request.cookies.get(COOKIE)
    visitor = await sessions.resolve(cookie, request_context(request), env)
    if visitor is None or cookie is None:
        raise SignInRequired()
    projects = await portal.projects(visitor.account) if visitor.account else []
    me = Me(visitor, csrf.token_for(cookie), env, settings.environments, tuple(projects))
    state_of(request).dashboard_me = me
    await _second_factor_required(request, visitor)
    return me


_MFA_EXEMPT = ("/account", "/logout", "/projects")
"""Pages open to someone their organisation requires a second factor of, without one:
setting it up, signing out, and going to another project."""


async def _second_factor_required(request: Request, visitor: Visitor) -> None:
    """``SecondFactorRequired`` for a member of an organisation that requires a second
    factor, who has none, on any page but those of ``_MFA_EXEMPT``."""
    signed = visitor.signed
    if signed is None or not signed.org.require_mfa:
        return
    if request.url.path.removeprefix(PREFIX).startswith(_MFA_EXEMPT):
        return
    owner_id = visitor.account.id if visitor.account is not None else signed.user.id
    if not await runtime_of(request).two_factor.enabled(owner_id):
        raise SecondFactorRequired()


@declare(PROJECT)
async def signed_in(me: Annotated[Me, Depends(visiting)]) -> Me:
    """The dependency of every page of a project (keys, clients, members...)."""
    me.signed  # noqa: B018 - raises ProjectRequired when no project is open
    return me


def text(form: Mapping[str, Any], name: str, limit: int = 200) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def whole_number(value: str, maximum: int) -> int | None:
    """A form's whole number from 0 to ``maximum`` in ASCII digits, or None (``str.isdigit``
    also accepts '²' and '٣', which ``int`` reads oddly or not at all)."""
    if not value or len(value) > len(str(maximum)) or not value.isascii() or not value.isdigit():
        return None
    number = int(value)
    return number if number <= maximum else None


def words(value: str) -> list[str]:
    """Items separated by commas, spaces or new lines (scopes, CIDR blocks)."""
    return [w for w in value.replace(",", " ").split() if w]


def chosen(form: FormData, name: str) -> list[str]:
    return [v.strip() for v in form.getlist(name) if isinstance(v, str) and v.strip()]


def paging(request: Request, size: int = 25) -> PageRequest:
    raw = request.query_params.get("page", "1")
    page = whole_number(raw, 100_000) or 1
    return PageRequest(page=page, page_size=size)


def notice(request: Request, messages: Mapping[str, str]) -> Flash | None:
    """The success message a redirect asked for, from a fixed list (no echoed text)."""
    text_ = messages.get(request.query_params.get("done", ""))
    return Flash("success", text_) if text_ else None


def quoted(value: str) -> str:
    return quote(value, safe="")
