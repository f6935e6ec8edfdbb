"""``/v1/auth/check``: the forward-auth decision for nginx, Traefik and Envoy.

The proxy sends the client's request headers here before forwarding it. apiward answers
200 with identity headers for the upstream, or the same 401/403/429 a protected route
would give, body and headers included (Traefik ``ForwardAuth`` and Envoy ``ext_authz``
pass those to the client as they are).

nginx's ``auth_request`` passes only 2xx, 401 and 403 through and turns anything else
into a 500, and never shows the subrequest's body. A proxy that says
``X-Apiward-Proxy: nginx`` therefore gets every refusal as 401 or 403, with the real
status in ``X-Apiward-Status`` and the error body in ``X-Apiward-Error``, which the
nginx configuration in the README turns back into the client's answer.

The original request's path and method are read from the headers the declared proxy
(``APIWARD_FORWARD_AUTH_PROXY``) sets, and made canonical (``apiward.core.paths``) before
route rules apply. Envoy sets none: its ``ext_authz`` asks with the client's method, at
its ``path_prefix`` followed by the client's request target, so under ``envoy`` the
check is also served at ``/v1/auth/check/{path}`` and the original path is what follows
``/v1/auth/check`` in the check's own path, as received. The scopes a location needs
come from the proxy, in ``X-Apiward-Require`` (space or comma separated; every line
counts) or the ``scope`` query parameter of ``/v1/auth/check`` (never of
``/v1/auth/check/{path}``, whose query is the client's). The contract is written down in
docs/forward-auth.md.
"""

from __future__ import annotations

from typing import NamedTuple

from fastapi import APIRouter, Query, Request, Response
from starlette.convertors import Convertor, register_url_convertor
from starlette.types import ASGIApp, Receive, Scope, Send

from apiward.adapters.http import errors
from apiward.adapters.http.access import CHECKED, declare
from apiward.adapters.http.context import AUTHORIZATION, Heard, Reading, context_of, hear
from apiward.adapters.http.deps import LimitsDep, SettingsDep, runtime_in
from apiward.adapters.http.edge import header
from apiward.adapters.http.security import authenticate_for, remember
from apiward.adapters.http.state import state_of
from apiward.adapters.runtime import Runtime
from apiward.adapters.settings import Settings
from apiward.core.errors import ApiwardError, InvalidInput
from apiward.core.models import Principal
from apiward.core.owners import header_value
from apiward.core.paths import canonical, original_method
from apiward.core.scopes import parse
from apiward.services.limiting import RequestLimits

router = APIRouter(tags=["Forward auth"])

REQUIRE_HEADER = "x-apiward-require"
REPORT_HEADER = "x-apiward-require-report"
"""Scopes required in report mode: a request lacking one is admitted, and counted as
what the requirement would refuse (``WOULD_REFUSE``). Renaming the header to
``X-Apiward-Require`` enforces them."""
PROXY_HEADER = "x-apiward-proxy"
# A proxy may ask with any method (Envoy asks with the client's own).
OTHER_METHODS = ["HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
METHODS = frozenset({"GET", *OTHER_METHODS})
PATH = "/v1/auth/check"
ENVOY_PREFIX = PATH + "/"
"""Under ``envoy``: the check of the original path that follows ``PATH``."""
MAX_SCOPES = 20


def identity_headers(
    principal: Principal, meta_headers: tuple[tuple[str, str], ...] = ()
) -> dict[str, str]:
    """What the upstream learns about the caller (never the credential itself): every
    header, empty when there is no value, so that the proxy overwrites each one the
    client sent under the same name (Envoy forwards a client's header the answer lacks).

    ``meta_headers`` (``Settings.forward_meta_headers``) names the credential's ``meta``
    fields to send, each in its header, percent-encoded (``apiward.core.owners``): no
    value a tenant sets can break a header or forge another one. ``external_id`` needs
    no encoding, being visible ASCII only."""
    headers = {
        "X-Apiward-Org": principal.org_id,
        "X-Apiward-Environment": principal.environment,
        "X-Apiward-Space": principal.space_id or "",
        "X-Apiward-User": principal.user_id or "",
        "X-Apiward-Client": principal.client_id or "",
        "X-Apiward-Scopes": " ".join(principal.scopes),
        "X-Apiward-Credential": principal.credential_id,
        "X-Apiward-Credential-Kind": principal.credential_kind.value,
        "X-Apiward-Api-Version": principal.api_version or "",
        "X-Apiward-External-Id": principal.external_id or "",
    }
    if meta_headers:
        meta = principal.meta
        for name, header in meta_headers:
            headers[header] = header_value(meta.get(name))
    return headers


ORIGINAL_URI_HEADERS: dict[str, str | None] = {
    "nginx": "x-original-uri",
    "traefik": "x-forwarded-uri",
    # ``ext_authz`` sends the path after its ``path_prefix``; ``x-envoy-original-path`` is
    # set by Envoy's router only once a route rewrote the path, and a client may send it.
    "envoy": None,
}


ORIGINAL_METHOD_HEADERS: dict[str, str | None] = {
    "nginx": "x-original-method",
    "traefik": "x-forwarded-method",
    "envoy": None,  # ``ext_authz`` asks with the client's own method
}


def envoy_target(scope: Scope) -> str:
    """Under ``envoy``, the original request's path: what follows ``/v1/auth/check`` in
    the check's path as the client sent it (the ASGI ``raw_path``, escapes undecoded, so
    that ``canonical`` sees ``%2F`` and ``%2e`` as the upstream will), ``/`` when nothing
    does (the bare ``/v1/auth/check``). Envoy's ``ext_authz`` asks at its ``path_prefix``
    followed by the client's request target; the query is the check's ``query_string``,
    which the path does not need (``canonical`` drops it)."""
    raw = scope.get("raw_path")
    if not isinstance(raw, bytes):
        raise InvalidInput(
            "The server gave no raw path (ASGI raw_path): the original request's path "
            "cannot be read as the client sent it."
        )
    prefix = (scope.get("root_path", "") + PATH).encode("latin-1")
    if not raw.startswith(prefix):
        raise InvalidInput(
            "The original request's path must follow /v1/auth/check as received "
            "(ext_authz path_prefix: /v1/auth/check)."
        )
    return raw[len(prefix) :].decode("latin-1") or "/"


# Headers with which some upstreams let a POST act as another method.
METHOD_OVERRIDE_HEADERS = ("x-http-method-override", "x-http-method", "x-method-override")


def method_of(reported: str | None, own: str, overrides: list[str]) -> str:
    """The method the client used: what the declared proxy reports, or the check
    request's own (Envoy's, or a proxy that reports none). A method-override header
    naming another one is refused: upstreams that honour it act on that method, the
    others on this one."""
    method = original_method(reported or own)
    if any(v.strip() and v.strip().upper() != method for v in overrides):
        raise InvalidInput(
            "The original request names another method in a method-override header "
            "(X-HTTP-Method-Override), which upstreams read differently: send that method."
        )
    return method


def method_header(settings: Settings) -> str | None:
    """The header the declared proxy reports the original method in (none: its own)."""
    return ORIGINAL_METHOD_HEADERS[settings.forward_auth_proxy]


MAX_REQUIRED = 64
"""The most distinct scopes one header (required, or in report mode) may name: a proxy
names a few; more is a request that would only inflate counts."""


def required_scopes(lines: list[str], query: list[str]) -> tuple[str, ...]:
    """The scopes a check requires: every ``X-Apiward-Require`` line (a proxy may append
    one to the client's), each space or comma separated, and the ``scope`` parameters;
    each once, at most ``MAX_REQUIRED``."""
    wanted = tuple(
        dict.fromkeys([s for line in lines for s in line.replace(",", " ").split()] + query)
    )
    if len(wanted) > MAX_REQUIRED:
        raise InvalidInput(f"A check requires at most {MAX_REQUIRED} distinct scopes.")
    for s in wanted:
        parse(s)
    return wanted


async def decide(
    request: Request, scope: list[str], settings: Settings, limits: RequestLimits
) -> Response:
    """The check's answer, whether the route or ``FastPath`` received the request."""
    try:
        asked = _asked(request.scope, _names_for(runtime_in(request.scope)), limits, scope)
        principal = await authenticate_for(
            request,
            route=asked.path,
            method=asked.method,
            counted_route=asked.rule,
            scopes=asked.required,
            report_scopes=asked.watched,
        )
    except ApiwardError as exc:
        return _refusal(request, exc)
    identity = identity_headers(principal, settings.forward_meta_headers)
    return Response(status_code=200, headers={**identity, **principal.rate_limit})


def _refusal(request: Request, exc: ApiwardError) -> Response:
    """A refused check's answer: the app's, or for nginx its form of it."""
    nginx = header(request.scope, PROXY_HEADER.encode()).lower() == b"nginx"
    return _for_nginx(request, exc) if nginx else errors.error_response(request, exc)


@declare(CHECKED)
async def check(
    request: Request,
    settings: SettingsDep,
    limits: LimitsDep,
    scope: list[str] | None = Query(
        None,
        description="Scopes the proxied location needs.",
        json_schema_extra={"maxItems": MAX_SCOPES},  # checked by ``decide``, as on the fast path
    ),
) -> Response:
    """200 with `X-Apiward-*` identity headers, or 401/403/429 with the error body."""
    return await decide(request, scope or [], settings, limits)


@declare(CHECKED)
async def envoy_check(request: Request, settings: SettingsDep, limits: LimitsDep) -> Response:
    """The check of the original path that follows ``/v1/auth/check`` (``envoy`` only).
    Its query string is the client's: scopes come from ``X-Apiward-Require`` alone."""
    return await decide(request, [], settings, limits)


async def fast_path(inner: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Answers ``/v1/auth/check`` ahead of FastAPI (``apiward.adapters.http.edge``).

    Forward auth runs once for every request a proxy lets through, so its cost is the
    proxy's latency. A check asked with headers only (what the documented proxy
    configurations send) is decided from the raw ASGI headers: the same
    ``RequestContext``, ``Authenticator.authenticate`` and identity headers as
    ``decide``, without building a ``Request``. A refusal, and a check with a query
    string, are answered by ``decide``'s code, so every answer is the route's.
    """
    if scope["method"] not in METHODS:
        await inner(scope, receive, send)
        return
    scope["route"] = _ROUTE  # the route's identity, for metrics labels and route marks
    if scope.get("query_string"):
        await _routed(scope, receive, send)
        return
    await _raw(scope, receive, send)


async def envoy_fast_path(inner: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Answers ``/v1/auth/check/{path}`` (``envoy`` only) ahead of FastAPI, as
    ``fast_path`` the bare check: decided from the raw ASGI scope whatever its query
    string, which is the client's and not read."""
    if scope["method"] not in METHODS:
        await inner(scope, receive, send)
        return
    scope["route"] = _ENVOY_ROUTE
    await _raw(scope, receive, send)


async def _raw(scope: Scope, receive: Receive, send: Send) -> None:
    try:
        headers = await _decide_raw(scope, runtime_in(scope))
    except Exception as exc:  # a refusal, or what the app's last-resort handler answers
        request = Request(scope, receive)
        if isinstance(exc, ApiwardError):
            response = _refusal(request, exc)
        else:
            response = await errors.answer(request, exc)
        await response(scope, receive, send)
        return
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def _routed(scope: Scope, receive: Receive, send: Send) -> None:
    request = Request(scope, receive)
    try:
        runtime = runtime_in(scope)
        wanted = request.query_params.getlist("scope")
        response = await decide(request, wanted, runtime.settings, runtime.limits)
    except Exception as exc:  # what the app's last-resort handler would answer
        response = await errors.answer(request, exc)
    await response(scope, receive, send)


class _Names:
    """The request headers a check reads beyond what every door reads (``Reading``)."""

    def __init__(self, runtime: Runtime) -> None:
        settings = runtime.settings
        self.runtime = runtime
        uri = ORIGINAL_URI_HEADERS[settings.forward_auth_proxy]
        self.original_uri = uri.encode() if uri else None
        method = method_header(settings)
        self.original_method = method.encode() if method else None
        self.meta = settings.forward_meta_headers
        self.reading = Reading(
            runtime,
            first=[h for h in (self.original_uri, self.original_method) if h],
            every=[_REQUIRE, _REPORT, *_OVERRIDES],
        )


_names: list[_Names] = []
_REQUIRE = REQUIRE_HEADER.encode()
_REPORT = REPORT_HEADER.encode()
_OVERRIDES = tuple(h.encode() for h in METHOD_OVERRIDE_HEADERS)


def _names_for(runtime: Runtime) -> _Names:
    if not _names or _names[0].runtime is not runtime:
        _names[:] = [_Names(runtime)]
    return _names[0]


class _Asked(NamedTuple):
    """What a check asks, read from its raw headers once (``_asked``). A named tuple:
    made once per check, on the hot path, where a frozen dataclass costs a
    ``object.__setattr__`` per field."""

    path: str
    """The original request's path, canonical."""
    method: str
    """The original request's method."""
    rule: str | None
    """The route rule the path falls under (what the request is counted under)."""
    required: tuple[str, ...]
    """The scopes required (``X-Apiward-Require`` and the ``scope`` parameters)."""
    watched: tuple[str, ...]
    """The scopes required in report mode (``X-Apiward-Require-Report``)."""
    heard: Heard
    """The headers, as the check's ``Reading`` read them."""


def _asked(scope: Scope, names: _Names, limits: RequestLimits, query: list[str]) -> _Asked:
    """What the check in ``scope`` asks: the original path and method, and the scopes
    required (also ``query``: the ``scope`` parameters), each header read and each scope
    parsed here only, for the route and the fast path alike.

    The path is canonical (route rules and limits are on it), read only from the header
    the declared proxy sets (``APIWARD_FORWARD_AUTH_PROXY``), which it overwrites: the
    other proxies' headers are the client's own. Under ``envoy``, from the check's own
    path (``envoy_target``)."""
    if len(query) > MAX_SCOPES:
        raise InvalidInput(f"Invalid request: query.scope: at most {MAX_SCOPES} scopes.")
    heard = hear(scope["headers"], names.reading)
    found, every = heard.first, heard.every
    if names.original_uri is None:
        path = canonical(envoy_target(scope))
    else:
        path = canonical(found.get(names.original_uri) or "/")
    reported = found.get(names.original_method) if names.original_method else None
    overrides = [v for h in _OVERRIDES for v in every.get(h, ())]
    method = method_of(reported, scope["method"], overrides)
    report = every.get(_REPORT)
    return _Asked(
        path,
        method,
        limits.default_plan.rule_for(path, method),
        required_scopes(every.get(_REQUIRE, []), query),
        required_scopes(report, []) if report else (),
        heard,
    )


async def _decide_raw(scope: Scope, runtime: Runtime) -> list[tuple[bytes, bytes]]:
    """``decide`` on the raw scope, for a check without a query string (or whose query
    is the client's): the headers of the 200 (a refusal is raised)."""
    names = _names_for(runtime)
    asked = _asked(scope, names, runtime.limits, [])
    client = scope.get("client")
    context = context_of(
        asked.heard,
        names.reading,
        peer=client[0] if client else None,
        method=asked.method,
        route=asked.path,
        counted_route=asked.rule,
        request_id=state_of(scope).request_id or None,
    )
    principal = await runtime.auth.authenticate(
        asked.heard.first.get(AUTHORIZATION),
        context,
        scopes=asked.required,
        report_scopes=asked.watched,
    )
    remember(scope, principal)
    headers = [
        (k.lower().encode(), v.encode("latin-1"))
        for k, v in {**identity_headers(principal, names.meta), **principal.rate_limit}.items()
    ]
    headers.append((b"content-length", b"0"))
    return headers


for _method in ["GET", *OTHER_METHODS]:
    router.add_api_route(
        PATH,
        check,
        methods=[_method],
        summary="Forward-auth decision",
        operation_id=f"forward_auth_check_{_method.lower()}",
        include_in_schema=_method != "HEAD",
        response_class=Response,
        responses={
            200: {
                "description": "Allowed: who is calling is in the X-Apiward-* "
                "headers; the body is empty."
            }
        },
    )


_ROUTE = next(r for r in router.routes if getattr(r, "path", None) == PATH)

envoy_router = APIRouter(tags=["Forward auth"])
"""``/v1/auth/check/{path}``, included only under ``APIWARD_FORWARD_AUTH_PROXY=envoy``:
another proxy's client could name any path there (docs/forward-auth.md)."""


class _Rest(Convertor[str]):
    """Every character to the end, a decoded newline included (which ``path`` would
    leave to a 404 where ``canonical`` refuses it on the raw path, as the fast path
    does)."""

    regex = "(?s:.*)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("rest", _Rest())
ENVOY_ROUTE = ENVOY_PREFIX + "{path:rest}"

for _method in ["GET", *OTHER_METHODS]:
    envoy_router.add_api_route(
        ENVOY_ROUTE,
        envoy_check,
        methods=[_method],
        operation_id=f"forward_auth_envoy_check_{_method.lower()}",
        include_in_schema=False,  # the bare check's decision, at Envoy's path_prefix
        response_class=Response,
    )

_ENVOY_ROUTE = envoy_router.routes[0]


def _for_nginx(request: Request, exc: ApiwardError) -> Response:
    answer = errors.error_response(request, exc)
    status = answer.status_code
    headers = dict(answer.headers)
    headers.pop("content-length", None)
    headers["X-Apiward-Status"] = str(status)
    headers["X-Apiward-Error"] = bytes(answer.body).decode()
    return Response(status_code=401 if status == 401 else 403, headers=headers)
