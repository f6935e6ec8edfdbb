"""Every route against every kind of principal (docs/authority.md, "Every route declares
what it needs").

The routes come from the server's router, so a new route cannot be forgotten: one with
no declaration fails ``test_every_route_declares_what_it_needs``, and a mutating route
called with a credential that has no row here fails
``test_the_matrix_has_a_row_for_every_mutating_route``. Each cell sends one real request,
by one principal, against a target made for it, and compares the answer with what the
route's declaration says for that principal (``generated``), unless ``HAND_WRITTEN``
says otherwise. ``HAND_WRITTEN`` also holds anchors the generator must agree with, so
that the generator is tested too.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from apiward.adapters.http.access import Door, Needs, Reach, needs_of, routes_of
from apiward.adapters.http.app import create_app
from apiward.adapters.runtime import Runtime
from apiward.core.ids import new_id
from apiward.core.models import (
    Account,
    CredentialKind,
    Membership,
    PageRequest,
    Principal,
    RequestContext,
    User,
)
from apiward.core.roles import BUILTIN_ROLES
from apiward.core.scopes import ScopeSet
from tests.conftest import fast_settings, require_postgres

T = TypeVar("T")
PASSWORD = "correct horse battery"
SPACE_HEADER = "Apiward-Space-Id"
CONTEXT = RequestContext()
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _settings(database_url: str) -> Any:
    return fast_settings(
        database_url=database_url,
        # One test client sends every request from one address: its refusals (401s of
        # the disabled principals) and invitations must not trip the per-address limits.
        auth_failure_limit="1000000/minute",
        portal_ip_limit="1000000/hour",
        portal_email_limit="1000000/hour",
    )


def mutating_routes(app: FastAPI) -> Iterator[tuple[str, str, Needs | None]]:
    for path, route in routes_of(app):
        for method in sorted(route.methods or ()):
            if method in MUTATING:
                yield method, path, needs_of(route)


def undeclared(app: FastAPI) -> list[str]:
    return [path for path, route in routes_of(app) if needs_of(route) is None]


# The principals --------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """A kind of principal, and what its credential holds where it calls."""

    name: str
    scopes: tuple[str, ...] = ()
    env: str = "live"
    space_only: bool = False
    """Its user holds a role in one space only (and calls in that space)."""
    disabled: bool = False
    other_org: bool = False
    own_account: bool = False
    """It acts as a person with a portal account, through a credential that person made."""
    client: bool = False
    """It presents an OAuth client's secret where a route takes one."""
    acts_for_account: bool = False
    """It acts as a person with a portal account, through a credential another made."""

    @property
    def held(self) -> ScopeSet:
        return ScopeSet(self.scopes)


OWNER = ("*", "owner:*")
KINDS = (
    Kind("owner", OWNER, own_account=True),
    Kind("org_admin", ("*",), own_account=True),
    Kind("space_admin", ("*",), space_only=True),
    Kind("developer", BUILTIN_ROLES["developer"].scopes),
    Kind("viewer", BUILTIN_ROLES["viewer"].scopes),
    Kind("test_key", OWNER, env="test", own_account=True),
    Kind("acting_key", ("*",), acts_for_account=True),  # made by the owner, as the org admin
    Kind("disabled_key", disabled=True),
    Kind("disabled_client", disabled=True, client=True),
    Kind("other_owner", OWNER, other_org=True),
    Kind("operator", (*OWNER, "operator:*"), own_account=True),
)
BY_NAME = {kind.name: kind for kind in KINDS}


# What a cell expects --------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    status: int
    """200 stands for any success (2xx, or a redirect that is not to the sign-in page)."""
    reason: str | None = None
    """The error's ``reason``, for a 403."""

    def __str__(self) -> str:
        return f"{self.status} {self.reason or ''}".strip()


OK = Outcome(200)
UNAUTHENTICATED = Outcome(401)
NOT_FOUND = Outcome(404)
ANONYMOUS = Outcome(0)
"""What an anonymous request to the same route gets: the credential confers nothing."""


INSUFFICIENT = Outcome(403, "INSUFFICIENT_SCOPE")
EXCEEDS = Outcome(403, "EXCEEDS_AUTHORITY")
NO_ACCOUNT = Outcome(403, "FORBIDDEN")


def generated(needs: Needs, has_target: bool, in_own_space: bool, kind: Kind) -> Outcome:
    """What the route's declaration says for this principal, in the order the guard and
    the services decide: credential, scopes, environment, reach, then the target."""
    if needs.door is Door.CHECKED:
        return UNAUTHENTICATED if kind.disabled else OK
    if needs.door is Door.CLIENT and kind.client:
        return UNAUTHENTICATED if kind.disabled else OK
    if needs.door is Door.CLIENT and not needs.scopes:
        return ANONYMOUS  # the grant or the token is the credential, not a bearer
    if needs.door not in (Door.CREDENTIAL, Door.CLIENT):
        return ANONYMOUS  # a bearer credential opens no public form, signed report or page
    if kind.disabled:
        return UNAUTHENTICATED
    if kind.held.first_missing(needs.scopes) is not None:
        return INSUFFICIENT
    if needs.primary_only and kind.env != "live":
        return EXCEEDS
    if kind.space_only and (
        needs.reach is Reach.ORG or (needs.reach is Reach.SPACE and not in_own_space)
    ):
        return EXCEEDS
    if kind.other_org and has_target:
        return NOT_FOUND
    if needs.reach is Reach.ACCOUNT and not kind.own_account:
        return EXCEEDS if kind.acts_for_account else NO_ACCOUNT
    return OK


# The world: two organisations and a principal of every kind ----------------------


@dataclass
class World:
    client: TestClient
    org_id: str
    default_space: str
    team_space: str
    operators: dict[str, Principal]
    """The operator's principal in each environment of the org, which makes targets."""
    users: dict[str, str]
    """Each kind's user in the org (the owner's for the kinds outside it)."""
    headers: dict[str, dict[str, str]]
    spaces: dict[str, str]
    """The space each kind calls in (another org's default space for its owner)."""
    client_credentials: dict[str, str] = field(default_factory=dict)
    counter: Iterator[int] = field(default_factory=itertools.count)

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.client.app.state.runtime  # type: ignore[attr-defined]
        return runtime

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        assert self.client.portal is not None
        return self.client.portal.call(lambda: fn(*args, **kwargs))

    def unique(self, what: str) -> str:
        return f"{what}{next(self.counter)}"

    def operator(self, kind: Kind) -> Principal:
        return self.operators[kind.env]

    def user(self, kind: Kind) -> str:
        return self.users[kind.name]

    def space(self, kind: Kind) -> str:
        """The org's space a target of this kind lies in."""
        return self.team_space if kind.space_only else self.default_space


def _build(client: TestClient) -> World:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]

    async def accounts(*emails: str) -> list[Account]:
        now = runtime.clock.now()
        made = [
            Account(new_id("acc"), e, e.split("@")[0], "x", now, confirmed_at=now) for e in emails
        ]
        async with runtime.store.begin() as tx:
            for account in made:
                await tx.insert_account(account)
        return made

    async def member(org_id: str, account: Account | None, email: str, role: str) -> str:
        """A user of the org with an org-wide role (and a portal account, when given)."""
        now = runtime.clock.now()
        user = User(
            new_id("usr"),
            org_id,
            email,
            email.split("@")[0],
            None,
            now,
            account_id=account.id if account else None,
        )
        async with runtime.store.begin() as tx:
            await tx.insert_user(user)
            await tx.put_membership(Membership(org_id, user.id, None, role, now))
        return user.id

    async def build() -> World:
        ada, bob, cara = await accounts("ada@acme.test", "bob@acme.test", "cara@acme.test")
        founded = await runtime.tenancy.create_project("Acme", ada, CONTEXT)
        await runtime.tenancy.create_project("Bob's side project", bob, CONTEXT)
        org_id = founded.org.id
        ops = {env: await runtime.operators.principal(org_id, env) for env in ("live", "test")}
        team = await runtime.tenancy.create_space(ops["live"], "Team")
        owner_id = founded.owner.id
        users = {
            "org_admin": await member(org_id, bob, "bob@acme.test", "admin"),
            "developer": await member(org_id, None, "dev@acme.test", "developer"),
            "viewer": await member(org_id, None, "vic@acme.test", "viewer"),
            "disabled": await member(org_id, cara, "cara@acme.test", "admin"),
        }
        sam = await runtime.tenancy.create_user(
            ops["live"], "sam@acme.test", role="admin", space_id=team.id
        )

        async def key(env: str, user_id: str | None, scopes: list[str]) -> str:
            made = await runtime.keys.create(ops[env], name="k", scopes=scopes, user_id=user_id)
            return made.plaintext

        keys = {
            "owner": await key("live", None, list(OWNER)),
            "space_admin": await key("live", sam.id, ["*"]),
            "developer": await key("live", users["developer"], ["*"]),
            "viewer": await key("live", users["viewer"], ["*"]),
            "test_key": await key("test", None, list(OWNER)),
            "acting_key": await key("live", users["org_admin"], ["*"]),
            "disabled_key": await key("live", users["disabled"], ["*"]),
            "operator": await key("live", None, [*OWNER, "operator:*"]),
        }
        client_made = await runtime.clients.create(
            ops["live"], name="c", scopes=["*"], user_id=users["disabled"]
        )
        other = await runtime.tenancy.bootstrap(
            "Globex", "owner@globex.test", PASSWORD, allow_another=True
        )
        other_op = await runtime.operators.principal(other.org.id, "live")
        other_key = await runtime.keys.create(other_op, name="k", scopes=list(OWNER))
        keys["other_owner"] = other_key.plaintext
        # The org admin's own key, made by the admin (so it is that person's), signed in
        # to the dashboard as the dashboard's session principal is.
        admin = Principal(
            org_id,
            "live",
            founded.space.id,
            users["org_admin"],
            ScopeSet(["*"]),
            "ses_matrix",
            CredentialKind.SESSION,
        )
        own = await runtime.keys.create(admin, name="own", scopes=["*"])
        keys["org_admin"] = own.plaintext
        world = World(
            client,
            org_id,
            founded.space.id,
            team.id,
            ops,
            {
                **{k.name: owner_id for k in KINDS},
                "org_admin": users["org_admin"],
                "acting_key": users["org_admin"],
                "space_admin": sam.id,
                "developer": users["developer"],
                "viewer": users["viewer"],
            },
            {},
            {k.name: founded.space.id for k in KINDS},
            {"client_id": client_made.client.id, "client_secret": client_made.secret},
        )
        world.spaces["space_admin"] = team.id
        world.spaces["other_owner"] = other.space.id
        world.headers = {
            name: {"Authorization": f"Bearer {plaintext}", SPACE_HEADER: world.spaces[name]}
            for name, plaintext in keys.items()
        }
        return world

    world = client.portal.call(build)  # type: ignore[union-attr]
    c = world.client
    world.headers["org_admin"].pop(SPACE_HEADER)  # an org-wide role: any space will do
    # A token of the client, issued while its account was enabled; then the account is
    # disabled (the poller clears caches within its interval in every process).
    r = c.post(
        "/v1/auth/token", json={"grant_type": "client_credentials", **world.client_credentials}
    )
    assert r.status_code == 200, r.text
    world.headers["disabled_client"] = {"Authorization": f"Bearer {r.json()['access_token']}"}
    runtime = world.runtime
    world.call(runtime.portal.set_disabled, "cara@acme.test", True, CONTEXT)
    runtime.cache.clear()
    for name in ("org_admin", "acting_key"):
        assert c.get("/v1/keys", headers=world.headers[name]).status_code == 200
    for name in ("disabled_key", "disabled_client"):
        assert c.get("/v1/keys", headers=world.headers[name]).status_code == 401
    return world


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """Both organisations and every principal, made once per store for every cell."""
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("matrix") / "apiward.db"
        url = f"sqlite+aiosqlite:///{path}"
    else:
        url = require_postgres()
    app = create_app(_settings(url))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield _build(client)


# The rows: for each mutating route, the request one principal sends -----------------


@dataclass(frozen=True)
class Request:
    path: str
    json: Any = None
    data: dict[str, str] | None = None
    params: dict[str, str] | None = None


Prepare = Callable[[World, Kind], Request]


@dataclass(frozen=True)
class Row:
    prepare: Prepare
    has_target: bool = True
    """The request names something of the org in its path (another org's owner: 404)."""
    in_own_space: bool = True
    """The target lies in the space a space-only principal holds its role in."""


def _key(w: World, k: Kind, *, disabled: bool = False) -> str:
    op = w.operator(k)
    made = w.call(
        w.runtime.keys.create,
        op,
        name="target",
        scopes=["keys:read"],
        user_id=w.user(k),
        space_allow=[w.space(k)],
    )
    if disabled:
        w.call(w.runtime.keys.disable, op, made.key.id)
    return made.key.id


def _client(w: World, k: Kind) -> str:
    made = w.call(
        w.runtime.clients.create,
        w.operator(k),
        name="target",
        scopes=["keys:read"],
        user_id=w.user(k),
    )
    return made.client.id


def _webhook(w: World, k: Kind) -> str:
    """A new endpoint, once the ones earlier cells left are gone (an org has at most 20)."""
    webhooks, op = w.runtime.webhooks, w.operator(k)
    for endpoint in w.call(
        webhooks.list_endpoints, op, PageRequest(1, 100), environment=None
    ).items:
        w.call(webhooks.delete, op, endpoint.id)
    made = w.call(webhooks.create, op, url="https://hooks.acme.test/in", events=["key.revoked"])
    return made.endpoint.id


def _failed_delivery(w: World, k: Kind) -> str:
    """The path that sends again a failed delivery of a new endpoint."""
    hook = _webhook(w, k)
    sent = w.call(w.runtime.webhooks.send_test, w.operator(k), hook)
    failed = replace(sent, status="failed", next_attempt_at=None, completed_at=sent.created_at)

    async def fail() -> None:
        async with w.runtime.store.begin() as tx:
            await tx.finish_attempt(failed)

    w.call(fail)
    return f"/v1/webhooks/{hook}/deliveries/{sent.id}/redeliver"


def _user(w: World, k: Kind) -> str:
    user = w.call(
        w.runtime.tenancy.create_user,
        w.operators["live"],
        w.unique("member") + "@acme.test",
        role="viewer",
        space_id=w.space(k),
    )
    return user.id


def _role(w: World, k: Kind) -> str:
    name = w.unique("role-")
    w.call(w.runtime.tenancy.create_role, w.operators["live"], name, ["keys:read"])
    return name


def _invitation(w: World, k: Kind) -> str:
    email = w.unique("invitee") + "@acme.test"
    link = w.call(w.runtime.portal.invite, w.operators["live"], email, "viewer")
    return link.id


def _space(w: World, k: Kind) -> str:
    return w.call(w.runtime.tenancy.create_space, w.operators["live"], w.unique("Space ")).id


def _client_of(w: World, k: Kind) -> dict[str, str]:
    """The client's id and secret, for a principal that authenticates as a client."""
    return w.client_credentials if k.client else {}


def _token(w: World, k: Kind) -> dict[str, str]:
    return {"token": "not-a-token", **_client_of(w, k)}


KEY_BODY = {"name": "renamed", "external_id": "cus_matrix", "meta": {"plan": "pro"}}
ROWS: dict[tuple[str, str], Row] = {
    ("POST", "/v1/keys"): Row(
        lambda w, k: Request(
            "/v1/keys", {"name": "new", "scopes": ["keys:read"], "space_allow": [w.spaces[k.name]]}
        ),
        has_target=False,
    ),
    ("POST", "/v1/keys/verify"): Row(
        lambda w, k: Request("/v1/keys/verify", {"key": "aw_live_notakey"}), has_target=False
    ),
    ("PATCH", "/v1/keys/{key_id}"): Row(lambda w, k: Request(f"/v1/keys/{_key(w, k)}", KEY_BODY)),
    ("POST", "/v1/keys/{key_id}/disable"): Row(
        lambda w, k: Request(f"/v1/keys/{_key(w, k)}/disable")
    ),
    ("POST", "/v1/keys/{key_id}/enable"): Row(
        lambda w, k: Request(f"/v1/keys/{_key(w, k, disabled=True)}/enable")
    ),
    ("POST", "/v1/keys/{key_id}/revoke"): Row(
        lambda w, k: Request(f"/v1/keys/{_key(w, k)}/revoke")
    ),
    ("POST", "/v1/keys/{key_id}/roll"): Row(
        lambda w, k: Request(f"/v1/keys/{_key(w, k)}/roll", {"grace_seconds": 0})
    ),
    ("POST", "/v1/clients"): Row(
        lambda w, k: Request("/v1/clients", {"name": "new", "scopes": ["keys:read"]}),
        has_target=False,
    ),
    ("PATCH", "/v1/clients/{client_id}"): Row(
        lambda w, k: Request(f"/v1/clients/{_client(w, k)}", KEY_BODY)
    ),
    ("POST", "/v1/clients/{client_id}/revoke"): Row(
        lambda w, k: Request(f"/v1/clients/{_client(w, k)}/revoke")
    ),
    ("PATCH", "/v1/org"): Row(
        lambda w, k: Request("/v1/org", {"name": "Renamed"}), has_target=False
    ),
    ("POST", "/v1/spaces"): Row(
        lambda w, k: Request("/v1/spaces", {"name": w.unique("New ")}), has_target=False
    ),
    ("PATCH", "/v1/spaces/{space_id}"): Row(
        lambda w, k: Request(f"/v1/spaces/{_space(w, k)}", {"archived": True}), in_own_space=False
    ),
    ("POST", "/v1/users"): Row(
        lambda w, k: Request(
            "/v1/users",
            {
                "email": w.unique("new") + "@acme.test",
                "role": "viewer",
                "space_id": w.spaces[k.name],
            },
        ),
        has_target=False,
    ),
    ("PATCH", "/v1/users/{user_id}"): Row(
        lambda w, k: Request(f"/v1/users/{_user(w, k)}", {"name": "Renamed"})
    ),
    ("PUT", "/v1/users/{user_id}/memberships"): Row(
        lambda w, k: Request(
            f"/v1/users/{_user(w, k)}/memberships", {"role": "viewer", "space_id": w.space(k)}
        )
    ),
    ("DELETE", "/v1/users/{user_id}/memberships"): Row(
        lambda w, k: Request(
            f"/v1/users/{_user(w, k)}/memberships", params={"space_id": w.space(k)}
        )
    ),
    ("POST", "/v1/projects"): Row(
        lambda w, k: Request("/v1/projects", {"name": w.unique("Project ")}), has_target=False
    ),
    ("POST", "/v1/invitations"): Row(
        lambda w, k: Request(
            "/v1/invitations", {"email": w.unique("guest") + "@acme.test", "role": "viewer"}
        ),
        has_target=False,
    ),
    ("DELETE", "/v1/invitations/{invitation_id}"): Row(
        lambda w, k: Request(f"/v1/invitations/{_invitation(w, k)}")
    ),
    ("POST", "/v1/roles"): Row(
        lambda w, k: Request("/v1/roles", {"name": w.unique("new-"), "scopes": ["keys:read"]}),
        has_target=False,
    ),
    ("PATCH", "/v1/roles/{name}"): Row(
        lambda w, k: Request(f"/v1/roles/{_role(w, k)}", {"description": "changed"})
    ),
    ("DELETE", "/v1/roles/{name}"): Row(lambda w, k: Request(f"/v1/roles/{_role(w, k)}")),
    ("POST", "/v1/webhooks"): Row(
        lambda w, k: Request(
            "/v1/webhooks", {"url": "https://hooks.acme.test/new", "events": ["key.revoked"]}
        ),
        has_target=False,
    ),
    ("PATCH", "/v1/webhooks/{webhook_id}"): Row(
        lambda w, k: Request(f"/v1/webhooks/{_webhook(w, k)}", {"description": "changed"})
    ),
    ("DELETE", "/v1/webhooks/{webhook_id}"): Row(
        lambda w, k: Request(f"/v1/webhooks/{_webhook(w, k)}")
    ),
    ("POST", "/v1/webhooks/{webhook_id}/roll-secret"): Row(
        lambda w, k: Request(f"/v1/webhooks/{_webhook(w, k)}/roll-secret")
    ),
    ("POST", "/v1/webhooks/{webhook_id}/test"): Row(
        lambda w, k: Request(f"/v1/webhooks/{_webhook(w, k)}/test")
    ),
    ("POST", "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"): Row(
        lambda w, k: Request(_failed_delivery(w, k))
    ),
    ("POST", "/v1/auth/introspect"): Row(
        lambda w, k: Request("/v1/auth/introspect", data=_token(w, k)), has_target=False
    ),
    ("POST", "/v1/auth/revoke"): Row(
        lambda w, k: Request("/v1/auth/revoke", data=_token(w, k)), has_target=False
    ),
    ("POST", "/v1/auth/refresh"): Row(
        lambda w, k: Request(
            "/v1/auth/refresh", data={"refresh_token": "not-a-token", **_client_of(w, k)}
        ),
        has_target=False,
    ),
    ("POST", "/v1/auth/token"): Row(
        lambda w, k: Request(
            "/v1/auth/token",
            data={"grant_type": "client_credentials", **_client_of(w, k)},
        ),
        has_target=False,
    ),
}
"""Rows for the routes a credential opens; every other door's route is called with the
path filled in and compared with an anonymous request to it."""


def _filled(path: str) -> str:
    """A route's path with every parameter given a value that names nothing."""
    out, _, rest = path.partition("{")
    while _:
        _, _, rest = rest.partition("}")
        out += "none"
        more, _, rest = rest.partition("{")
        out += more
    return out


READS: dict[tuple[str, str], Row] = {
    ("GET", "/v1/keys/{key_id}/scope-usage"): Row(
        lambda w, k: Request(f"/v1/keys/{_key(w, k)}/scope-usage", params={"since": "7d"})
    ),
    ("GET", "/v1/clients/{client_id}/scope-usage"): Row(
        lambda w, k: Request(f"/v1/clients/{_client(w, k)}/scope-usage")
    ),
    ("GET", "/v1/keys/{key_id}/addresses"): Row(
        lambda w, k: Request(f"/v1/keys/{_key(w, k)}/addresses", params={"since": "7d"})
    ),
    ("GET", "/v1/keys/{key_id}/impact"): Row(
        lambda w, k: Request(
            f"/v1/keys/{_key(w, k)}/impact", params={"ip_allow": "10.0.0.0/8", "scopes": "a:b"}
        )
    ),
    ("GET", "/v1/clients/{client_id}/addresses"): Row(
        lambda w, k: Request(f"/v1/clients/{_client(w, k)}/addresses")
    ),
    ("GET", "/v1/clients/{client_id}/impact"): Row(
        lambda w, k: Request(f"/v1/clients/{_client(w, k)}/impact")
    ),
}
"""Reading routes the matrix covers too: what one credential's requests did, which
only its own organisation and environment may read."""


def _generic(path: str) -> Row:
    return Row(lambda w, k: Request(_filled(path), data={}), has_target=False)


# The hand-written expectations -------------------------------------------------------

HAND_WRITTEN: dict[tuple[str, str, str], Outcome] = {
    # A client reaches every space (a client's tokens are not kept to spaces), so a
    # space-only admin makes or changes none, even one acting as itself; revoking
    # restricts, so the route's permission is enough (docs/authority.md).
    ("POST", "/v1/clients", "space_admin"): EXCEEDS,
    ("PATCH", "/v1/clients/{client_id}", "space_admin"): EXCEEDS,
    ("POST", "/v1/clients/{client_id}/revoke", "space_admin"): OK,
    # Projects belong to portal accounts: the space admin, the developer... have none.
    ("POST", "/v1/projects", "space_admin"): NO_ACCOUNT,
    ("POST", "/v1/projects", "other_owner"): NO_ACCOUNT,
    # ... and only its person's own credentials act on an account (it spans orgs).
    ("POST", "/v1/projects", "acting_key"): EXCEEDS,
    # The developer role writes credentials, never people, roles or webhooks.
    ("POST", "/v1/webhooks", "developer"): INSUFFICIENT,
    ("POST", "/v1/users", "developer"): INSUFFICIENT,
    ("POST", "/v1/keys", "developer"): OK,
    # Introspection needs `tokens:introspect`, which neither `*:read` nor `keys:*` is.
    ("POST", "/v1/auth/introspect", "developer"): INSUFFICIENT,
    # A refresh token is its own credential: a client's secret beside it changes nothing.
    ("POST", "/v1/auth/refresh", "disabled_client"): ANONYMOUS,
    # Revocation asks for no credential (RFC 7009 answers 200 for unknown tokens), so
    # even a disabled user's key gets the anonymous answer.
    ("POST", "/v1/auth/revoke", "disabled_key"): ANONYMOUS,
    # A test key makes test keys, but changes nothing every environment shares.
    ("POST", "/v1/keys", "test_key"): OK,
    ("PATCH", "/v1/org", "test_key"): EXCEEDS,
    ("PATCH", "/v1/spaces/{space_id}", "test_key"): EXCEEDS,
    ("PATCH", "/v1/users/{user_id}", "test_key"): EXCEEDS,
    ("POST", "/v1/projects", "test_key"): EXCEEDS,
    # Space reach: a space-only admin manages the people of its own space only, and
    # nothing of the whole organisation.
    ("PATCH", "/v1/users/{user_id}", "space_admin"): OK,
    ("PUT", "/v1/users/{user_id}/memberships", "space_admin"): OK,
    ("PATCH", "/v1/org", "space_admin"): EXCEEDS,
    ("POST", "/v1/spaces", "space_admin"): EXCEEDS,
    ("POST", "/v1/invitations", "space_admin"): EXCEEDS,
    ("POST", "/v1/roles", "space_admin"): EXCEEDS,
    # Another organisation's owner finds nothing of this one, and makes its own things.
    ("PATCH", "/v1/keys/{key_id}", "other_owner"): NOT_FOUND,
    ("DELETE", "/v1/roles/{name}", "other_owner"): NOT_FOUND,
    ("POST", "/v1/keys", "other_owner"): OK,
    # The operator may do all of it.
    ("PATCH", "/v1/org", "operator"): OK,
    ("DELETE", "/v1/invitations/{invitation_id}", "operator"): OK,
}
"""Expectations written by hand: the surprising cells, and anchors of the generator."""

KNOWN_OPEN: dict[tuple[str, str, str], str] = {}
"""Cells known to answer other than they should, each a strict xfail (so a fix shows by
failing it) with the reason: none are open now."""


# The tests ---------------------------------------------------------------------------

_APP = create_app(_settings("sqlite+aiosqlite:///:memory:"))  # read, never started
_MUTATING = list(mutating_routes(_APP))
_READ = [
    (method, path, needs_of(route))
    for path, route in routes_of(_APP)
    for method in sorted(route.methods or ())
    if (method, path) in READS
]


def _row(method: str, path: str) -> Row:
    return ROWS.get((method, path)) or READS.get((method, path)) or _generic(path)


def _expected(method: str, path: str, needs: Needs, row: Row, kind: Kind) -> Outcome:
    hand = HAND_WRITTEN.get((method, path, kind.name))
    if hand is not None:
        return hand
    return generated(needs, row.has_target, row.in_own_space, kind)


def _cells() -> Iterator[Any]:
    for method, path, _ in (*_MUTATING, *_READ):
        for kind in KINDS:
            cell = (method, path, kind.name)
            marks = []
            if cell in KNOWN_OPEN:
                marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_OPEN[cell]))
            yield pytest.param(
                method, path, kind.name, id=f"{method} {path} {kind.name}", marks=marks
            )


def _send(world: World, method: str, request: Request, headers: dict[str, str]) -> Any:
    return world.client.request(
        method,
        request.path,
        headers=headers,
        json=request.json,
        data=request.data,
        params=request.params,
        follow_redirects=False,
    )


def _outcome(response: Any) -> Outcome:
    status = response.status_code
    if 200 <= status < 300:
        return OK
    if status in (302, 303):
        location = response.headers.get("location", "")
        return Outcome(303, location.partition("?")[0]) if "/login" in location else OK
    if status == 403 and response.headers.get("content-type", "").startswith("application/json"):
        return Outcome(403, response.json().get("reason"))
    return Outcome(status)


@pytest.mark.parametrize(("method", "path", "kind_name"), list(_cells()))
def test_route_matrix(world: World, method: str, path: str, kind_name: str) -> None:
    """One principal on one mutating route (or one of ``READS``) gets what the route
    declares for it."""
    kind = BY_NAME[kind_name]
    needs = needs_of_path(method, path)
    row = _row(method, path)
    expected = _expected(method, path, needs, row, kind)
    request = row.prepare(world, kind)
    headers = dict(world.headers[kind.name])
    if needs.door is Door.CLIENT and kind.client:
        headers.pop("Authorization")  # the client's secret is in the body
    got = _outcome(_send(world, method, request, headers))
    if expected == ANONYMOUS:
        expected = _outcome(_send(world, method, row.prepare(world, kind), {}))
        assert expected.status != 200 or needs.door in (Door.CLIENT, Door.PUBLIC), expected
    assert got == expected, f"{method} {request.path} as {kind.name}: {got}, expected {expected}"


def needs_of_path(method: str, path: str) -> Needs:
    for m, p, needs in (*_MUTATING, *_READ):
        if (m, p) == (method, path):
            assert needs is not None, f"{method} {path} declares nothing"
            return needs
    raise AssertionError(f"{method} {path} is not a route of the app")


def test_every_route_declares_what_it_needs() -> None:
    """Every route of the server (management, dashboard and portal included) declares
    what it needs."""
    assert len(list(routes_of(_APP))) > 100
    assert undeclared(_APP) == []


def test_a_route_without_a_declaration_is_found() -> None:
    """The check reads the router: a route added with no declaration is named."""
    app = create_app(_settings("sqlite+aiosqlite:///:memory:"))

    @app.post("/v1/forgotten")
    async def forgotten() -> dict[str, str]:
        return {}

    assert undeclared(app) == ["/v1/forgotten"]
    assert ("POST", "/v1/forgotten", None) in list(mutating_routes(app))


def test_the_matrix_has_a_row_for_every_mutating_route() -> None:
    """A route opened by a credential needs a row saying what to send; the others are
    compared with an anonymous request, and every hand-written cell names a real one."""
    credential = {
        (m, p)
        for m, p, needs in _MUTATING
        if needs is not None and needs.door in (Door.CREDENTIAL, Door.CLIENT)
    }
    assert credential <= set(ROWS), sorted(credential - set(ROWS))
    routes = {(m, p) for m, p, _ in _MUTATING}
    assert set(ROWS) <= routes, sorted(set(ROWS) - routes)
    assert {(m, p) for m, p, _ in _READ} == set(READS), "a read row names no route"
    for method, path, name in (*HAND_WRITTEN, *KNOWN_OPEN):
        assert (method, path) in routes and name in BY_NAME, (method, path, name)


@pytest.mark.parametrize(
    ("method", "path", "kind_name"),
    [cell for cell in HAND_WRITTEN if HAND_WRITTEN[cell] != ANONYMOUS],
)
def test_the_generator_agrees_with_the_hand_written_anchors(
    method: str, path: str, kind_name: str
) -> None:
    """Where the hand-written table is not an exception to the declarations, the
    generator says the same: the generator is checked against expectations written
    without it."""
    needs = needs_of_path(method, path)
    row = _row(method, path)
    kind = BY_NAME[kind_name]
    if (method, path, kind_name) in EXCEPTIONS:
        assert (
            generated(needs, row.has_target, row.in_own_space, kind)
            != HAND_WRITTEN[method, path, kind_name]
        )
    else:
        assert (
            generated(needs, row.has_target, row.in_own_space, kind)
            == HAND_WRITTEN[method, path, kind_name]
        )


EXCEPTIONS = {
    ("POST", "/v1/clients", "space_admin"),
    ("PATCH", "/v1/clients/{client_id}", "space_admin"),
}
"""Hand-written cells where the services decide more than the declaration says."""
