"""``GET /metrics``: Prometheus text, one registry per app, counting what operators watch."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from apiward.adapters.http.app import create_app
from tests.conftest import Org, bootstrap, fast_settings, migrated_sqlite


def scrape(
    client: TestClient, **headers: str
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(
    metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def org(tmp_path: Path) -> Iterator[Org]:
    settings = fast_settings(
        database_url=migrated_sqlite(tmp_path / "m.db"),
        rate_limits=[{"name": "per-key", "rate": "3/minute", "key": "credential"}],
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield bootstrap(client)


def test_requests_are_counted_by_route_template_method_and_status(org: Org) -> None:
    key = org.create_key(["keys:read"])
    org.client.get(f"/v1/keys/{key['id']}", headers=org.headers())
    org.client.get("/v1/keys/key_doesnotexist", headers=org.headers())
    org.client.get("/no/such/route")
    m = scrape(org.client)
    assert (
        value(
            m, "apiward_http_requests_total", method="GET", route="/v1/keys/{key_id}", status="200"
        )
        == 1
    )
    assert (
        value(
            m, "apiward_http_requests_total", method="GET", route="/v1/keys/{key_id}", status="404"
        )
        == 1
    )
    assert (
        value(m, "apiward_http_requests_total", method="GET", route="unmatched", status="404") == 1
    )
    assert (
        value(m, "apiward_http_request_duration_seconds_count", method="POST", route="/v1/keys")
        == 1
    )
    assert not any("key_doesnotexist" in dict(labels).get("route", "") for _, labels in m)


def test_verifications_are_counted_by_outcome(org: Org) -> None:
    key = org.create_key(["keys:read"])
    org.client.get("/v1/keys", headers=org.headers(key["key"]))
    org.client.get("/v1/users", headers=org.headers(key["key"]))
    wrong = key["key"][:-1] + ("y" if key["key"].endswith("x") else "x")  # never the key
    org.client.get("/v1/keys", headers=org.headers(wrong))
    org.client.get("/v1/keys")
    org.client.post(f"/v1/keys/{key['id']}/revoke", headers=org.headers())
    org.client.get("/v1/keys", headers=org.headers(key["key"]))
    org.client.get(
        "/v1/auth/check", headers={**org.headers(key["key"]), "X-Apiward-Proxy": "nginx"}
    )
    m = scrape(org.client)
    assert value(m, "apiward_verifications_total", outcome="VALID") >= 3
    assert value(m, "apiward_verifications_total", outcome="INSUFFICIENT_SCOPE") == 1
    assert value(m, "apiward_verifications_total", outcome="INVALID_KEY") == 1
    assert value(m, "apiward_verifications_total", outcome="MISSING_CREDENTIAL") == 1
    assert value(m, "apiward_verifications_total", outcome="KEY_REVOKED") == 2  # nginx mode too
    # Each series says when it began, as a prometheus_client counter's does.
    assert 0 < value(m, "apiward_verifications_created", outcome="KEY_REVOKED") <= time.time()


def test_verify_api_answers_are_counted_by_code(org: Org) -> None:
    verifier = org.create_key(["keys:verify"])["key"]
    key = org.create_key(["keys:read"])["key"]
    wrong = key[:-1] + ("y" if key.endswith("x") else "x")  # never the key itself
    for presented in (key, wrong):
        org.client.post("/v1/keys/verify", headers=org.headers(verifier), json={"key": presented})
    m = scrape(org.client)
    assert value(m, "apiward_verify_api_answers_total", code="VALID") == 1
    assert value(m, "apiward_verify_api_answers_total", code="NOT_FOUND") == 1


def test_token_grants_are_counted_by_type_and_outcome(org: Org) -> None:
    login = {"username": "owner@acme.test", "password": "correct horse battery"}
    pair = org.client.post("/v1/auth/token", json=login).json()
    org.client.post("/v1/auth/token", json={**login, "password": "wrong one"})
    org.client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    org.client.post("/v1/auth/token", json={"grant_type": "client_credentials"})
    org.client.post("/v1/auth/token", json={"grant_type": "x" * 50})
    m = scrape(org.client)
    assert value(m, "apiward_token_grants_total", grant_type="password", outcome="success") == 1
    assert (
        value(m, "apiward_token_grants_total", grant_type="password", outcome="invalid_grant") == 1
    )
    assert (
        value(m, "apiward_token_grants_total", grant_type="refresh_token", outcome="success") == 1
    )
    assert (
        value(
            m,
            "apiward_token_grants_total",
            grant_type="client_credentials",
            outcome="invalid_client",
        )
        == 1
    )
    assert (
        value(m, "apiward_token_grants_total", grant_type="other", outcome="unsupported_grant_type")
        == 1
    )


def test_rate_limit_decisions_and_cache_hits_are_exported(org: Org) -> None:
    key = org.create_key(["keys:read"])["key"]
    statuses = [org.client.get("/v1/keys", headers=org.headers(key)).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    m = scrape(org.client)
    assert value(m, "apiward_rate_limit_decisions_total", decision="allowed", policy="per-key") >= 3
    assert value(m, "apiward_rate_limit_decisions_total", decision="denied", policy="per-key") == 2
    assert value(m, "apiward_verifications_total", outcome="RATE_LIMITED") == 2
    assert value(m, "apiward_cache_hits_total") >= 4
    assert value(m, "apiward_cache_misses_total") >= 1
    assert 0 < value(m, "apiward_cache_hit_ratio") < 1
    assert value(m, "apiward_db_unavailable_total") == 0
    assert ("apiward_redis_outages_total", frozenset()) not in m  # no Redis configured
    assert value(m, "apiward_rate_limit_buckets") >= 1  # the in-process table
    assert value(m, "apiward_rate_limit_buckets_evicted_total") == 0


def test_redis_outages_and_degraded_decisions_are_exported(tmp_path: Path) -> None:
    settings = fast_settings(
        database_url=migrated_sqlite(tmp_path / "r.db"),
        redis_url="redis://127.0.0.1:1/0",
        rate_limits=[{"name": "per-key", "rate": "100/minute", "key": "credential"}],
    )
    with TestClient(create_app(settings)) as client:
        org = bootstrap(client)
        assert client.get("/v1/keys", headers=org.headers()).status_code == 200  # fails open
        m = scrape(client)
    assert value(m, "apiward_redis_outages_total") >= 1
    assert value(m, "apiward_redis_degraded_decisions_total") >= 1
    assert value(m, "apiward_redis_failed_calls_total") >= 1
    assert value(m, "apiward_redis_degraded") == 1


def test_each_app_has_its_own_registry(tmp_path: Path) -> None:
    apps: list[Any] = []
    for name in ("one", "two"):
        apps.append(
            create_app(fast_settings(database_url=migrated_sqlite(tmp_path / f"{name}.db")))
        )
    with TestClient(apps[0]) as first, TestClient(apps[1]) as second:
        for _ in range(3):
            first.get("/healthz")
        second.get("/healthz")
        one, two = scrape(first), scrape(second)
    route = {"method": "GET", "route": "/healthz", "status": "200"}
    assert value(one, "apiward_http_requests_total", **route) == 3
    assert value(two, "apiward_http_requests_total", **route) == 1


def test_a_metrics_token_guards_the_endpoint(tmp_path: Path) -> None:
    settings = fast_settings(
        database_url=migrated_sqlite(tmp_path / "t.db"), metrics_token="scrape-me-please"
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/metrics").status_code == 401
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "APIWARD_METRICS_TOKEN" in wrong.json()["message"]
        scrape(client, Authorization="Bearer scrape-me-please")


def test_no_secret_reaches_the_metrics(org: Org) -> None:
    key = org.create_key(["keys:read"])["key"]
    login = {"username": "owner@acme.test", "password": "correct horse battery"}
    pair = org.client.post("/v1/auth/token", json=login).json()
    org.client.get("/v1/keys", headers=org.headers(key))
    org.client.get(f"/v1/keys?q={key}", headers=org.headers(pair["access_token"]))
    text = org.client.get("/metrics").text
    for secret in (key, org.owner_key, pair["access_token"], pair["refresh_token"]):
        assert secret not in text


def test_request_counts_and_latency_buckets_are_exact() -> None:
    """Each answered request is one count under its method, route and status, and one
    observation in every latency bucket at or above its duration (``le``)."""
    from apiward.adapters.http.state import RequestState
    from apiward.adapters.metrics import Metrics

    class Route:
        path = "/v1/things"

    metrics = Metrics([])
    durations = [0.0004, 0.001, 0.003, 0.3, 0.3, 20.0]
    for seconds in durations:
        metrics.observe({"method": "GET", "route": Route()}, RequestState(), 200, seconds)
    metrics.observe({"method": "BREW"}, RequestState(), 404, 0.002)
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
    }
    route = {("method", "GET"), ("route", "/v1/things")}
    count = samples[("apiward_http_requests_total", frozenset({*route, ("status", "200")}))]
    assert count == len(durations)
    other = {("method", "OTHER"), ("route", "unmatched"), ("status", "404")}
    assert samples[("apiward_http_requests_total", frozenset(other))] == 1
    for bound in ("0.001", "0.005", "0.25", "0.5", "10.0", "+Inf"):
        le = float(bound)
        name = "apiward_http_request_duration_seconds_bucket"
        got = samples[(name, frozenset({*route, ("le", bound)}))]
        assert got == sum(1 for d in durations if d <= le), bound
    total = samples[("apiward_http_request_duration_seconds_sum", frozenset(route))]
    assert total == pytest.approx(sum(durations))
