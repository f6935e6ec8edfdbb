"""Tracing: spans of requests (fast paths included), decisions, the store, Redis, webhooks
and mail, exported through the runtime's own provider; nothing at all when it is off."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.routing import Route

from apiward.adapters.http.app import create_app
from apiward.adapters.http.edge import ServerApp
from apiward.adapters.http.middleware import RequestContextMiddleware
from apiward.adapters.http.tracing import ServerSpans
from apiward.adapters.settings import ConfigError, Settings, tracing_reason
from apiward.adapters.storage.sql import SqlStore
from apiward.adapters.tracing import configure
from apiward.core.models import Notice
from apiward.services.auth import Authenticator
from tests.adapters.http.test_webhooks import Receiver, register, wait_for
from tests.adapters.limiter.conftest import PrivateRedis, start_private_redis
from tests.conftest import Org, bootstrap, fast_settings
from tests.live import serve

OTEL_VARIABLES = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "APIWARD_TRACING",
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture(autouse=True)
def no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def traced_org(tmp_path: Path, exporter: InMemorySpanExporter, **overrides: Any) -> Iterator[Org]:
    settings = fast_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'traced.db'}",
        tracing=True,
        webhook_poll_seconds=0.05,
        **overrides,
    )
    app = create_app(settings, span_processor=SimpleSpanProcessor(exporter))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield bootstrap(client)


@pytest.fixture
def org(tmp_path: Path, exporter: InMemorySpanExporter) -> Iterator[Org]:
    yield from traced_org(tmp_path, exporter)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    with serve(Starlette(routes=[Route("/{name}", rec.handle, methods=["POST"])])) as base:
        rec.url = base
        yield rec


def spans(exporter: InMemorySpanExporter, name: str | None = None) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if name is None or s.name == name]


def server_span(exporter: InMemorySpanExporter, route: str, method: str = "GET") -> ReadableSpan:
    found = spans(exporter, f"{method} {route}")
    assert found, [s.name for s in exporter.get_finished_spans()]
    assert found[-1].kind is SpanKind.SERVER
    return found[-1]


def children(exporter: InMemorySpanExporter, parent: ReadableSpan) -> list[ReadableSpan]:
    return [
        s
        for s in exporter.get_finished_spans()
        if s.parent is not None and s.parent.span_id == parent.context.span_id
    ]


def check(org: Org, key: str, **headers: str) -> int:
    r = org.client.get("/v1/auth/check", headers={**org.headers(key), **headers})
    status: int = r.status_code
    return status


def test_a_forward_auth_check_is_a_server_span_with_its_decision_as_a_child(
    org: Org, exporter: InMemorySpanExporter
) -> None:
    """The check answered by the fast path (the app's fast paths include it) is spanned."""
    assert isinstance(org.client.app, ServerApp) and "/v1/auth/check" in org.client.app.fast_paths
    key = org.create_key(["widgets:read"])["key"]
    exporter.clear()
    assert check(org, key, **{"X-Apiward-Require": "widgets:read"}) == 200
    server = server_span(exporter, "/v1/auth/check")
    assert server.attributes is not None
    assert dict(server.attributes) == {
        "http.request.method": "GET",
        "url.path": "/v1/auth/check",
        "url.scheme": "http",
        "network.protocol.version": "1.1",
        "client.address": "testclient",
        "http.route": "/v1/auth/check",
        "http.response.status_code": 200,
    }
    (decision,) = [s for s in children(exporter, server) if s.name == "apiward.authenticate"]
    assert decision.attributes is not None
    assert decision.attributes["apiward.decision.outcome"] == "allowed"
    assert decision.attributes["apiward.decision.reason"] == "VALID"
    assert decision.attributes["apiward.credential.kind"] == "api_key"
    assert decision.attributes["apiward.org.id"] == org.id
    assert decision.attributes["apiward.scopes.required"] == ("widgets:read",)


def test_a_refused_check_names_the_reason_and_is_not_an_error_span(
    org: Org, exporter: InMemorySpanExporter
) -> None:
    exporter.clear()
    assert check(org, "ak_live_not-a-real-key") == 401
    server = server_span(exporter, "/v1/auth/check")
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 401
    (decision,) = [s for s in children(exporter, server) if s.name == "apiward.authenticate"]
    assert decision.attributes is not None
    assert decision.attributes["apiward.decision.outcome"] == "refused"
    assert decision.attributes["apiward.decision.reason"] == "INVALID_KEY"
    assert decision.status.status_code is StatusCode.UNSET
    assert "apiward.org.id" not in decision.attributes


def test_the_verify_and_token_fast_paths_are_server_spans(
    org: Org, exporter: InMemorySpanExporter
) -> None:
    verifier = org.create_key(["keys:verify"])["key"]
    operator = org.operator_key()
    made = org.client.post(
        "/v1/clients", headers=org.headers(operator), json={"name": "c", "scopes": ["keys:read"]}
    ).json()
    exporter.clear()
    r = org.client.post(
        "/v1/keys/verify", headers=org.headers(verifier), json={"key": org.owner_key}
    )
    assert r.status_code == 200, r.text
    grant = {
        "grant_type": "client_credentials",
        "client_id": made["client_id"],
        "client_secret": made["client_secret"],
    }
    assert org.client.post("/v1/auth/token", json=grant).status_code == 200
    for route in ("/v1/keys/verify", "/v1/auth/token"):
        assert route in org.client.app.fast_paths  # type: ignore[attr-defined]
        span = server_span(exporter, route, "POST")
        assert span.attributes is not None
        assert span.attributes["http.route"] == route
        assert span.attributes["http.response.status_code"] == 200


def test_an_incoming_traceparent_is_continued(org: Org, exporter: InMemorySpanExporter) -> None:
    exporter.clear()
    assert check(org, org.owner_key, traceparent=f"00-{TRACE_ID}-{PARENT_ID}-01") == 200
    server = server_span(exporter, "/v1/auth/check")
    assert server.context.trace_id == int(TRACE_ID, 16)
    assert server.parent is not None and server.parent.span_id == int(PARENT_ID, 16)
    assert server.parent.is_remote
    for child in children(exporter, server):
        assert child.context.trace_id == int(TRACE_ID, 16)


def test_a_routed_request_and_its_store_transaction_are_spanned(
    org: Org, exporter: InMemorySpanExporter
) -> None:
    """A key creation (FastAPI's router, not a fast path): the server span names the
    route template, and the store's transaction is a client span inside it."""
    exporter.clear()
    org.create_key(["widgets:read"])
    server = server_span(exporter, "/v1/keys", "POST")
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 201
    stored = [
        s
        for s in spans(exporter, "apiward.store.transaction")
        if s.context.trace_id == server.context.trace_id
    ]
    assert stored and all(s.kind is SpanKind.CLIENT for s in stored)
    assert all((s.attributes or {}).get("db.system.name") == "sqlite" for s in stored)


def test_a_webhook_delivery_carries_the_traceparent_of_its_client_span(
    org: Org, exporter: InMemorySpanExporter, receiver: Receiver
) -> None:
    register(org, f"{receiver.url}/traced", ["key.created"])
    org.create_key(["widgets:read"])
    wait_for(lambda: len(receiver.at("/traced")) == 1)
    wait_for(lambda: bool(spans(exporter, "POST")))
    (delivery,) = spans(exporter, "POST")
    assert delivery.kind is SpanKind.CLIENT
    assert delivery.attributes is not None
    assert delivery.attributes["server.address"] == "127.0.0.1"
    assert delivery.attributes["http.response.status_code"] == 200
    version, trace_id, span_id, _ = receiver.at("/traced")[0].headers["traceparent"].split("-")
    assert version == "00"
    assert int(trace_id, 16) == delivery.context.trace_id
    assert int(span_id, 16) == delivery.context.span_id


def test_mail_is_sent_in_a_span(org: Org, exporter: InMemorySpanExporter) -> None:
    runtime = org.runtime
    exporter.clear()

    async def send() -> None:
        runtime.postbox.post(
            Notice(
                template="reset",
                to="someone@acme.test",
                values={"name": "Someone", "link": "https://x.test/r?t=el_s", "valid_for": "1h"},
            )
        )
        await runtime.postbox.drain()

    org.client.portal.call(send)  # type: ignore[union-attr]
    (mail,) = spans(exporter, "apiward.mail.send")
    assert mail.kind is SpanKind.CLIENT
    assert dict(mail.attributes or {}) == {"apiward.mail.transport": "log"}


def test_no_span_carries_a_credential_token_or_secret(
    org: Org, exporter: InMemorySpanExporter, receiver: Receiver
) -> None:
    """Every attribute of every span, after keys, a webhook secret, a token grant and
    checks by each kind of credential, is searched for every secret handed out."""
    hook = register(org, f"{receiver.url}/secrets", ["key.created"])
    key = org.create_key(["widgets:read"])["key"]
    operator = org.operator_key()
    r = org.client.post(
        "/v1/clients", headers=org.headers(operator), json={"name": "c", "scopes": ["keys:read"]}
    )
    assert r.status_code == 201, r.text
    client = r.json()
    r = org.client.post(
        "/v1/auth/token",
        json={
            "grant_type": "client_credentials",
            "client_id": client["client_id"],
            "client_secret": client["client_secret"],
        },
    )
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    for credential in (key, token, operator, org.owner_key, org.owner_test_key):
        assert check(org, credential) == 200
    assert check(org, key + "x") == 401
    wait_for(lambda: len(receiver.at("/secrets")) >= 1)
    secrets = [
        key,
        key + "x",
        token,
        operator,
        org.owner_key,
        org.owner_test_key,
        client["client_secret"],
        hook["secret"],
        "correct horse battery",
    ]
    seen = [
        (span.name, name, str(value))
        for span in exporter.get_finished_spans()
        for name, value in (span.attributes or {}).items()
    ]
    assert len(seen) > 50
    leaked = [(s, n, v) for s, n, v in seen for secret in secrets if secret in v]
    assert leaked == []


def test_tracing_off_creates_no_provider_no_layer_and_no_span(
    tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    """Off (the default, nothing configured): the parts are the untraced ones, the
    envelope has no span layer, and a processor handed in never receives a span."""
    settings = fast_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'off.db'}")
    assert settings.tracing is None
    app = create_app(settings, span_processor=SimpleSpanProcessor(exporter))
    with TestClient(app) as client:
        org = bootstrap(client)
        assert check(org, org.owner_key, traceparent=f"00-{TRACE_ID}-{PARENT_ID}-01") == 200
        org.create_key(["widgets:read"])
        runtime = org.runtime
        assert runtime.tracing is None
        assert type(runtime.auth) is Authenticator
        assert type(runtime.store) is SqlStore
        assert isinstance(app.middleware_stack, RequestContextMiddleware)
    assert exporter.get_finished_spans() == ()


def test_tracing_on_puts_the_span_layer_outermost(org: Org, exporter: InMemorySpanExporter) -> None:
    assert isinstance(org.client.app.middleware_stack, ServerSpans)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("setting", "environment", "reason"),
    [
        (None, {}, None),
        (None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        (None, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, "TRACES"),
        (None, {"OTEL_TRACES_EXPORTER": "console"}, "OTEL_TRACES_EXPORTER"),
        (None, {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"}, None),
        (None, {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, None),
        (True, {}, "APIWARD_TRACING"),
        (True, {"OTEL_SDK_DISABLED": "TRUE"}, None),
        (False, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, None),
    ],
)
def test_when_tracing_is_on(
    setting: bool | None, environment: dict[str, str], reason: str | None
) -> None:
    found = tracing_reason(setting, environment)
    assert (found is None) is (reason is None)
    assert reason is None or (found is not None and reason in found)


def test_asking_for_tracing_without_the_extra_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the `otel` extra (its SDK not importable), asking for traces stops the
    start with one line that says what to install."""
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk", None)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    with pytest.raises(ConfigError) as caught:
        Settings()
    (line,) = caught.value.problems
    assert "OTEL_EXPORTER_OTLP_ENDPOINT is set" in line
    assert "pip install apiward[otel]" in line
    with pytest.raises(ConfigError, match=r"pip install apiward\[otel\]"):
        Settings(tracing=True)
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert Settings().tracing is None  # disabled: nothing is needed


def test_the_start_fails_with_one_line_when_the_extra_is_missing() -> None:
    """The CLI, with the SDK hidden as if the extra were not installed, and an endpoint
    configured: one configuration line on stderr, exit status 2."""
    program = (
        "import sys; sys.modules['opentelemetry.sdk'] = None; "
        "sys.argv = ['apiward', 'config', 'check']; "
        "from apiward.adapters.cli.main import main; main()"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("APIWARD_", "OTEL_"))}
    result = subprocess.run(
        [sys.executable, "-c", program],
        env={**clean, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "configuration error: tracing = None (the default): tracing is on "
        "(OTEL_EXPORTER_OTLP_ENDPOINT is set) but OpenTelemetry is not installed: "
        "pip install apiward[otel], or set APIWARD_TRACING=false"
    ]


@pytest.mark.parametrize(
    ("variables", "problem"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER=zipkin: otlp, console or none"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTLP protocol grpc"),
    ],
)
def test_an_exporter_apiward_does_not_ship_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], problem: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=problem):
        Settings(tracing=True)


@pytest.mark.parametrize(
    ("variables", "service", "extra"),
    [
        ({}, "apiward", {}),
        ({"OTEL_SERVICE_NAME": "auth-edge"}, "auth-edge", {}),
        (
            {"OTEL_RESOURCE_ATTRIBUTES": "service.name=gate,deployment.environment.name=prod"},
            "gate",
            {"deployment.environment.name": "prod"},
        ),
    ],
)
def test_the_resource_follows_the_standard_variables(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], service: str, extra: dict[str, str]
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    tracing = configure(
        fast_settings(tracing=True), processor=SimpleSpanProcessor(InMemorySpanExporter())
    )
    assert tracing is not None
    attributes = tracing.provider.resource.attributes
    assert attributes["service.name"] == service
    assert {k: attributes.get(k) for k in extra} == extra
    tracing.shutdown()


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = start_private_redis(tmp_path)
    yield server
    server.kill()


@pytest.mark.redis
def test_redis_limiter_calls_are_spans_of_the_decision(
    tmp_path: Path, exporter: InMemorySpanExporter, redis: PrivateRedis
) -> None:
    limits = [{"name": "org-daily", "rate": "1000/day", "key": "org"}]
    for org in traced_org(tmp_path, exporter, redis_url=redis.url, rate_limits=limits):
        exporter.clear()
        assert check(org, org.owner_key) == 200
        server = server_span(exporter, "/v1/auth/check")
        (decision,) = [s for s in children(exporter, server) if s.name == "apiward.authenticate"]
        limited = [s for s in children(exporter, decision) if s.name.startswith("apiward.limiter")]
        assert limited, [s.name for s in exporter.get_finished_spans()]
        assert all((s.attributes or {}).get("db.system.name") == "redis" for s in limited)
