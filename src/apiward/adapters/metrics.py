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

import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from itertools import accumulate

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.types import Scope

from apiward.adapters.http.state import RequestState
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
        self.requests = _RequestTally()
        r.register(self.requests)
        self.verifications = _Counts(
            "apiward_verifications",
            "Credential verifications of protected requests, by outcome: VALID or the "
            "refusal's reason (INVALID_KEY, KEY_REVOKED, INSUFFICIENT_SCOPE, RATE_LIMITED...).",
            ["outcome"],
        )
        self.verify_api = _Counts(
            "apiward_verify_api_answers",
            "Answers of POST /v1/keys/verify, by code (VALID, NOT_FOUND, REVOKED...).",
            ["code"],
        )
        self.grants = _Counts(
            "apiward_token_grants",
            "Token endpoint requests by grant type and outcome (success or the OAuth error).",
            ["grant_type", "outcome"],
        )
        for counts in (self.verifications, self.verify_api, self.grants):
            r.register(counts)
        r.register(_Live(sources))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def observe(self, scope: Scope, state: RequestState, status: int, seconds: float) -> None:
        """Record one answered request (called by the request middleware)."""
        method = scope.get("method", "GET")
        method = method if method in _METHODS else "OTHER"
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        self.requests.add(method, route, status, seconds)
        error = state.error
        if error is not None and isinstance(error, _REFUSALS):
            self.verifications.inc(error.reason)
        elif state.principal is not None:
            self.verifications.inc("VALID")
        grant = state.grant_type
        if grant is not None:
            if status < 400:
                outcome = "success"
            elif isinstance(error, OAuthError):
                outcome = error.error
            else:
                outcome = "error"
            self.grants.inc(grant if grant in _GRANTS else "other", outcome)
        code = state.verify_code
        if code is not None:
            self.verify_api.inc(code)


_REFUSALS = (AuthenticationError, PermissionDenied, RateLimited)


def observe_request(scope: Scope, state: RequestState, status: int, seconds: float) -> None:
    """Record a request in the metrics of the runtime that authenticated it, else of
    its app's runtime (an app mounted in a host app holds none of its own)."""
    runtime = state.runtime or getattr(getattr(scope.get("app"), "state", None), "runtime", None)
    metrics = getattr(runtime, "metrics", None)
    if isinstance(metrics, Metrics):
        metrics.observe(scope, state, status, seconds)


class _RequestTally(Collector):
    """Requests by method, route template and status, and their latency histogram, as
    plain integers and floats: a request costs a dict update and a bisection, not
    ``prometheus_client``'s locked label children; the families are made at scrape time.
    """

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, int], int] = {}
        self._latency: dict[tuple[str, str], tuple[list[int], list[float]]] = {}

    def add(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        counts = self._counts
        counts[key] = counts.get(key, 0) + 1
        held = self._latency.get((method, route))
        if held is None:
            held = self._latency[(method, route)] = ([0] * (len(_BUCKETS) + 1), [0.0])
        held[0][bisect_left(_BUCKETS, seconds)] += 1
        held[1][0] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "apiward_http_requests",
            "HTTP requests answered, by method, route template and status.",
            labels=["method", "route", "status"],
        )
        for (method, route, status), count in list(self._counts.items()):
            requests.add_metric([method, route, str(status)], count)
        yield requests
        latency = HistogramMetricFamily(
            "apiward_http_request_duration_seconds",
            "Time to answer a request, by method and route template.",
            labels=["method", "route"],
        )
        bounds = [*(_bound(b) for b in _BUCKETS), "+Inf"]
        for (method, route), (per_bucket, total) in list(self._latency.items()):
            cumulative = list(accumulate(per_bucket))
            latency.add_metric(
                [method, route], list(zip(bounds, cumulative, strict=True)), total[0]
            )
        yield latency


class _Counts(Collector):
    """A counter by label values, as a plain dict of integers: an increment is a dict
    update, not ``prometheus_client``'s locked child (the values are bounded: reason
    codes, grant types, outcomes)."""

    def __init__(self, name: str, documentation: str, labels: list[str]) -> None:
        self._name, self._documentation, self._labels = name, documentation, labels
        self._counts: dict[tuple[str, ...], int] = {}
        self._created: dict[tuple[str, ...], float] = {}

    def inc(self, *values: str) -> None:
        counts = self._counts
        count = counts.get(values)
        if count is None:  # a new series: its ``_created`` sample, as prometheus_client's
            self._created[values] = time.time()
            count = 0
        counts[values] = count + 1

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self._name, self._documentation, labels=self._labels)
        for values, count in list(self._counts.items()):
            family.add_metric(list(values), count, created=self._created.get(values))
        yield family


def _bound(seconds: float) -> str:
    return repr(float(seconds))  # 0.001, 1.0, 10.0: as prometheus_client spells a bound


class _Live(Collector):
    """The counters the server's parts keep themselves, read at each scrape."""

    def __init__(self, sources: Sequence[Reports]) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        for source in self._sources:
            for reading in source.readings():
                name = "apiward_" + reading.name
                if reading.kind == "histogram":
                    histogram = HistogramMetricFamily(name, reading.help)
                    buckets = [(values[0], value) for values, value in reading.samples]
                    histogram.add_metric([], buckets, reading.total)
                    yield histogram
                    continue
                family_type = (
                    CounterMetricFamily if reading.kind == "counter" else GaugeMetricFamily
                )
                family = family_type(name, reading.help, labels=list(reading.labels))
                for values, value in reading.samples:
                    family.add_metric(list(values), value)
                yield family
