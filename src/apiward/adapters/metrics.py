"""Prometheus metrics: one registry per runtime, built in the app's lifespan.

Two kinds of numbers are exported:

- per request, recorded by the request middleware once the answer is sent
  (``observe``): requests by method, route template and status; latency; credential
  verifications by outcome (``VALID`` or the refusal's reason code); token grants by
  type and outcome; verify API answers by code;
- counters the services and adapters keep themselves as plain integers (cache hits and
  misses, the Redis fallback's degraded decisions and outages, unreachable-database
  transactions, rate-limit decisions, webhook attempts, leak reports, lockouts), which
  each part reports as ``Reading`` values (``apiward.core.readings``) read at scrape time
  by a custom collector, so nothing in the core or services imports
  ``prometheus_client``, and metrics import none of the parts they read.

Counts are per process; with several workers, scrape each one or aggregate (the
registry is never shared through a multiprocess directory).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import Scope

from apiward.adapters.http.state import state_of
from apiward.core.errors import (
    AuthenticationError,
    OAuthError,
    PermissionDenied,
    RateLimited,
)
from apiward.core.readings import Reports

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_GRANTS = frozenset(
    {
        "password",
        "refresh_token",
        "client_credentials",
        "urn:ietf:params:oauth:grant-type:token-exchange",
    }
)
# An authorisation answer is fast; a password grant is Argon2-slow.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, sources: Sequence[Reports]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "apiward_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "apiward_http_request_duration_seconds",
            "Time to answer a request, by method and route template.",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.verifications = Counter(
            "apiward_verifications",
            "Credential verifications of protected requests, by outcome: VALID or the "
            "refusal's reason (INVALID_KEY, KEY_REVOKED, INSUFFICIENT_SCOPE, RATE_LIMITED...).",
            ["outcome"],
            registry=r,
        )
        self.verify_api = Counter(
            "apiward_verify_api_answers",
            "Answers of POST /v1/keys/verify, by code (VALID, NOT_FOUND, REVOKED...).",
            ["code"],
            registry=r,
        )
        self.grants = Counter(
            "apiward_token_grants",
            "Token endpoint requests by grant type and outcome (success or the OAuth error).",
            ["grant_type", "outcome"],
            registry=r,
        )
        r.register(_Live(sources))
        # Label look-ups cost four times an increment: the children are kept (the label
        # values are bounded: route templates, methods, statuses, reason codes).
        self._children: dict[tuple[object, ...], Any] = {}

    def _child(self, metric: Counter | Histogram, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        """Record one answered request (called by the request middleware)."""
        method = scope.get("method", "GET")
        method = method if method in _METHODS else "OTHER"
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        self._child(self.requests, method, route, str(status)).inc()
        self._child(self.latency, method, route).observe(seconds)
        state = state_of(scope)
        error = state.error
        if isinstance(error, AuthenticationError | PermissionDenied | RateLimited):
            self._child(self.verifications, error.reason).inc()
        elif state.principal is not None:
            self._child(self.verifications, "VALID").inc()
        grant = state.grant_type
        if grant is not None:
            if status < 400:
                outcome = "success"
            elif isinstance(error, OAuthError):
                outcome = error.error
            else:
                outcome = "error"
            self.grants.labels(grant if grant in _GRANTS else "other", outcome).inc()
        code = state.verify_code
        if code is not None:
            self.verify_api.labels(code).inc()


def observe_request(scope: Scope, status: int, seconds: float) -> None:
    """Record a request in its app's metrics, when the app runs apiward's runtime."""
    app = scope.get("app")
    runtime = getattr(getattr(app, "state", None), "runtime", None)
    metrics = getattr(runtime, "metrics", None)
    if isinstance(metrics, Metrics):
        metrics.observe(scope, status, seconds)


class _Live(Collector):
    """The counters the server's parts keep themselves, read at each scrape."""

    def __init__(self, sources: Sequence[Reports]) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        for source in self._sources:
            for reading in source.readings():
                family_type = (
                    CounterMetricFamily if reading.kind == "counter" else GaugeMetricFamily
                )
                family = family_type(
                    "apiward_" + reading.name, reading.help, labels=list(reading.labels)
                )
                for values, value in reading.samples:
                    family.add_metric(list(values), value)
                yield family
