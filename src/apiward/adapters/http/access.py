"""What each route needs before it acts: one declaration per route, readable from it.

Every route of the server says who may call it (``Door``), the scopes it needs, the
environment it may be called from, how far what it changes reaches (``Reach``) and the
owner or operator powers some of its changes ask for (docs/authority.md, "Every route
declares what it needs"). The declaration is not a list beside the routes: for a route
called with a credential it *is* the guard (``security.require`` builds the dependency
from it and hangs it on the dependency), and the dashboard's session dependencies carry
theirs. ``needs_of`` reads it back from any route, so a test walks the router and finds
a route that declares nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from fastapi.dependencies.models import Dependant
from fastapi.routing import RouteContext, iter_route_contexts
from starlette.applications import Starlette
from starlette.routing import BaseRoute

F = TypeVar("F", bound=Callable[..., Any])
ATTRIBUTE = "__apiward_needs__"


class Door(StrEnum):
    """How a caller gets in."""

    PUBLIC = "public"
    """No credential: anyone (health, documents, sign-in and sign-up forms)."""
    CREDENTIAL = "credential"
    """A bearer API key or access token holding the route's scopes (``require``)."""
    CLIENT = "client"
    """The request's own credentials: an OAuth client's secret (RFC 6749 section 2.3),
    a grant, or a bearer credential holding the route's scopes; checked by the token
    service."""
    CHECKED = "checked"
    """Forward auth: the credential of the request a proxy asks about, with the scopes
    the proxy names."""
    SIGNED = "signed"
    """A signature or a deployment token, not a tenant's credential (leak reports, the
    metrics token)."""
    SESSION = "session"
    """A person signed in to the dashboard (session cookie; a form token on every POST)."""
    PROJECT = "project"
    """A person signed in with a project open; each action checks the scope its HTTP
    twin requires."""


class Environments(StrEnum):
    """The environments a route may be called from."""

    OWN = "own"
    """Any: it acts on records of the caller's own environment only (``Principal.sees``)."""
    PRIMARY = "primary"
    """Only the primary environment (the first of ``APIWARD_KEY_ENV_TAGS``), a dashboard
    session or the operator: it changes what holds in every environment (spaces, the
    organisation, users, roles, memberships, invitations, projects)."""


class Reach(StrEnum):
    """How far what the route changes reaches, which decides who may change it."""

    NONE = "none"
    """It changes nothing a tenant owns (reads, decisions, sign-in)."""
    CREDENTIAL = "credential"
    """A credential or endpoint of the caller's environment: the service keeps the result
    within what the caller holds in every space it reaches (``check_credential``)."""
    SPACE = "space"
    """One space, named in the path or the body (every space when none is named): the
    service weighs the change against what the caller holds there."""
    ORG = "org"
    """The whole organisation: what it changes holds in every space, so the guard wants
    the route's scopes in every space (not through a role of some spaces, nor a key kept
    to some)."""
    ACCOUNT = "account"
    """The portal account of the person calling: only that person acts on it (the portal
    service finds the account)."""


@dataclass(frozen=True, slots=True)
class Needs:
    """What a route needs: its door, scopes, environments, reach and powers."""

    door: Door
    scopes: tuple[str, ...] = ()
    environments: Environments = Environments.OWN
    reach: Reach = Reach.NONE
    powers: tuple[str, ...] = ()
    """Reserved permissions (``owner:*``, ``operator:...``) that some changes through the
    route ask for, checked by the service at the change that needs one."""

    @property
    def primary_only(self) -> bool:
        return self.environments is Environments.PRIMARY


PUBLIC = Needs(Door.PUBLIC)
CLIENT = Needs(Door.CLIENT)
CHECKED = Needs(Door.CHECKED)
SIGNED = Needs(Door.SIGNED)
SESSION = Needs(Door.SESSION)
PROJECT = Needs(Door.PROJECT)


def declare(needs: Needs) -> Callable[[F], F]:
    """Hang a declaration on an endpoint or dependency that enforces it itself."""

    def mark(target: F) -> F:
        setattr(target, ATTRIBUTE, needs)
        return target

    return mark


def declared(target: object) -> Needs | None:
    value = getattr(target, ATTRIBUTE, None)
    return value if isinstance(value, Needs) else None


def _calls(dependant: Dependant) -> Iterator[object]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def needs_of(route: BaseRoute | RouteContext) -> Needs | None:
    """The route's declaration: its endpoint's, or else the first of its dependencies'
    (the guard ``require`` builds, a dashboard page's session); None when it has none."""
    own = declared(getattr(route, "endpoint", None))
    if own is not None:
        return own
    dependant: Dependant | None = getattr(route, "dependant", None)
    if dependant is None:
        return None
    return next((n for n in map(declared, _calls(dependant)) if n is not None), None)


def routes_of(app: Starlette) -> Iterator[tuple[str, RouteContext]]:
    """Every route of the app with its full path, inside included routers too (each
    with the dependencies its routers add)."""
    for context in iter_route_contexts(app.routes):
        yield context.path or "", context
