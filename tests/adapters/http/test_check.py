"""Forward auth (`/v1/auth/check`), the verify API, and API versions."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from apiward.adapters.http.app import create_app
from apiward.adapters.settings import ApiVersion, Settings
from tests.conftest import Org, bootstrap, fast_settings, migrated_sqlite

# Writes to /v1/things are limited; reading /v1/events is exempt, writing it is not.
ROUTES = [
    {
        "route": "/v1/things",
        "methods": ["POST", "DELETE"],
        "limits": [{"name": "things-writes", "rate": "2/minute"}],
    },
    {"route": "/v1/events*", "methods": ["GET"], "exempt": True},
]


@pytest.fixture
def settings(sqlite_url: str) -> Settings:
    """The apps of this module have route rules that depend on the original method."""
    return fast_settings(database_url=sqlite_url, rate_limit_routes=ROUTES)


def test_check_allows_and_sends_identity_headers(org: Org) -> None:
    key = org.create_key(["customers:read"])
    r = org.client.get(
        "/v1/auth/check", headers={**org.headers(key["key"]), "X-Apiward-Require": "customers:read"}
    )
    assert r.status_code == 200
    assert r.headers["x-apiward-org"] == org.id
    assert r.headers["x-apiward-environment"] == "live"
    assert r.headers["x-apiward-space"] == org.space_id
    assert r.headers["x-apiward-user"] == org.owner_id
    assert r.headers["x-apiward-scopes"] == "customers:read"
    assert r.headers["x-apiward-credential"] == key["id"]
    assert r.headers["x-apiward-credential-kind"] == "api_key"
    assert key["key"] not in str(r.headers)


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE", "HEAD"])
def test_check_answers_any_method(org: Org, method: str) -> None:
    r = org.client.request(method, "/v1/auth/check", headers=org.headers())
    assert r.status_code == 200


def test_check_refusals_carry_status_body_and_challenge(org: Org) -> None:
    key = org.create_key(["customers:read"])["key"]
    missing = org.client.get("/v1/auth/check")
    assert missing.status_code == 401 and missing.json()["reason"] == "MISSING_CREDENTIAL"
    assert missing.headers["www-authenticate"] == 'Bearer realm="apiward"'
    denied = org.client.get("/v1/auth/check?scope=customers:write", headers=org.headers(key))
    assert denied.status_code == 403
    assert denied.json()["message"].endswith("customers:write")
    bad = org.client.get(
        "/v1/auth/check", headers={**org.headers(key), "X-Apiward-Require": "not a scope!"}
    )
    assert bad.status_code == 400


def test_check_for_nginx_folds_statuses_into_401_and_403(org: Org) -> None:
    key = org.create_key(["customers:read"])["key"]
    nginx = {"X-Apiward-Proxy": "nginx"}
    r = org.client.get("/v1/auth/check", headers={**nginx, "Authorization": "Bearer nope"})
    assert r.status_code == 401
    assert r.headers["x-apiward-status"] == "401"
    body = json.loads(r.headers["x-apiward-error"])
    assert body["reason"] == "INVALID_KEY"
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = org.client.get("/v1/auth/check?scope=x:y", headers={**nginx, **org.headers(key)})
    assert (r.status_code, r.headers["x-apiward-status"]) == (403, "403")
    assert r.content == b""


IDENTITY = {
    "x-apiward-org",
    "x-apiward-environment",
    "x-apiward-space",
    "x-apiward-user",
    "x-apiward-client",
    "x-apiward-scopes",
    "x-apiward-credential",
    "x-apiward-credential-kind",
    "x-apiward-api-version",
    "x-apiward-external-id",
}
FAST_AND_ROUTED = ["/v1/auth/check", "/v1/auth/check?scope=customers:read"]
"""A check without a query string is the fast path's; with one, the route's code."""


@pytest.mark.parametrize("path", FAST_AND_ROUTED)
def test_identity_headers_are_always_sent_empty_without_a_value(org: Org, path: str) -> None:
    """Every proxy overwrites what the client sent under these names, when apiward sends
    them all (Envoy passes a client's header that the check's answer lacks)."""
    key = org.create_key(["customers:read"])["key"]
    r = org.client.get(path, headers=org.headers(key, **{"X-Apiward-Client": "forged"}))
    assert r.status_code == 200
    assert set(r.headers) >= IDENTITY
    assert r.headers["x-apiward-client"] == ""  # an API key has no client


def _settings_for(tmp_path: Path, proxy: str) -> Settings:
    return fast_settings(
        database_url=migrated_sqlite(tmp_path / "p.db"),
        rate_limit_routes=ROUTES,
        forward_auth_proxy=proxy,
    )


@pytest.mark.parametrize(
    ("proxy", "path_header", "method_header", "other"),
    [
        ("nginx", "X-Original-URI", "X-Original-Method", "X-Forwarded-Method"),
        ("traefik", "X-Forwarded-Uri", "X-Forwarded-Method", "X-Original-Method"),
    ],
)
@pytest.mark.parametrize("path", FAST_AND_ROUTED)
def test_route_rules_apply_to_the_method_the_declared_proxy_reports(
    tmp_path: Path, proxy: str, path_header: str, method_header: str, other: str, path: str
) -> None:
    """The proxy asks with GET whatever the client's method; a rule for writes applies
    to the method in the proxy's header, and another proxy's header is the client's."""
    with TestClient(create_app(_settings_for(tmp_path, proxy))) as client:
        org = bootstrap(client)
        key = org.create_key(["customers:read"])["key"]

        def check(method: str, **extra: str) -> int:
            original = {path_header: "/v1/things", method_header: method, **extra}
            status: int = client.get(path, headers=org.headers(key, **original)).status_code
            return status

        assert [check("GET", **{other: "POST"}) for _ in range(3)] == [200, 200, 200]
        assert [check(m) for m in ("POST", "DELETE", "POST", "delete", "GET")] == [
            200,
            200,
            429,
            429,
            200,
        ]


@pytest.mark.parametrize("path", ["/v1/auth/check/v1/things", "/v1/auth/check/v1/things?x=1"])
def test_under_envoy_the_check_requests_own_method_is_the_original(
    tmp_path: Path, path: str
) -> None:
    """Envoy's ``ext_authz`` asks with the client's method, at ``/v1/auth/check`` + the
    client's path (tests/adapters/http/test_envoy.py); method headers are the client's."""
    with TestClient(create_app(_settings_for(tmp_path, "envoy"))) as client:
        org = bootstrap(client)
        key = org.create_key(["customers:read"])["key"]
        claims = {"X-Original-Method": "GET", "X-Forwarded-Method": "GET"}
        headers = org.headers(key, **claims)
        answers = [client.request(m, path, headers=headers).status_code for m in ("POST",) * 3]
        assert answers == [200, 200, 429]
        assert client.get(path, headers=headers).status_code == 200


@pytest.mark.parametrize("path", FAST_AND_ROUTED)
def test_a_method_specific_exemption_exempts_only_its_methods(org: Org, path: str) -> None:
    key = org.create_key(["customers:read"], rate_limits=[{"name": "k", "rate": "1/hour"}])["key"]

    def check(method: str) -> int:
        original = {"X-Original-URI": "/v1/events/1", "X-Original-Method": method}
        status: int = org.client.get(path, headers=org.headers(key, **original)).status_code
        return status

    assert [check("GET") for _ in range(3)] == [200, 200, 200]
    assert [check("POST"), check("POST"), check("GET")] == [200, 429, 200]


@pytest.mark.parametrize("path", FAST_AND_ROUTED)
def test_every_spelling_of_a_route_is_one_route_to_its_rules(org: Org, path: str) -> None:
    """A trailing slash, a trailing '.', escapes, repeated slashes and dot segments name
    the route a rule names."""
    key = org.create_key(["customers:read"])["key"]
    spellings = ["/v1/things/", "/v1/things/.", "/v1/%74hings", "/v1//things", "/v1/x/../things"]

    def check(uri: str) -> int:
        original = {"X-Original-URI": uri, "X-Original-Method": "POST"}
        status: int = org.client.get(path, headers=org.headers(key, **original)).status_code
        return status

    assert [check(s) for s in ["/v1/things?page=1", *spellings]] == [200, 200] + [429] * 4


@pytest.mark.parametrize("path", FAST_AND_ROUTED)
@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("X-Original-Method", "GET POST", "original request's method"),
        ("X-Original-Method", "G\u00c9T", "original request's method"),
        ("X-Original-URI", "/v1/invoices\\..\\things", "original request's path"),
        ("X-Original-URI", "/v1/things;x", "original request's path"),
        ("X-Original-URI", "/v1/things/%2e%2e/x", "original request's path"),
        ("X-HTTP-Method-Override", "DELETE", "method-override header"),
        ("X-HTTP-Method", "delete", "method-override header"),
        ("X-Method-Override", "PUT", "method-override header"),
    ],
)
def test_an_original_request_without_one_meaning_is_a_400(
    org: Org, path: str, name: str, value: str, message: str
) -> None:
    headers = [*org.headers().items(), (name, value)]
    r = org.client.get(path, headers=[(k.encode(), v.encode()) for k, v in headers])
    assert r.status_code == 400
    assert message in r.json()["message"]


@pytest.mark.parametrize("path", FAST_AND_ROUTED)
def test_every_require_line_counts(org: Org, path: str) -> None:
    """Scopes a proxy adds on a line of its own are required with the client's."""
    key = org.create_key(["customers:read"])["key"]
    for lines in (["customers:read", "customers:write"], ["customers:write", "customers:read"]):
        required = [("X-Apiward-Require", line) for line in lines]
        r = org.client.get(path, headers=[*org.headers(key).items(), *required])
        assert r.status_code == 403
        assert r.json()["message"].endswith("customers:write")
    both = [("X-Apiward-Require", "customers:read,"), ("X-Apiward-Require", " customers:read")]
    assert org.client.get(path, headers=[*org.headers(key).items(), *both]).status_code == 200


def test_check_is_answered_before_the_router_with_the_same_envelope(org: Org) -> None:
    """The fast path keeps what the route gave: request ids, errors, metrics labels."""
    r = org.client.get("/v1/auth/check", headers={"X-Request-Id": "req-42"})
    assert r.status_code == 401
    assert r.headers["x-request-id"] == "req-42"
    assert r.json()["request_id"] == "req-42"
    many = "&".join(f"scope=a:{i}" for i in range(21))
    r = org.client.get(f"/v1/auth/check?{many}", headers=org.headers())
    assert r.status_code == 400
    assert "at most 20 scopes" in r.json()["message"]
    metrics = org.client.get("/metrics").text
    assert 'route="/v1/auth/check"' in metrics
    assert 'route="unmatched"' not in metrics


Call = tuple[str, str, dict[str, str] | list[tuple[str, str]], Any]
"""A request: method, path, headers (a list: names may repeat), JSON body (or raw bytes,
or None)."""


def _check_calls(org: Org) -> list[Call]:
    """Forward-auth requests with every answer the check gives, fresh keys each time."""
    key = org.create_key(["customers:read"])["key"]
    revoked = org.create_key(["customers:read"])
    org.client.delete(f"/v1/keys/{revoked['id']}", headers=org.headers())
    limited = org.create_key(["customers:read"], rate_limits=[{"name": "k", "rate": "1/hour"}])
    calls: list[Call] = []
    for proxy in ({}, {"X-Apiward-Proxy": "nginx"}):
        calls += [
            ("GET", "/v1/auth/check", {**proxy, **org.headers(key)}, None),
            ("HEAD", "/v1/auth/check", {**proxy, **org.headers(key)}, None),
            ("POST", "/v1/auth/check", {**proxy, **org.headers(key)}, None),
            ("GET", "/v1/auth/check?scope=customers:write", {**proxy, **org.headers(key)}, None),
            ("GET", "/v1/auth/check", {**proxy, "X-Apiward-Require": "customers:read"}, None),
            ("GET", "/v1/auth/check", {**proxy, "X-Apiward-Require": "not a scope!"}, None),
            ("GET", "/v1/auth/check", {**proxy, "Authorization": "Bearer nope"}, None),
            ("GET", "/v1/auth/check", {**proxy, **org.headers(revoked["key"])}, None),
            ("GET", "/v1/auth/check", {**proxy, **org.headers(key), "X-Space": "nope"}, None),
            ("GET", "/v1/auth/check?" + "&".join(f"scope=a:{i}" for i in range(21)), {}, None),
        ]
    limited_headers = org.headers(limited["key"])
    calls += [("GET", "/v1/auth/check", limited_headers, None)] * 2  # 200, then 429
    calls += [("GET", "/v1/auth/check", {**limited_headers, "X-Apiward-Proxy": "nginx"}, None)]
    # The original request, as nginx reports it: path and method.
    writer = org.headers(org.create_key(["customers:read"])["key"])
    for method in ("GET", "POST", "DELETE", "POST", "get"):  # the third write is limited
        original = {"X-Original-URI": "/v1/things/", "X-Original-Method": method}
        calls += [("GET", "/v1/auth/check", {**writer, **original}, None)]
    for path in ("/v1/invoices\\..\\things", "/v1/things;x", "//v1/things", "/v1/%2e"):
        calls += [("GET", "/v1/auth/check", {**writer, "X-Original-URI": path}, None)]
    calls += [("GET", "/v1/auth/check", {**writer, "X-Original-Method": "GET POST"}, None)]
    calls += [("GET", "/v1/auth/check", {**writer, "X-HTTP-Method-Override": "PUT"}, None)]
    calls += [("GET", "/v1/auth/check", {**writer, "X-HTTP-Method-Override": "get"}, None)]
    calls += [
        (
            "GET",
            "/v1/auth/check",
            [*writer.items(), ("X-Apiward-Require", require), ("X-Apiward-Require", "")],
            None,
        )
        for require in ("customers:read", "customers:write")
    ]
    calls += [
        (
            "GET",
            "/v1/auth/check",
            [*writer.items(), ("X-Apiward-Require", "customers:read"), ("X-Apiward-Require", s)],
            None,
        )
        for s in ("customers:write", "x:y, customers:read")
    ]
    return calls


def _verify_calls(org: Org) -> list[Call]:
    """Verify API requests with every answer it gives, and bodies the route must judge."""
    verifier = org.headers(org.create_key(["keys:verify"])["key"])
    key = org.create_key(["customers:read"])
    limited = org.create_key(["customers:read"], rate_limits=[{"name": "k", "rate": "1/hour"}])
    lacking = org.headers(org.create_key(["customers:read"])["key"])
    raw = {**verifier, "Content-Type": "text/plain"}
    return [
        ("POST", "/v1/keys/verify", verifier, {"key": key["key"], "scopes": ["customers:read"]}),
        ("POST", "/v1/keys/verify", verifier, {"key": key["key"], "scopes": ["customers:write"]}),
        ("POST", "/v1/keys/verify", verifier, {"key": "aw_live_nope"}),
        ("POST", "/v1/keys/verify", verifier, {"key": limited["key"]}),
        ("POST", "/v1/keys/verify", verifier, {"key": limited["key"]}),
        ("POST", "/v1/keys/verify", verifier, {"key": key["key"], "route": "/v1/x", "ip": "::1"}),
        ("POST", "/v1/keys/verify", verifier, {"key": key["key"], "route": "/v1/x;y"}),
        ("POST", "/v1/keys/verify", verifier, {"key": "aw_live_nope", "route": "/v1\\x"}),
        ("POST", "/v1/keys/verify", verifier, {"key": key["key"], "method": "GET POST"}),
        ("POST", "/v1/keys/verify", verifier, {"key": key["key"], "route": "/v1/things/"}),
        ("POST", "/v1/keys/verify", lacking, {"key": key["key"]}),
        ("POST", "/v1/keys/verify", {}, {"key": key["key"]}),
        ("POST", "/v1/keys/verify", verifier, {"key": ""}),
        ("POST", "/v1/keys/verify", verifier, {"key": key["key"], "extra": 1}),
        ("POST", "/v1/keys/verify", verifier, []),
        ("POST", "/v1/keys/verify", verifier, b"{not json"),
        ("POST", "/v1/keys/verify", raw, b'{"key": "x"}'),
        ("POST", "/v1/keys/verify", {}, b"{not json"),
        ("GET", "/v1/keys/verify", verifier, None),
    ]


def _token_calls(org: Org) -> list[Call]:
    """Token endpoint requests: each grant, JSON, form and Basic, and refusals."""
    made = org.client.post(
        "/v1/clients", headers=org.headers(), json={"name": "c", "scopes": ["keys:read"]}
    ).json()
    pair = {"client_id": made["client_id"], "client_secret": made["client_secret"]}
    basic = httpx.BasicAuth(made["client_id"], made["client_secret"])._auth_header
    login = {"username": "owner@acme.test", "password": "correct horse battery"}
    refresh = org.client.post("/v1/auth/token", json=login).json()["refresh_token"]
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    return [
        ("POST", "/v1/auth/token", {}, {"grant_type": "client_credentials", **pair}),
        (
            "POST",
            "/v1/auth/token",
            form,
            b"grant_type=client_credentials&scope=keys:read&"
            + f"client_id={pair['client_id']}&client_secret={pair['client_secret']}".encode(),
        ),
        (
            "POST",
            "/v1/auth/token",
            {**form, "Authorization": basic},
            b"grant_type=client_credentials",
        ),
        (
            "POST",
            "/v1/auth/token",
            {},
            {"grant_type": "client_credentials", "client_id": "x", "client_secret": "y"},
        ),
        (
            "POST",
            "/v1/auth/token",
            {},
            {"grant_type": "client_credentials", **pair, "scope": "keys:write"},
        ),
        ("POST", "/v1/auth/token", {}, login),
        ("POST", "/v1/auth/token", {}, {"grant_type": "nope"}),
        ("POST", "/v1/auth/token", {}, []),
        ("POST", "/v1/auth/token", {"Content-Type": "text/plain"}, b"x"),
        ("GET", "/v1/auth/token", {}, None),
        ("POST", "/v1/auth/refresh", {}, {"refresh_token": refresh}),
        ("POST", "/v1/auth/refresh", {}, {"refresh_token": refresh}),  # reused: refused
        ("POST", "/v1/auth/refresh", {}, {"refresh_token": "awrt_nope"}),
    ]


def _send(org: Org, call: Call) -> httpx.Response:
    method, path, headers, body = call
    client: Any = org.client
    if isinstance(body, bytes):
        answer: httpx.Response = client.request(method, path, headers=headers, content=body)
    elif body is None:
        answer = client.request(method, path, headers=headers)
    else:
        answer = client.request(method, path, headers=headers, json=body)
    return answer


@pytest.mark.parametrize(
    "calls", [_check_calls, _verify_calls, _token_calls], ids=["check", "verify", "token"]
)
def test_the_fast_paths_give_the_routes_answers(
    org: Org, calls: Callable[[Org], list[Call]]
) -> None:
    """The edge answers each fast path's requests as its route does without the edge:
    status, body and headers, for every kind of answer."""
    from fastapi import FastAPI

    from apiward.adapters.http import edge

    app = org.client.app
    assert isinstance(app, edge.ServerApp)
    paths = {"/v1/auth/check", "/v1/keys/verify", "/v1/auth/token", "/v1/auth/refresh"}
    assert app.fast_paths == paths  # the edge answers them: the first run is the fast paths'
    fast = [_send(org, call) for call in calls(org)]
    app.middleware_stack = edge.stack(
        FastAPI.build_middleware_stack(app), app.state.settings, app.state.error_style, {}
    )
    try:
        routed = [_send(org, call) for call in calls(org)]
    finally:
        app.middleware_stack = app.build_middleware_stack()
    statuses = {a.status_code for a in fast}
    assert len(statuses) >= 4, statuses  # the cases reach several kinds of answer
    for a, b in zip(fast, routed, strict=True):
        assert (a.status_code, _body(a), _headers(a)) == (b.status_code, _body(b), _headers(b))


def _body(r: httpx.Response) -> object:
    if not r.content:
        return None
    data = r.json()
    if isinstance(data, dict):
        data.pop("request_id", None)
        data.pop("key_id", None)  # each run makes its keys
        for token in ("access_token", "refresh_token"):
            if token in data:
                data[token] = "<token>"
        if isinstance(data.get("ratelimit"), dict):
            data["ratelimit"].pop("reset", None)
    return data


def _headers(r: httpx.Response) -> dict[str, str]:
    varying = {"x-request-id", "date", "content-length", "x-apiward-error", "x-ratelimit-reset"}
    varying |= {"retry-after", "ratelimit", "ratelimit-reset", "x-apiward-credential"}
    return {k: v for k, v in r.headers.items() if k not in varying}


def test_verify_api(org: Org, other_org: Org) -> None:
    verifier = org.create_key(["keys:verify"])["key"]
    key = org.create_key(["customers:read"])
    headers = org.headers(verifier)
    ok = org.client.post(
        "/v1/keys/verify", headers=headers, json={"key": key["key"], "scopes": ["customers:read"]}
    ).json()
    assert ok["valid"] is True and ok["code"] == "VALID" and ok["key_id"] == key["id"]
    assert ok["principal"]["scopes"] == ["customers:read"]
    assert ok["principal"]["org_id"] == org.id
    lacking = org.client.post(
        "/v1/keys/verify", headers=headers, json={"key": key["key"], "scopes": ["customers:write"]}
    ).json()
    assert (lacking["valid"], lacking["code"]) == (False, "INSUFFICIENT_PERMISSIONS")
    org.client.post(f"/v1/keys/{key['id']}/disable", headers=org.headers())
    disabled = org.client.post("/v1/keys/verify", headers=headers, json={"key": key["key"]})
    assert disabled.json()["code"] == "DISABLED"
    org.client.post(f"/v1/keys/{key['id']}/revoke", headers=org.headers())
    revoked = org.client.post("/v1/keys/verify", headers=headers, json={"key": key["key"]})
    assert revoked.json()["code"] == "REVOKED"
    unknown = org.client.post("/v1/keys/verify", headers=headers, json={"key": "aw_live_x"})
    assert unknown.json() == {
        "valid": False,
        "code": "NOT_FOUND",
        "message": "No such key.",
        "key_id": None,
        "name": None,
        "expires_at": None,
        "external_id": None,
        "meta": None,
        "principal": None,
        "ratelimit": None,
        "credits_remaining": None,
    }
    foreign = other_org.create_key(["customers:read"])
    other = org.client.post("/v1/keys/verify", headers=headers, json={"key": foreign["key"]})
    assert other.json()["code"] == "NOT_FOUND" and other.json()["key_id"] is None
    allow = org.create_key(["customers:read"], ip_allow=["10.0.0.0/8"])["key"]
    by_ip = org.client.post(
        "/v1/keys/verify", headers=headers, json={"key": allow, "ip": "192.0.2.1"}
    ).json()
    assert by_ip["code"] == "FORBIDDEN"
    inside = org.client.post(
        "/v1/keys/verify", headers=headers, json={"key": allow, "ip": "10.1.2.3"}
    ).json()
    assert inside["valid"] is True
    no_scope = org.create_key(["customers:read"])["key"]
    assert (
        org.client.post(
            "/v1/keys/verify", headers=org.headers(no_scope), json={"key": key["key"]}
        ).status_code
        == 403
    )


def test_verify_applies_route_rules_to_the_canonical_route_and_method(org: Org) -> None:
    """The verify API reads ``route`` and ``method`` as forward auth reads the proxy's
    headers: one route to the rules per path, and a 400 for what has no single meaning."""
    verifier = org.headers(org.create_key(["keys:verify"])["key"])
    key = org.create_key(["customers:read"])["key"]

    def verify(route: str, method: str = "POST") -> httpx.Response:
        body = {"key": key, "route": route, "method": method}
        answer: httpx.Response = org.client.post("/v1/keys/verify", headers=verifier, json=body)
        return answer

    spellings = ["/v1/things", "/v1//things", "/v1/things/.", "/v1/%74hings", "/v1/things/"]
    codes = [verify(route, "delete").json()["code"] for route in spellings]
    assert codes == ["VALID", "VALID", "RATE_LIMITED", "RATE_LIMITED", "RATE_LIMITED"]
    assert verify("/v1/things", "GET").json()["code"] == "VALID"
    for route, method, message in [
        ("/v1/invoices\\..\\things", "POST", "original request's path"),
        ("/v1/things;x", "POST", "original request's path"),
        ("v1/things", "POST", "original request's path"),
        ("/v1/things", "GET POST", "original request's method"),
    ]:
        refused = verify(route, method)
        assert refused.status_code == 400
        assert message in refused.json()["message"]


VERSIONS = [
    ApiVersion(
        id="2024-01-31", date=dt.date(2024, 1, 31), deprecated=True, sunset=dt.date(2027, 1, 31)
    ),
    ApiVersion(id="2025-06-20", name="caph", date=dt.date(2025, 6, 20)),
]


def test_versions_deprecation_headers_and_pinning(tmp_path: Path) -> None:
    settings = fast_settings(
        database_url=migrated_sqlite(tmp_path / "v.db"),
        api_versions=VERSIONS,
        version_header="X-Monite-Version",
    )
    with TestClient(create_app(settings)) as client:
        org = bootstrap(client)
        current = client.get("/v1/keys", headers=org.headers())
        assert "deprecation" not in current.headers
        old = client.get("/v1/keys", headers=org.headers(**{"X-Monite-Version": "2024-01-31"}))
        assert old.status_code == 200
        assert old.headers["deprecation"] == "@1750377600"  # since 2025-06-20
        assert old.headers["sunset"] == "Sun, 31 Jan 2027 00:00:00 GMT"
        pinned = org.create_key(["customers:read", "keys:read"], api_version="2024-01-31")
        assert pinned["api_version"] == "2024-01-31"
        check = client.get("/v1/auth/check", headers=org.headers(pinned["key"]))
        assert check.headers["x-apiward-api-version"] == "2024-01-31"
        assert check.headers["deprecation"] == "@1750377600"
        echo = client.get("/", headers=org.headers(pinned["key"])).json()
        assert echo["apiVersion"]["id"] == "2024-01-31" and echo["apiVersion"]["deprecated"]
        chosen = client.get(
            "/v1/auth/check",
            headers=org.headers(pinned["key"], **{"X-Monite-Version": "2025-06-20"}),
        )
        assert chosen.headers["x-apiward-api-version"] == "2025-06-20"
        assert "deprecation" not in chosen.headers
        bad = client.post(
            "/v1/keys",
            headers=org.headers(),
            json={"name": "x", "scopes": ["a:b"], "api_version": "1999-01-01"},
        )
        assert bad.status_code == 400 and "2025-06-20" in bad.json()["message"]
