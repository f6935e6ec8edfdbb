"""What apiward learns about one request on its way, for the code that answers it.

The request middleware, the authentication seam, the routes and the error handlers
each leave a fact here (the request id, the principal, the error...) for another to
read: the response headers, the metrics, the dashboard's page frame. ``state_of`` keeps
one ``RequestState`` per request in the ASGI scope's ``state`` (what Starlette's
``request.state`` wraps), so that middleware that sees only the scope reads the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from starlette.requests import HTTPConnection
from starlette.types import Scope

from apiward.core.errors import ApiwardError
from apiward.core.models import Principal

KEY = "apiward"
"""The ``RequestState``'s name in the scope's ``state``."""


class Viewer(Protocol):
    """The signed-in person a dashboard page is drawn for (the dashboard's ``Me``)."""

    def can(self, scope: str) -> bool: ...


@dataclass(slots=True)
class RequestState:
    request_id: str | None = None
    """Kept from ``X-Request-Id`` or made up (the request middleware)."""
    principal: Principal | None = None
    """Who is calling, once authenticated."""
    runtime: object | None = None
    """The runtime that authenticated ``principal`` (an ``adapters.runtime.Runtime``,
    which imports this module through its metrics: readers check its type): where a
    later guard of the same request (a mounted app's, whose ``request.app`` holds no
    runtime) tallies its scopes and gives back what a refusal spent, and the metrics
    that count the request."""
    api_version: str | None = None
    """The version the request is served in (the principal's)."""
    rate_limit_headers: dict[str, str] = field(default_factory=dict)
    """The ``X-RateLimit-*`` headers for the answer."""
    error: ApiwardError | None = None
    """The domain error the request was answered with (for its metrics)."""
    grant_type: str | None = None
    """The token endpoint's grant (for its metrics)."""
    verify_code: str | None = None
    """The verify API's answer code (for its metrics)."""
    dashboard_me: Viewer | None = None
    """The dashboard page's signed-in person; None draws a page for anyone."""


def state_of(source: HTTPConnection | Scope) -> RequestState:
    """The request's state (a request, or the ASGI scope of one), made on first use."""
    # A scope is a dict (ASGI); asking ``isinstance`` of the ``Mapping`` a request is
    # would go through the ABC machinery, on every request, several times.
    scope = source if isinstance(source, dict) else cast(HTTPConnection, source).scope
    state: dict[str, Any] | None = scope.get("state")
    if state is None:
        state = scope["state"] = {}
    found = state.get(KEY)
    if type(found) is not RequestState:
        found = state[KEY] = RequestState()
    return found
