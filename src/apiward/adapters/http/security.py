"""The server's authentication seam: one function from a request to a principal, and a guard.

``authenticate`` is shared by every way of protecting an API (embedded routes,
forward-auth, the verify API); ``require`` is the FastAPI dependency that adds the scope
check and names the missing scope in the 403.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from fastapi.security.base import SecurityBase
from starlette.requests import HTTPConnection
from starlette.types import Scope

from apiward.adapters.http.access import PUBLIC, Door, Environments, Needs, Reach, declare
from apiward.adapters.http.context import (
    AUTHORIZATION,
    Heard,
    forwarded_address,
    reading_of,
    scope_context,
)
from apiward.adapters.http.deps import runtime_of
from apiward.adapters.http.state import state_of
from apiward.adapters.runtime import Runtime
from apiward.core.errors import ApiwardError
from apiward.core.models import IPNetwork, Principal, RequestContext
from apiward.core.scopes import parse
from apiward.services.auth import require_scopes
from apiward.services.authority import require_org_wide

F = TypeVar("F", bound=Callable[..., Any])

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An apiward API key (or access token): `Authorization: Bearer <api_key>`.",
)


def client_ip(request: Request, trusted: tuple[IPNetwork, ...]) -> str | None:
    """The caller's address; ``X-Forwarded-For`` is believed only from trusted proxies."""
    peer = request.client.host if request.client else None
    # Several lines are one list, in order (RFC 9110 section 5.3): a proxy may add its own.
    forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
    return forwarded_address(peer, forwarded, trusted)


def request_context(
    request: Request, *, route: str | None = None, method: str | None = None
) -> RequestContext:
    """What the limits, the analytics and the key's allow-lists judge ``request`` by
    (``context.context_of``); ``route`` and ``method`` are the original request's, when
    another one asks (forward auth)."""
    return _heard(request, runtime_of(request), route, method, None)[1]


def _heard(
    request: Request,
    runtime: Runtime,
    route: str | None,
    method: str | None,
    counted_route: str | None,
) -> tuple[Heard, RequestContext]:
    """The request's headers as apiward reads them, and its context, in one pass."""
    scope = request.scope
    template = route or getattr(scope.get("route"), "path", None)
    path = template or request.url.path
    # A raw path (no route template: a middleware ahead of routing) is counted under its
    # route rule, so that clients cannot mint analytics rows with made-up paths.
    method = method or scope["method"]
    if counted_route is None and not template:
        counted_route = runtime.limits.default_plan.rule_for(path, method)
    return scope_context(
        scope, reading_of(runtime), route=path, method=method, counted_route=counted_route
    )


async def authenticate_for(
    request: Request,
    *,
    route: str | None = None,
    method: str | None = None,
    counted_route: str | None = None,
    scopes: tuple[str, ...] | list[str] = (),
    report_scopes: tuple[str, ...] | list[str] = (),
) -> Principal:
    """The principal of this request holding ``scopes``, or an ``AuthenticationError`` /
    ``PermissionDenied``; its limits and credits are spent only once it passed both.
    ``report_scopes`` are required in report mode: lacking one refuses nothing, and is
    counted as what the requirement would refuse."""
    state = state_of(request.scope)
    cached = state.principal
    if cached is not None:  # a second guard of the same request: its scopes are used too
        try:
            cached = require_scopes(cached, scopes)
        except ApiwardError:
            if cached.spent is not None:  # a refused request spends nothing
                await _runtime(request).limits.refund(cached.spent)
            raise
        if scopes:
            _runtime(request).auth.scope_tally.count(cached, scopes)
        if report_scopes:
            cached = _runtime(request).auth.scopes_in_report(cached, report_scopes)
        return cached
    runtime = runtime_of(request)
    heard, context = _heard(request, runtime, route, method, counted_route)
    principal = await runtime.auth.authenticate(
        heard.first.get(AUTHORIZATION),
        context,
        exempt=is_exempt(request),
        scopes=scopes,
        report_scopes=report_scopes,
    )
    return remember(request.scope, principal, runtime)


def _runtime(request: Request) -> Runtime:
    """The runtime that authenticated the request, else the app's (``runtime_of``)."""
    found = state_of(request.scope).runtime
    return found if isinstance(found, Runtime) else runtime_of(request)


def remember(
    source: HTTPConnection | Scope, principal: Principal, runtime: Runtime | None = None
) -> Principal:
    """Keep the principal of a request (or of its raw ASGI scope, on a fast path) for
    the route, and what the response headers need: the one place it is recorded.
    ``runtime``: the one that authenticated it, for a later guard of the request."""
    scope = source.scope if isinstance(source, HTTPConnection) else source
    state = state_of(scope)
    state.principal = principal
    state.runtime = runtime
    state.api_version = principal.api_version
    state.rate_limit_headers = principal.rate_limit
    # ``request.state.principal``, where the host app's own code finds it (README).
    scope["state"]["principal"] = principal
    return principal


def public(endpoint: F) -> F:
    """Mark a route as needing no credential, even under an app- or router-wide guard."""
    endpoint.__apiward_public__ = True  # type: ignore[attr-defined]
    return declare(PUBLIC)(endpoint)


def exempt(endpoint: F) -> F:
    """Mark a route as exempt from rate limits (a high-throughput events endpoint)."""
    endpoint.__apiward_exempt__ = True  # type: ignore[attr-defined]
    return endpoint


def is_exempt(request: Request) -> bool:
    route = request.scope.get("route")
    return bool(getattr(getattr(route, "endpoint", None), "__apiward_exempt__", False))


def is_public(request: Request) -> bool:
    route = request.scope.get("route")
    return bool(getattr(getattr(route, "endpoint", None), "__apiward_public__", False))


def require(
    *scopes: str,
    environments: Environments = Environments.OWN,
    reach: Reach = Reach.NONE,
    powers: tuple[str, ...] = (),
    mode: Literal["enforce", "report"] = "enforce",
) -> Any:
    """A dependency yielding the principal, after checking it holds every scope.

    @app.get("/v1/customers")
    async def customers(principal: Principal = require("customers:read")): ...

    ``mode="report"`` refuses nothing for the scopes: a request lacking one is counted
    as what the requirement would refuse (``WOULD_REFUSE`` in analytics), to try a new
    requirement on live traffic before it bites.

    The route's declaration (``apiward.adapters.http.access``) is built from the same
    arguments and hung on the dependency, so what a route declares is what guards it.
    """
    if mode not in ("enforce", "report"):
        raise ValueError(f"Invalid mode {mode!r}: use 'enforce' (the default) or 'report'.")
    if mode == "report":
        for scope in scopes:
            parse(scope)  # a typo fails at import, as an enforced scope's does
        return guard(Needs(Door.CREDENTIAL, (), environments, reach, powers), report=scopes)
    return guard(Needs(Door.CREDENTIAL, scopes, environments, reach, powers))


def guard(needs: Needs, *, report: tuple[str, ...] = ()) -> Any:
    """The dependency enforcing a credential route's declaration: its scopes (before
    anything is spent), then its environments and, for a change to the whole
    organisation, its scopes in every space (what was spent is given back)."""
    for scope in (*needs.scopes, *needs.powers):
        parse(scope)  # a typo in a route's scope fails at import, not at request time
    return Depends(declare(needs)(Guard(needs, report)))


class BearerDependency(SecurityBase):
    """A dependency that is also the bearer scheme its OpenAPI operation names.

    It is one dependency, not a function depending on ``HTTPBearer``: FastAPI solves
    each level of dependencies on every request, and the scheme is here only for the
    documentation, which FastAPI reads from any ``SecurityBase`` dependency.
    """

    def __init__(self, returns: Any) -> None:
        self.model = bearer_scheme.model
        self.scheme_name = bearer_scheme.scheme_name
        # What FastAPI reads the parameters from, whatever its version resolves
        # annotations with: the request alone, never a parameter a client could set.
        self.__signature__ = inspect.Signature(
            [
                inspect.Parameter(
                    "request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request
                )
            ],
            return_annotation=returns,
        )


class Authenticate(BearerDependency):
    """``authenticate``: the principal of a request, for ``Depends(authenticate)`` on a
    route that needs a credential and no scope (or for a direct ``await
    authenticate(request)``). It reads the request alone: what it is judged by (route,
    method, scopes) is never a parameter FastAPI would take from the query string; the
    operation lists the bearer scheme, as a ``require()`` route's does."""

    def __init__(self) -> None:
        super().__init__(Principal)

    async def __call__(self, request: Request) -> Principal:
        return await authenticate_for(request)


authenticate = Authenticate()


class Guard(BearerDependency):
    """A route's guard (``require``), and the bearer scheme its OpenAPI operation names."""

    def __init__(self, needs: Needs, report: tuple[str, ...]) -> None:
        super().__init__(Principal | None)
        self.needs = needs
        self.report = report

    async def __call__(self, request: Request) -> Principal | None:
        if is_public(request):
            return None
        needs = self.needs
        principal = await authenticate_for(request, scopes=needs.scopes, report_scopes=self.report)
        if needs.primary_only or needs.reach is Reach.ORG:
            runtime = _runtime(request)
            try:
                if needs.primary_only:
                    require_org_wide(principal, runtime.settings.environments[0])
                if needs.reach is Reach.ORG:
                    what = f"{request.method} {request.url.path}"
                    await runtime.tenancy.require_everywhere(principal, needs.scopes, what)
            except ApiwardError:
                if principal.spent is not None:  # a refused request spends nothing
                    await runtime.limits.refund(principal.spent)
                raise
        return principal
