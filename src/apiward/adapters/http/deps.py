"""What routes and dashboard pages use, declared as typed FastAPI dependencies.

A handler names each part of the runtime it calls as a parameter
(``keys: KeysDep``) instead of reaching into the runtime itself. Each provider reads
the app's runtime (built in the lifespan, ``request.app.state.runtime``) once and hands
out one of its parts. Providers take only the ``Request``, so they add nothing to the
OpenAPI document, and are coroutines: FastAPI runs a plain function dependency in a
worker thread, a hop per dependency per request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.types import Scope

from apiward.adapters.geo import Countries
from apiward.adapters.metrics import Metrics
from apiward.adapters.runtime import Runtime
from apiward.adapters.settings import Settings
from apiward.core.clock import Clock
from apiward.core.errors import ServiceUnavailable
from apiward.services.addresses import Addresses
from apiward.services.analytics import Analytics
from apiward.services.audit import AuditLog
from apiward.services.auth import Authenticator
from apiward.services.clients import Clients
from apiward.services.impact import Impacts
from apiward.services.keys import Keys
from apiward.services.leaks import Leaks
from apiward.services.limiting import RequestLimits
from apiward.services.portal import Portal
from apiward.services.scope_usage import ScopeUsage
from apiward.services.signing import Keyring
from apiward.services.tenancy import Tenancy
from apiward.services.tokens import Tokens
from apiward.services.webhooks import Webhooks


def runtime_of(request: Request) -> Runtime:
    """The app's runtime, for the providers below and the code that runs outside the
    dependency system (ASGI middleware, the authentication seam)."""
    runtime: Runtime = request.app.state.runtime
    return runtime


NOT_RUNNING = "apiward is not running: start the app's lifespan."


def runtime_in(scope: Scope) -> Runtime:
    """The runtime of the app serving ``scope``, for code that sees only the ASGI scope
    (the edge's fast paths); a 503 while the app's lifespan has not started it."""
    runtime: Runtime | None = getattr(scope["app"].state, "runtime", None)
    if runtime is None:
        raise ServiceUnavailable(NOT_RUNNING, retry_after=1)
    return runtime


async def settings(request: Request) -> Settings:
    return runtime_of(request).settings


async def clock(request: Request) -> Clock:
    return runtime_of(request).clock


async def keys(request: Request) -> Keys:
    return runtime_of(request).keys


async def tenancy(request: Request) -> Tenancy:
    return runtime_of(request).tenancy


async def auth(request: Request) -> Authenticator:
    return runtime_of(request).auth


async def tokens(request: Request) -> Tokens:
    return runtime_of(request).tokens


async def clients(request: Request) -> Clients:
    return runtime_of(request).clients


async def portal(request: Request) -> Portal:
    return runtime_of(request).portal


async def webhooks(request: Request) -> Webhooks:
    return runtime_of(request).webhooks


async def leaks(request: Request) -> Leaks:
    return runtime_of(request).leaks


async def audit(request: Request) -> AuditLog:
    return runtime_of(request).audit


async def analytics(request: Request) -> Analytics:
    return runtime_of(request).analytics


async def scope_usage(request: Request) -> ScopeUsage:
    return runtime_of(request).scope_usage


async def addresses(request: Request) -> Addresses:
    return runtime_of(request).addresses


async def impacts(request: Request) -> Impacts:
    return runtime_of(request).impact


async def limits(request: Request) -> RequestLimits:
    return runtime_of(request).limits


async def keyring(request: Request) -> Keyring:
    return runtime_of(request).keyring


async def metrics(request: Request) -> Metrics:
    return runtime_of(request).metrics


async def countries(request: Request) -> Countries:
    return runtime_of(request).countries


async def runtime(request: Request) -> Runtime:
    return runtime_of(request)


SettingsDep = Annotated[Settings, Depends(settings)]
ClockDep = Annotated[Clock, Depends(clock)]
KeysDep = Annotated[Keys, Depends(keys)]
TenancyDep = Annotated[Tenancy, Depends(tenancy)]
AuthDep = Annotated[Authenticator, Depends(auth)]
TokensDep = Annotated[Tokens, Depends(tokens)]
ClientsDep = Annotated[Clients, Depends(clients)]
PortalDep = Annotated[Portal, Depends(portal)]
WebhooksDep = Annotated[Webhooks, Depends(webhooks)]
LeaksDep = Annotated[Leaks, Depends(leaks)]
AuditDep = Annotated[AuditLog, Depends(audit)]
AnalyticsDep = Annotated[Analytics, Depends(analytics)]
ScopeUsageDep = Annotated[ScopeUsage, Depends(scope_usage)]
AddressesDep = Annotated[Addresses, Depends(addresses)]
ImpactsDep = Annotated[Impacts, Depends(impacts)]
LimitsDep = Annotated[RequestLimits, Depends(limits)]
KeyringDep = Annotated[Keyring, Depends(keyring)]
MetricsDep = Annotated[Metrics, Depends(metrics)]
CountriesDep = Annotated[Countries, Depends(countries)]
RuntimeDep = Annotated[Runtime, Depends(runtime)]
"""The whole runtime: only for readiness, which asks each of its resources."""
