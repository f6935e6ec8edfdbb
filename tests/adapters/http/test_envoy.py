"""Forward auth as Envoy's ``ext_authz`` asks it (docs/forward-auth.md, docs/envoy.yaml).

No Envoy binary is available to the tests: each check is the request ``ext_authz``'s
HTTP service sends for a client's request, built as the ASGI scope a server gives
apiward for it. Envoy asks with the client's method, at ``path_prefix``
(``/v1/auth/check``) followed by the client's request target, query included, with the
headers ``allowed_headers`` names; the raw path is the one received, escapes undecoded.
Every test runs twice: with the edge's fast paths, and with the routes answering (the
server app with a middleware of its own), which must give the same answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from apiward.adapters.http.access import needs_of, routes_of
from apiward.adapters.http.app import create_app
from apiward.adapters.http.edge import ServerApp
from apiward.adapters.http.routes import check
from apiward.server import Apiward
from tests.adapters.http.proxy_keys import CREDITS, ROUTES, proxy_keys
from tests.conftest import bootstrap, fast_settings, migrated_sqlite

DOCS = Path(__file__).parents[3] / "docs"
IDENTITY = ["Org", "Environment", "Space", "User", "Client", "Scopes", "Credential"]
IDENTITY += ["Credential-Kind", "Api-Version", "External-Id"]


class PassThrough:
    """A middleware of the app's own: the routes answer, not the edge's fast paths."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


Answer = tuple[int, dict[str, str], bytes]


@dataclass
class Envoy:
    client: TestClient
    org_id: str
    keys: dict[str, str]
    key_ids: dict[str, str]

    def ask(self, method: str, target: str, key: str | None = None, **headers: str) -> Answer:
        """What ``ext_authz`` sends apiward for the client's ``method target``: the
        check's path is ``path_prefix`` + the target; the server splits the query off and
        decodes the path, and keeps the raw path as received."""
        raw, _, query = (check.PATH + target).encode("latin-1").partition(b"?")
        sent = {"host": "apiward.internal", "content-length": "0", **headers}
        if key:
            sent["authorization"] = f"Bearer {self.keys[key]}"
        return self.call(
            {
                "method": method,
                "path": unquote(raw.decode("latin-1")),
                "raw_path": raw,
                "query_string": query,
                "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in sent.items()],
            }
        )

    def call(self, fields: dict[str, Any]) -> Answer:
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "scheme": "http",
            "root_path": "",
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
            **fields,
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            sent.append(dict(message))

        app: ASGIApp = self.client.app

        async def run() -> None:
            await app(scope, receive, send)

        self.client.portal.call(run)  # type: ignore[union-attr]
        start = next(m for m in sent if m["type"] == "http.response.start")
        headers = {k.decode(): v.decode("latin-1") for k, v in start["headers"]}
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return start["status"], headers, body

    def credits_left(self) -> int:
        admin = {"Authorization": f"Bearer {self.keys['admin']}"}
        key = self.client.get(f"/v1/keys/{self.key_ids['metered']}", headers=admin)
        left: int = key.json()["credits"]["remaining"]
        return left


def _keys(client: TestClient) -> tuple[str, dict[str, str], dict[str, str]]:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    org = bootstrap(client)

    async def run() -> tuple[dict[str, str], dict[str, str]]:
        return await proxy_keys(runtime, org.id)

    keys, ids = client.portal.call(run)  # type: ignore[union-attr]
    return org.id, keys, ids


def _app(tmp_path: Path, answered_by: str, proxy: str = "envoy") -> FastAPI:
    settings = fast_settings(
        database_url=migrated_sqlite(tmp_path / "e.db"),
        forward_auth_proxy=proxy,
        rate_limit_routes=ROUTES,
    )
    app = create_app(settings)
    if answered_by == "routes":
        app.add_middleware(PassThrough)
    return app


@pytest.fixture(params=["fast paths", "routes"])
def envoy(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Envoy]:
    app = _app(tmp_path, request.param)
    with TestClient(app) as client:
        assert isinstance(app, ServerApp)
        fast = (check.ENVOY_PREFIX,) if request.param == "fast paths" else ()
        assert app.fast_prefixes == fast
        yield Envoy(client, *_keys(client))


THINGS = {"X-Apiward-Require": "things:read"}


def test_the_check_is_served_at_envoys_path_prefix(envoy: Envoy) -> None:
    """``ext_authz`` asks at ``path_prefix`` + the client's path: judged on that path."""
    status, headers, body = envoy.ask("GET", "/v1/things", "reader", **THINGS)
    assert status == 200, body
    assert headers["ratelimit-policy"].startswith('"things-route";q=4;w=60')
    assert headers["x-apiward-scopes"] == "things:read"
    assert envoy.ask("GET", "/v1/things", "other", **THINGS)[0] == 403
    assert envoy.ask("GET", "/v1/things", None, **THINGS)[0] == 401


def test_a_clients_original_path_header_is_not_read(envoy: Envoy) -> None:
    """Envoy sets ``X-Envoy-Original-Path`` only once its router rewrote a path; a client
    may send it, and the other proxies' headers, itself."""
    claims = {"X-Envoy-Original-Path": "/v1/events/1", "X-Original-URI": "/v1/events/1"}
    claims["X-Forwarded-Uri"] = "/v1/events/1"
    status, headers, _ = envoy.ask("GET", "/v1/things", "reader", **claims)
    assert status == 200
    assert '"things-route"' in headers["ratelimit-policy"]


# Spellings of /v1/things, and of paths near it, as a client can send them to Envoy (its
# own normalisation, docs/envoy.yaml, turned off): each is judged as the one path every
# upstream reads, or refused when upstreams read it differently.
SAME_AS_THINGS = [
    "/v1/things",
    "/v1/things/",
    "/v1/things/.",
    "/v1/things/./",
    "/v1/things?x=1",
    "/v1/things?scope=admin:all",
    "/v1/things?/../../invoices",
    "/v1/%74hings",
    "/v1/%74%68ings/",
    "/v1//things",
    "/v1/./things",
    "/v1/x/../things",
]
REFUSED = [
    "/v1/things;x",
    "/v1/things;x/",
    "/v1/things%3Bx",
    "/v1/invoices\\..\\things",
    "/v1/invoices%5C..%5Cthings",
    "/v1/invoices%2F..%2Fthings",
    "/v1/invoices/..%2Fthings",
    "/v1/invoices/%2e%2e/things",
    "/v1/invoices/.%2E/things",
    "/v1/events/%2E%2E/things",
    "/v1/invoices/..;/things",
    "/v1/invoices#/../../things",
    "/v1/invoices/%09../things",
    "/v1/x%0Ay/../../things",
    "/v1/things%0A",
    "//v1/things",
    "/v1/things%00",
    "/v1/things%2F",
    "/v1/../../things",
]
OTHERS = {"/v1/THINGS": 200, "/v1/invoices": 200, "/v1/events/1": 200, "": 200, "/": 200}
METHODS = ["GET", "POST", "DELETE", "HEAD"]


@pytest.mark.parametrize("method", METHODS)
def test_a_spent_route_limit_stays_spent_for_every_spelling(envoy: Envoy, method: str) -> None:
    """Once a key spent its limit on /v1/things (the DELETE rule's for DELETE), every
    spelling of /v1/things is a 429, every spelling upstreams read differently a 400,
    before anything is spent, and the paths near it are not limited."""
    key = "writer-DELETE" if method == "DELETE" else "writer-GET"
    spent = [envoy.ask(method, "/v1/things", key)[0] for _ in range(5)]
    assert spent == ([200] + [429] * 4 if method == "DELETE" else [200] * 4 + [429])
    answers = {t: envoy.ask(method, t, key)[0] for t in SAME_AS_THINGS + REFUSED}
    assert answers == {**dict.fromkeys(SAME_AS_THINGS, 429), **dict.fromkeys(REFUSED, 400)}
    assert {t: envoy.ask(method, t, key)[0] for t in OTHERS} == OTHERS


@pytest.mark.parametrize("method", METHODS)
def test_no_spelling_takes_a_key_past_the_scopes_a_location_needs(
    envoy: Envoy, method: str
) -> None:
    """The proxy names the scopes its location needs; no spelling of the path changes
    that, and no query parameter of the client's (``scope`` included) adds to it."""
    other = {t: envoy.ask(method, t, "other", **THINGS)[0] for t in SAME_AS_THINGS}
    assert other == dict.fromkeys(SAME_AS_THINGS, 403)
    within = SAME_AS_THINGS[: 1 if method == "DELETE" else 4]  # the route limits
    reader = {t: envoy.ask(method, t, "reader", **THINGS)[0] for t in within}
    assert reader == dict.fromkeys(within, 200)


def test_the_clients_query_is_never_the_checks_scope_parameter(envoy: Envoy) -> None:
    """The check's query string under ``path_prefix`` is the client's: an upstream's own
    ``scope`` parameter is no scope requirement, however many or malformed."""
    many = "&".join(f"scope=s{i}:read" for i in range(30))
    for target in [f"/v1/invoices?{many}", "/v1/invoices?scope=not+a+scope!", "/?scope=x:y"]:
        status, _, body = envoy.ask("GET", target, "reader")
        assert status == 200, (target, body)
    # The bare check is never Envoy's (a client's path starts with '/'): its query is its own.
    assert envoy.ask("GET", "?scope=customers:write", "reader")[0] == 403


def test_the_bare_check_is_the_check_of_the_root(envoy: Envoy) -> None:
    """``/v1/auth/check`` under ``envoy`` judges ``/``: nothing follows the prefix."""
    claims = {"X-Envoy-Original-Path": "/v1/things"}
    for _ in range(5):
        status, headers, _ = envoy.ask("GET", "", "reader", **claims)
        assert status == 200
        assert "things" not in headers.get("ratelimit-policy", "")


def test_the_checks_own_method_is_the_original(envoy: Envoy) -> None:
    """Envoy asks with the client's method: route rules see it, the other proxies'
    method headers are the client's, and a method override naming another is a 400."""
    claims = {"X-Original-Method": "GET", "X-Forwarded-Method": "GET"}
    reads = [envoy.ask("GET", "/v1/events/1", "limited", **claims)[0] for _ in range(4)]
    writes = [envoy.ask(m, "/v1/events/1", "limited", **claims)[0] for m in ("POST", "DELETE")]
    assert (reads, writes) == ([200] * 4, [200, 200])
    assert envoy.ask("PUT", "/v1/events/1", "limited")[0] == 429
    for name in ["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"]:
        status, _, body = envoy.ask("POST", "/v1/things", "writer-DELETE", **{name: "DELETE"})
        assert status == 400 and b"method-override" in body
    deletes = [envoy.ask("DELETE", "/v1/things/", "writer-DELETE")[0] for _ in range(2)]
    assert deletes == [200, 429]


def test_every_allowed_request_is_charged_once(envoy: Envoy) -> None:
    """A metered key pays one credit for each request the check lets through, by
    whatever spelling, and nothing for a refusal or an exempt read of /v1/events."""
    allowed = [*SAME_AS_THINGS[:4], "/v1/invoices", "/v1/invoices/"]
    statuses = [envoy.ask("POST", t, "metered")[0] for t in allowed]
    assert statuses == [200] * len(allowed)
    refused = [envoy.ask("POST", t, "metered")[0] for t in REFUSED[:5]]
    assert refused == [400] * 5
    assert envoy.ask("POST", "/v1/things", "metered", **{"X-Apiward-Require": "x:y"})[0] == 403
    assert envoy.ask("GET", "/v1/events/1", "metered")[0] == 200
    assert envoy.credits_left() == CREDITS - len(allowed)


def test_every_identity_header_is_always_sent(envoy: Envoy) -> None:
    """Envoy's ``allowed_upstream_headers`` overwrites only the headers the answer
    carries: every one is sent, empty without a value (an API key has no client)."""
    forged = {f"X-Apiward-{name}": "forged" for name in IDENTITY}
    for target in ["/v1/things", "/v1/things?x=1", "/"]:
        status, headers, _ = envoy.ask("GET", target, "reader", **forged)
        assert status == 200
        assert {f"x-apiward-{n.lower()}" for n in IDENTITY} <= set(headers)
        assert headers["x-apiward-client"] == ""
        assert headers["x-apiward-org"] == envoy.org_id


def test_a_check_without_a_raw_path_is_refused(envoy: Envoy) -> None:
    """Without the path as received, ``%2e%2e`` would arrive decoded and be resolved."""
    auth = [(b"authorization", f"Bearer {envoy.keys['reader']}".encode())]
    fields = {"method": "GET", "path": "/v1/auth/check/v1/things", "query_string": b""}
    assert envoy.call({**fields, "headers": auth})[0] == 400
    encoded = {"path": "/v1/auth/check/v1/things", "raw_path": b"/v1/auth/%63heck/v1/things"}
    assert envoy.call({**fields, **encoded, "headers": auth})[0] == 400


@pytest.mark.parametrize("proxy", ["nginx", "traefik"])
@pytest.mark.parametrize("answered_by", ["fast paths", "routes"])
def test_other_proxies_have_no_check_under_the_prefix(
    tmp_path: Path, proxy: str, answered_by: str
) -> None:
    """A client of another proxy could name any path there: it does not exist."""
    app = _app(tmp_path, answered_by, proxy)
    assert not [p for p, _ in routes_of(app) if p.startswith(check.ENVOY_PREFIX)]
    with TestClient(app) as client:
        org = bootstrap(client)
        assert client.get("/v1/auth/check/v1/things", headers=org.headers()).status_code == 404
        assert client.get("/v1/auth/check", headers=org.headers()).status_code == 200


def test_the_envoy_route_declares_what_it_needs(tmp_path: Path) -> None:
    """docs/authority.md: the route exists under ``envoy`` only, declared like the check."""
    app = _app(tmp_path, "fast paths")
    found = {p: needs_of(r) for p, r in routes_of(app) if p.startswith(check.PATH)}
    assert set(found) == {check.PATH, check.ENVOY_ROUTE}
    assert found[check.PATH] == found[check.ENVOY_ROUTE] is not None


# docs/envoy.yaml -----------------------------------------------------------------------


def _ext_authz(config: dict[str, Any]) -> dict[str, Any]:
    listener = config["static_resources"]["listeners"][0]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    filters = manager["http_filters"]
    names = [f["name"] for f in filters]
    assert names.index("envoy.filters.http.ext_authz") < names.index("envoy.filters.http.router")
    found: dict[str, Any] = filters[names.index("envoy.filters.http.ext_authz")]["typed_config"]
    return found


def _patterns(matcher: dict[str, Any]) -> set[str]:
    return {p["exact"].lower() for p in matcher["patterns"] if "exact" in p}


def test_the_shipped_envoy_configuration_asks_as_apiward_reads() -> None:
    """The fields of docs/envoy.yaml this contract depends on (no Envoy binary here to
    run it): the HTTP service at ``path_prefix: /v1/auth/check`` on a defined cluster,
    failing closed, with the credential and the scopes sent, and every identity header
    copied over the client's."""
    config = yaml.safe_load((DOCS / "envoy.yaml").read_text())
    authz = _ext_authz(config)
    assert authz["@type"].endswith("extensions.filters.http.ext_authz.v3.ExtAuthz")
    assert authz.get("failure_mode_allow", False) is False
    assert "with_request_body" not in authz  # the check reads headers only
    service = authz["http_service"]
    assert service["path_prefix"] == check.PATH
    clusters = {c["name"] for c in config["static_resources"]["clusters"]}
    assert service["server_uri"]["cluster"] in clusters
    sent = _patterns(service["authorization_request"]["allowed_headers"])
    assert {"authorization", check.REQUIRE_HEADER} <= sent
    assert not sent & {"x-envoy-original-path", "x-original-uri", "x-forwarded-uri"}
    upstream = _patterns(service["authorization_response"]["allowed_upstream_headers"])
    assert upstream >= {f"x-apiward-{n.lower()}" for n in IDENTITY}
    # Before ext_authz, the client's X-Apiward-Require is dropped; the routes set theirs.
    filters = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    chain = [f["name"] for f in filters["typed_config"]["http_filters"]]
    assert chain.index("envoy.filters.http.header_mutation") < chain.index(
        "envoy.filters.http.ext_authz"
    )
    mutation = filters["typed_config"]["http_filters"][0]["typed_config"]["mutations"]
    assert {"remove": check.REQUIRE_HEADER} in mutation["request_mutations"]
    routes = filters["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    assert routes[-1]["match"] == {"prefix": "/"} and routes[-1]["direct_response"]


def test_the_configurations_identity_headers_are_the_checks() -> None:
    """``allowed_upstream_headers`` names exactly the headers a 200 carries for the
    upstream, so a new one cannot be left for the client to set."""
    config = yaml.safe_load((DOCS / "envoy.yaml").read_text())
    upstream = _patterns(
        _ext_authz(config)["http_service"]["authorization_response"]["allowed_upstream_headers"]
    )
    assert upstream == {f"x-apiward-{n.lower()}" for n in IDENTITY}


def test_an_app_apiward_is_embedded_in_serves_envoys_check_too(tmp_path: Path) -> None:
    """``init_app`` under ``envoy``: the route and its fast path in the host app."""
    host = FastAPI()
    settings = fast_settings(
        database_url=migrated_sqlite(tmp_path / "h.db"),
        forward_auth_proxy="envoy",
        rate_limit_routes=ROUTES,
    )
    Apiward(settings).init_app(host, management_routes=True)
    with TestClient(host) as client:
        org = bootstrap(client)
        r = client.get("/v1/auth/check/v1/things?scope=x:y", headers=org.headers())
        assert r.status_code == 200, r.text
        assert '"things-route"' in r.headers["ratelimit-policy"]
        assert (
            client.get("/v1/auth/check/v1/%2e%2e/things", headers=org.headers()).status_code == 400
        )
