"""Traces (OpenTelemetry): the provider of one runtime, and the spans of its parts.

Tracing is off unless asked for (``tracing_reason`` in ``apiward.adapters.settings``:
``APIWARD_TRACING``, or an exporter configured by the standard ``OTEL_*`` variables), and
costs nothing then: ``configure`` returns None, the composition root wires the parts as
they are, and the request envelope has no span layer (``apiward.adapters.http.tracing``).
When it is on, the composition root wraps the parts that leave the process, each in a
class of this module satisfying the same protocol: the store's transactions, the rate
limiter when it is Redis, outbound webhooks (which carry the W3C ``traceparent`` of their
span) and mail; and the authentication decision.

The provider is the runtime's own, not the process-wide one: two apps in one process
(a test suite, a host app) each export their own spans, and the host's instrumentation
is left as it is. Its resource follows ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES`` (the service is ``apiward`` unless they name one), its
sampler ``OTEL_TRACES_SAMPLER``, its exporter ``OTEL_TRACES_EXPORTER`` (``otlp`` over
HTTP, configured by ``OTEL_EXPORTER_OTLP_*``, or ``console``), batched as
``OTEL_BSP_*`` says.

No span carries a credential, a token, a secret, an email address or a URL's query:
decisions name their outcome, the credential's kind and the organisation; webhooks
their host; mail its transport (docs/operations.md, "Tracing").
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from apiward import __version__
from apiward.adapters.mail import Transport
from apiward.adapters.settings import ConfigError, Settings, trace_exporter, tracing_reason
from apiward.core.errors import ApiwardError
from apiward.core.limits import Decision, Hit
from apiward.core.models import Principal, RequestContext
from apiward.core.webhooks import SendOutcome
from apiward.services.auth import Authenticator
from apiward.services.ports import Limiter, Store, Transaction, WebhookSender

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider


class Tracing:
    """The tracer of one runtime and the provider behind it."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer: Tracer = provider.get_tracer("apiward", __version__)

    def shutdown(self) -> None:
        """Export what is pending and stop the exporter (the runtime's stop)."""
        self.provider.shutdown()


def configure(settings: Settings, *, processor: SpanProcessor | None = None) -> Tracing | None:
    """The runtime's tracing, or None when it is off (nothing of the SDK is loaded).

    ``processor`` replaces the exporter the ``OTEL_*`` variables configure (a test's
    in-memory one, a host app's own pipeline); everything else is as configured.
    """
    if tracing_reason(settings.tracing, os.environ) is None:
        return None
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "apiward"}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(processor or _exporting())
    return Tracing(provider)


def _exporting() -> SpanProcessor:
    """A batch processor for the exporter ``OTEL_TRACES_EXPORTER`` names (the settings
    checked that it is one of these, and installed)."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    name = trace_exporter(os.environ)
    if name == "console":
        return BatchSpanProcessor(ConsoleSpanExporter())
    if name != "otlp":  # pragma: no cover - the settings refuse any other
        raise ConfigError([f"OTEL_TRACES_EXPORTER={name}: otlp, console or none"])
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return BatchSpanProcessor(OTLPSpanExporter())


class TracedAuthenticator(Authenticator):
    """The authenticator, with a span for each decision: its outcome (``allowed``, or
    the refusal's reason code), the credential's kind and the organisation."""

    def __init__(self, tracer: Tracer, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tracer = tracer

    async def authenticate(
        self,
        authorization: str | None,
        context: RequestContext,
        *,
        exempt: bool = False,
        scopes: tuple[str, ...] | list[str] = (),
        report_scopes: tuple[str, ...] | list[str] = (),
    ) -> Principal:
        with self._tracer.start_as_current_span(
            "apiward.authenticate",
            attributes={"apiward.scopes.required": list(scopes)} if scopes else None,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                principal = await super().authenticate(
                    authorization,
                    context,
                    exempt=exempt,
                    scopes=scopes,
                    report_scopes=report_scopes,
                )
            except ApiwardError as exc:  # a refusal is an answer, not a failure of the span
                span.set_attributes(
                    {"apiward.decision.outcome": "refused", "apiward.decision.reason": exc.reason}
                )
                raise
            span.set_attributes(
                {
                    "apiward.decision.outcome": "allowed",
                    "apiward.decision.reason": "VALID",
                    "apiward.credential.kind": principal.credential_kind.value,
                    "apiward.org.id": principal.org_id,
                    "apiward.environment": principal.environment,
                }
            )
            return principal


class TracedStore:
    """The store, with a client span around each transaction."""

    def __init__(self, store: Store[Transaction], tracer: Tracer, system: str) -> None:
        self._store = store
        self._tracer = tracer
        self._attributes = {"db.system.name": system}

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[Transaction]:
        with self._tracer.start_as_current_span(
            "apiward.store.transaction", kind=SpanKind.CLIENT, attributes=self._attributes
        ):
            async with self._store.begin() as tx:
                yield tx

    async def ping(self) -> None:
        await self._store.ping()

    async def close(self) -> None:
        await self._store.close()


class TracedLimiter:
    """The Redis rate limiter, with a client span around each call (its keys, which name
    addresses and users, are not recorded)."""

    def __init__(self, limiter: Limiter, tracer: Tracer) -> None:
        self._limiter = limiter
        self._tracer = tracer

    def _span(self, operation: str) -> Any:
        return self._tracer.start_as_current_span(
            "apiward.limiter." + operation,
            kind=SpanKind.CLIENT,
            attributes={"db.system.name": "redis", "db.operation.name": operation},
        )

    async def hit(self, key: str, limit: int, period: float, cost: int = 1) -> Decision:
        with self._span("hit") as span:
            decision = await self._limiter.hit(key, limit, period, cost)
            span.set_attribute("apiward.limiter.allowed", decision.allowed)
            return decision

    async def hit_all(self, hits: Sequence[Hit], report: Sequence[Hit] = ()) -> list[Decision]:
        with self._span("hit_all") as span:
            decisions = await self._limiter.hit_all(hits, report)
            enforced = decisions[: len(hits)]
            span.set_attribute("apiward.limiter.allowed", all(d.allowed for d in enforced))
            return decisions

    async def peek(self, key: str, limit: int, period: float, cost: int = 1) -> Decision:
        with self._span("peek"):
            return await self._limiter.peek(key, limit, period, cost)

    async def reset(self, key: str) -> None:
        with self._span("reset"):
            await self._limiter.reset(key)

    async def refund(self, hits: Sequence[Hit]) -> None:
        with self._span("refund"):
            await self._limiter.refund(hits)

    async def aclose(self) -> None:
        await self._limiter.aclose()


class TracedSender:
    """Webhook deliveries, each a client span whose context goes out with the request in
    ``traceparent`` (W3C Trace Context), so the receiver's trace continues it."""

    def __init__(self, sender: WebhookSender, tracer: Tracer) -> None:
        self._sender = sender
        self._tracer = tracer

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> SendOutcome:
        parts = urlsplit(url)
        attributes: dict[str, str | int] = {
            "http.request.method": "POST",
            "server.address": parts.hostname or "",
        }
        if parts.port:
            attributes["server.port"] = parts.port
        with self._tracer.start_as_current_span(
            "POST", kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            carried = dict(headers)
            propagate.inject(carried)
            outcome = await self._sender.post(url, body, carried)
            if outcome.status is not None:
                span.set_attribute("http.response.status_code", outcome.status)
            if outcome.error is not None or (outcome.status or 0) >= 400:
                span.set_status(Status(StatusCode.ERROR))
                span.set_attribute("error.type", str(outcome.status or "delivery_failed"))
            return outcome


class TracedTransport:
    """The mail transport, with a client span for each email sent (its recipients,
    subject and body, which carries sign-in links, are not recorded)."""

    def __init__(self, transport: Transport, tracer: Tracer) -> None:
        self.transport = transport
        self._tracer = tracer
        host = getattr(transport, "host", None)
        self._attributes = {"apiward.mail.transport": "smtp" if host else "log"}
        if host:
            self._attributes["server.address"] = host

    def send(self, message: EmailMessage) -> None:
        with self._tracer.start_as_current_span(
            "apiward.mail.send", kind=SpanKind.CLIENT, attributes=self._attributes
        ):
            self.transport.send(message)
