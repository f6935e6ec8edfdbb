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

The scopes a location needs come from the proxy, in ``X-Apiward-Require`` (space or
comma separated) or the ``scope`` query parameter.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from apiward.adapters.http import errors
from apiward.adapters.http.deps import LimitsDep, SettingsDep, runtime_of
from apiward.adapters.http.security import authenticate
from apiward.adapters.settings import Settings
from apiward.core.errors import ApiwardError, InvalidInput
from apiward.core.models import Principal
from apiward.core.paths import canonical
from apiward.core.scopes import parse
from apiward.services.limiting import RequestLimits

router = APIRouter(tags=["Forward auth"])

REQUIRE_HEADER = "x-apiward-require"
PROXY_HEADER = "x-apiward-proxy"
# Proxies ask with the client's own method (nginx, Traefik); the answer does not depend on it.
OTHER_METHODS = ["HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
METHODS = frozenset({"GET", *OTHER_METHODS})
PATH = "/v1/auth/check"
MAX_SCOPES = 20


def identity_headers(principal: Principal) -> dict[str, str]:
    """What the upstream learns about the caller (never the credential itself)."""
    headers = {
        "X-Apiward-Org": principal.org_id,
        "X-Apiward-Environment": principal.environment,
        "X-Apiward-Space": principal.space_id,
        "X-Apiward-User": principal.user_id,
        "X-Apiward-Scopes": " ".join(principal.scopes),
        "X-Apiward-Credential": principal.credential_id,
        "X-Apiward-Credential-Kind": principal.credential_kind.value,
    }
    if principal.client_id:
        headers["X-Apiward-Client"] = principal.client_id
    if principal.api_version:
        headers["X-Apiward-Api-Version"] = principal.api_version
    return headers


ORIGINAL_URI_HEADERS = {
    "nginx": "x-original-uri",
    "traefik": "x-forwarded-uri",
    "envoy": "x-envoy-original-path",
}


def original_path(request: Request, settings: Settings) -> str:
    """The path the client asked the proxy for, canonical: route rules and limits are on
    it. Read only from the header the declared proxy sets (``APIWARD_FORWARD_AUTH_PROXY``),
    which it overwrites; the other proxies' headers are the client's own."""
    header = ORIGINAL_URI_HEADERS[settings.forward_auth_proxy]
    return canonical(request.headers.get(header) or "/")


def _required(request: Request, scope: list[str] | None) -> tuple[str, ...]:
    raw = request.headers.get(REQUIRE_HEADER, "")
    wanted = [s for s in raw.replace(",", " ").split() if s] + list(scope or ())
    for s in wanted:
        parse(s)
    return tuple(wanted)


async def decide(
    request: Request, scope: list[str], settings: Settings, limits: RequestLimits
) -> Response:
    """The check's answer, whether the route or ``FastPath`` received the request."""
    nginx = request.headers.get(PROXY_HEADER, "").lower() == "nginx"
    try:
        if len(scope) > MAX_SCOPES:
            raise InvalidInput(f"Invalid request: query.scope: at most {MAX_SCOPES} scopes.")
        path = original_path(request, settings)
        rule = limits.default_plan.rule_for(path, request.method)
        principal = await authenticate(
            request, route=path, counted_route=rule, scopes=_required(request, scope)
        )
    except ApiwardError as exc:
        if nginx:
            return _for_nginx(request, exc)
        return await errors.answer(request, exc)
    return Response(
        status_code=200, headers={**identity_headers(principal), **principal.rate_limit}
    )


async def check(
    request: Request,
    settings: SettingsDep,
    limits: LimitsDep,
    scope: list[str] | None = Query(
        None, max_length=MAX_SCOPES, description="Scopes the proxied location needs."
    ),
) -> Response:
    """200 with `X-Apiward-*` identity headers, or 401/403/429 with the error body."""
    return await decide(request, scope or [], settings, limits)


class FastPath:
    """Answers ``/v1/auth/check`` before FastAPI's router and dependency injection.

    Forward auth runs once for every request a proxy lets through, so its cost is the
    proxy's latency. This ASGI middleware, inside the request middleware (request ids,
    body limit, logs, metrics) and outside the router, gives the route's exact answer
    (``decide``) without the framework's per-request work around it. The route stays
    registered for the OpenAPI document, and answers if this middleware is not installed.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # The route's identity, for metrics labels and route-level marks.
        self._route = next(r for r in router.routes if getattr(r, "path", None) == PATH)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] not in METHODS:
            await self.app(scope, receive, send)
            return
        scope["route"] = self._route
        request = Request(scope, receive)
        try:
            wanted = request.query_params.getlist("scope") if scope.get("query_string") else []
            runtime = runtime_of(request)  # outside the dependency system
            response = await decide(request, wanted, runtime.settings, runtime.limits)
        except Exception as exc:  # what the app's last-resort handler would answer
            response = await errors.answer(request, exc)
        await response(scope, receive, send)


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


def _for_nginx(request: Request, exc: ApiwardError) -> Response:
    answer = errors.error_response(request, exc)
    status = answer.status_code
    headers = dict(answer.headers)
    headers.pop("content-length", None)
    headers["X-Apiward-Status"] = str(status)
    headers["X-Apiward-Error"] = bytes(answer.body).decode()
    return Response(status_code=401 if status == 401 else 403, headers=headers)
