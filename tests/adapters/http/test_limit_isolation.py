"""No tenant spends, poisons or resets a limiter bucket another tenant depends on: a key's
own limits count in that key's buckets, values the verify API's caller asserts count
within the caller's organisation, and periods are bounded (docs/authority.md)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from apiward.adapters.http.app import create_app
from tests.conftest import Org, bootstrap, fast_settings

IP = "203.0.113.77"
ROUTE = "/v1/things"
PLAN: dict[str, Any] = {
    "rate_limits": [
        {"name": "per-ip", "rate": "100/minute", "key": "ip"},
        {"name": "per-route", "rate": "1000/minute", "key": "route"},
    ],
    "trusted_proxies": ["127.0.0.1/32"],
}
FROM_PROXY = {"X-Forwarded-For": IP, "X-Original-URI": ROUTE}


def tenants(tmp_path: Path, **settings: Any) -> Iterator[tuple[Org, Org]]:
    merged = {**PLAN, **settings}
    app = create_app(
        fast_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'i.db'}", **merged)
    )
    # The peer is a trusted proxy, so forward auth believes X-Forwarded-For.
    with TestClient(app, client=("127.0.0.1", 50000)) as client:
        a = bootstrap(client, "Tenant A", "a@a.test", another=True)
        b = bootstrap(client, "Tenant B", "b@b.test", another=True)
        yield a, b


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[Org, Org]]:
    yield from tenants(tmp_path)


def verify(org: Org, verifier: str, key: str, **asked: str) -> dict[str, Any]:
    r = org.client.post(
        "/v1/keys/verify", headers=org.headers(verifier), json={"key": key, **asked}
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def own_limits(rate: str) -> list[dict[str, str]]:
    return [
        {"name": "per-ip", "rate": rate, "key": "ip"},
        {"name": "per-route", "rate": rate, "key": "route"},
    ]


def test_a_tenants_own_limit_of_a_plans_name_never_locks_out_another_tenant(
    two: tuple[Org, Org],
) -> None:
    a, b = two
    strict = a.create_key(["things:read"], rate_limits=own_limits("1/day"))["key"]
    verifier_a = a.create_key(["keys:verify"])["key"]
    assert verify(a, verifier_a, strict, ip=IP, route=ROUTE)["valid"] is True
    again = verify(a, verifier_a, strict, ip=IP, route=ROUTE)
    assert again["code"] == "RATE_LIMITED"  # the tenant's own limit holds for its key
    # Through forward auth too: the key's own limits count its own traffic.
    r = a.client.get("/v1/auth/check", headers={**a.headers(strict), **FROM_PROXY})
    assert r.status_code == 429

    b_key = b.create_key(["things:read"])["key"]
    verifier_b = b.create_key(["keys:verify"])["key"]
    answer = verify(b, verifier_b, b_key, ip=IP, route=ROUTE)
    assert answer["valid"] is True and answer["ratelimit"]["remaining"] >= 98
    r = b.client.get("/v1/auth/check", headers={**b.headers(b_key), **FROM_PROXY})
    assert r.status_code == 200 and int(r.headers["x-ratelimit-remaining"]) >= 98


def test_a_period_past_the_maximum_is_refused_naming_the_field(two: tuple[Org, Org]) -> None:
    a, _ = two
    for method, path in (("POST", "/v1/keys"), ("PATCH", None)):
        if path is None:
            path = f"/v1/keys/{a.create_key(['things:read'])['id']}"
        body = {"name": "k", "scopes": ["things:read"], "rate_limits": own_limits("1/99999day")}
        r = a.client.request(method, path, headers=a.headers(), json=body)
        assert r.status_code == 400, r.text
        message = r.json()["message"]
        assert "rate_limits" in message and "'1/99999day'" in message and "1 day" in message


def test_ips_and_routes_the_verify_api_names_count_within_the_callers_org(
    tmp_path: Path,
) -> None:
    plan = [
        {"name": "per-ip", "rate": "3/minute", "key": "ip"},
        {"name": "per-route", "rate": "5/minute", "key": "route"},
    ]
    # The management calls are exempt, so only the keys verified are counted.
    exempt = [{"route": "/v1/keys*", "exempt": True}]
    for a, b in tenants(tmp_path, rate_limits=plan, rate_limit_routes=exempt):
        a_key = a.create_key(["things:read"])["key"]
        verifier_a = a.create_key(["keys:verify"])["key"]
        answers = [verify(a, verifier_a, a_key, ip=IP, route=ROUTE)["code"] for _ in range(4)]
        assert answers == ["VALID", "VALID", "VALID", "RATE_LIMITED"]

        b_key = b.create_key(["things:read"])["key"]
        verifier_b = b.create_key(["keys:verify"])["key"]
        answer = verify(b, verifier_b, b_key, ip=IP, route=ROUTE)
        assert answer["valid"] is True and answer["ratelimit"]["remaining"] == 2
        # Real traffic from that address, through the proxy: the deployment-wide bucket,
        # which tenant A's assertions never touched.
        r = b.client.get("/v1/auth/check", headers={**b.headers(b_key), **FROM_PROXY})
        assert r.status_code == 200 and r.headers["x-ratelimit-remaining"] == "2"
        # ... and which every tenant's real traffic shares, as the operator meant.
        for _ in range(2):
            r = a.client.get("/v1/auth/check", headers={**a.headers(a_key), **FROM_PROXY})
            assert r.status_code == 200
        r = b.client.get("/v1/auth/check", headers={**b.headers(b_key), **FROM_PROXY})
        assert r.status_code == 429
