"""Webhooks: the endpoints an organisation registers, and the signed delivery of its events.

The events are the audit log's. Every service already writes one audit event per
security-relevant change, in the change's own transaction, and
``AuditTx.insert_audit`` queues that event in an outbox in the same transaction:
that is the one hook, and no service or route calls webhooks itself. An event is
therefore delivered if and only if its change committed, whichever process (or the CLI)
made it.

A background task of each server process runs ``run_once``:

1. ``fan_out`` takes events from the outbox and queues one delivery per endpoint
   subscribed to the event's type (same organisation; same environment, or an
   organisation-wide event), skipping pairs already queued;
2. ``deliver_due`` leases due deliveries, posts each body signed with the endpoint's
   secret (``apiward.webhooks``: ``Apiward-Signature: t=...,v1=...``), and records the
   attempt. A 2xx succeeds; anything else is retried after ``retry_base * 2**(n-1)``
   seconds (capped, with up to 10% jitter) until ``max_attempts``, then ``failed``.

Leases make it safe for any number of processes to dispatch at once. Delivery is at
least once: receivers deduplicate on the event id (``Apiward-Event-Id``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import secrets
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol
from urllib.parse import urlsplit

import structlog

from apiward.core.clock import Clock
from apiward.core.crypto import Sealer, SealError
from apiward.core.destinations import Destinations
from apiward.core.errors import ApiwardError, Conflict, InvalidInput, NotFound
from apiward.core.ids import new_id
from apiward.core.jsontext import rfc3339
from apiward.core.models import AuditEvent, Page, PageRequest, Principal, visible_in
from apiward.core.readings import Reading
from apiward.core.webhooks import WebhookDelivery, WebhookEndpoint
from apiward.services.audit import audit_event
from apiward.services.authority import readable_delivery, require_event_reader
from apiward.services.keys import effective_environment
from apiward.services.ports import AuditTx, Store, WebhookSender, WebhooksTx
from apiward.webhooks import SIGNATURE_HEADER, sign


class WebhooksServiceTx(WebhooksTx, AuditTx, Protocol):
    """What managing webhooks and delivering events touches."""


log = structlog.get_logger("apiward.webhooks")

# The events an endpoint may subscribe to ("*": all of them).
WEBHOOK_EVENTS: dict[str, str] = {
    "key.created": "An API key was created.",
    "key.updated": "An API key's settings changed.",
    "key.disabled": "An API key was disabled.",
    "key.enabled": "A disabled API key was enabled again.",
    "key.revoked": "An API key was revoked.",
    "key.rolled": "An API key was rolled; the old one works for the grace period.",
    "key.leaked": "A credential was reported leaked (GitHub secret scanning or the CLI).",
    "key.expiring": "An API key expires within one of the reminder days (30, 7, 1 by default).",
    "key.credits_low": "A refilling API key spent a threshold share of its credits "
    "(50, 80, 100% by default), once per refill period.",
    "key.disabled_unused": "An API key unused for the organisation's limit was disabled.",
    "key.anomaly": "An API key's requests of one day came from more networks or countries "
    "than the organisation's threshold (a shared key?); disabled when its policy says so.",
    "client.created": "An OAuth client was created.",
    "client.updated": "An OAuth client's settings changed.",
    "client.revoked": "An OAuth client was revoked.",
    "credits.low": "An API key's usage credits fell below the low-credit threshold.",
    "credits.exhausted": "An API key was refused because its usage credits are spent.",
    "rate_limit.exceeded": "A credential was locked out by a rate limit (once a minute).",
    "refresh_token.reuse_detected": "A used refresh token was replayed; its session is revoked.",
    "refresh_token.retried": "A used refresh token was presented again while its successor "
    "was unused (a lost answer); the family was rotated again from it.",
    "session.revoked": "A refresh token (and its session) was revoked.",
    "login.failed": "A sign-in failed.",
    "login.mfa_failed": "A sign-in's second step failed: a wrong, late or reused code.",
    "user.mfa_enabled": "A user or account turned two-factor sign-in on.",
    "user.mfa_disabled": "Two-factor sign-in was turned off (by its owner or an operator).",
    "user.mfa_recovery_used": "A recovery code signed someone in (it works once).",
    "signing_key.rotated": "The access-token signing key was rotated.",
    "user.created": "A user was created.",
    "user.updated": "A user was renamed, disabled or enabled.",
    "membership.granted": "A user was given a role.",
    "membership.removed": "A user's role was removed.",
    "role.created": "A custom role was created.",
    "role.updated": "A custom role's scopes changed.",
    "role.deleted": "A custom role was deleted.",
}
TEST_EVENT = "webhook.test"
MAX_ENDPOINTS = 20
MAX_URL = 2048
_SEAL_CONTEXT = "webhook-secret:"
_ATTEMPT_LOG = 20
_OUTBOX_BATCH = 500


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    max_attempts: int = 8
    retry_base: float = 30.0
    """Seconds before the first retry; doubled at each further one."""
    retry_max: float = 6 * 3600.0
    timeout: float = 10.0
    batch: int = 20
    """Deliveries attempted at once by one process."""

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.timeout * 2 + 5)

    def backoff(self, attempt: int) -> timedelta:
        delay = min(self.retry_max, self.retry_base * 2 ** (attempt - 1))
        return timedelta(seconds=delay * (1 + secrets.randbelow(1000) / 10_000))


@dataclass(frozen=True, slots=True)
class CreatedWebhook:
    endpoint: WebhookEndpoint
    secret: str


_LOCALHOST = ("localhost", "localhost.")


def _loopback(host: str) -> bool:
    if host.lower() in _LOCALHOST:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, destinations: Destinations) -> str:
    """An absolute ``https://`` URL (``http://`` only to a loopback address, for tests),
    whose host, when written as an address, is one deliveries may reach. (Names are
    checked when a delivery resolves them, every time.)"""
    url = url.strip()
    if not url or len(url) > MAX_URL or any(c.isspace() or ord(c) < 32 for c in url):
        raise InvalidInput(
            f"The webhook URL must be an absolute https:// URL of at most {MAX_URL} characters."
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise InvalidInput(f"{url[:100]!r} is not a valid URL.") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidInput("The webhook URL must be an absolute https:// URL.")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput(
            "The webhook URL must not carry credentials; the signature proves the sender."
        )
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise InvalidInput(
            "Webhook endpoints must use https://. Plain http:// is accepted only for a "
            "loopback address (127.0.0.1, ::1, localhost), for local testing."
        )
    if not _reachable(parts.hostname, destinations):
        raise InvalidInput(
            f"Webhook deliveries go to public addresses only, and {parts.hostname} is not "
            "one. An operator may allow private networks with "
            "APIWARD_WEBHOOK_ALLOWED_NETWORKS."
        )
    return url


def _reachable(host: str, destinations: Destinations) -> bool:
    if host.lower() in _LOCALHOST:
        return destinations.loopback_allowed()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return True  # a name: checked at delivery, where it is resolved
    return destinations.permits(address)


def check_events(events: list[str]) -> tuple[str, ...]:
    wanted = tuple(dict.fromkeys(e.strip() for e in events))
    if not wanted:
        raise InvalidInput(
            "Subscribe the endpoint to at least one event, e.g. 'key.revoked', or '*'."
        )
    unknown = [e for e in wanted if e != "*" and e not in WEBHOOK_EVENTS]
    if unknown:
        raise InvalidInput(
            f"Unknown event {unknown[0][:64]!r}; use '*' or some of: {', '.join(WEBHOOK_EVENTS)}."
        )
    return wanted


def subscribed(endpoint: WebhookEndpoint, event: AuditEvent) -> bool:
    """Whether ``endpoint`` wants ``event``: its org and environment, a type it listed."""
    return (
        endpoint.org_id == event.org_id
        and visible_in(event.environment, endpoint.environment)
        and event.created_at >= endpoint.created_at
        and (
            event.type in endpoint.events
            or ("*" in endpoint.events and event.type in WEBHOOK_EVENTS)
        )
    )


def payload(event: AuditEvent) -> str:
    """The JSON body of an event: what happened, to what, by whom, from where."""
    body = {
        "id": event.id,
        "type": event.type,
        "created_at": rfc3339(event.created_at),
        "org_id": event.org_id,
        "environment": event.environment,
        "actor": {"user_id": event.actor_user_id, "credential_id": event.actor_credential_id},
        "target": {"type": event.target_type, "id": event.target_id} if event.target_id else None,
        "context": {
            "space_id": event.space_id,
            "ip": event.ip,
            "user_agent": event.user_agent,
            "request_id": event.request_id,
        },
        "data": event.data,
    }
    return json.dumps(body, separators=(",", ":"))


class Webhooks:
    def __init__(
        self,
        store: Store[WebhooksServiceTx],
        clock: Clock,
        sealer: Sealer,
        environments: tuple[str, ...],
        sender: WebhookSender,
        policy: DeliveryPolicy | None = None,
        destinations: Destinations | None = None,
    ) -> None:
        self._store = store
        self.destinations = destinations or Destinations()
        """Where deliveries may go: public addresses and the operator's allowed networks."""
        self._clock = clock
        self._sealer = sealer
        self._environments = environments
        self.policy = policy or DeliveryPolicy()
        self._sender = sender
        self.outcomes: Counter[str] = Counter()
        """Attempts by outcome (``succeeded``, ``retrying``, ``failed``), for metrics."""

    def readings(self) -> list[Reading]:
        return [
            Reading.counts(
                "webhook_attempts",
                "Webhook delivery attempts, by outcome (succeeded, retrying, failed).",
                ("outcome",),
                self.outcomes,
            )
        ]

    # managing endpoints ---------------------------------------------------------------

    def _seal(self, endpoint_id: str, secret: str) -> str:
        return self._sealer.seal(secret.encode(), _SEAL_CONTEXT + endpoint_id)

    async def _get(
        self, tx: WebhooksServiceTx, principal: Principal, webhook_id: str
    ) -> WebhookEndpoint:
        endpoint = await tx.get_webhook(principal.org_id, webhook_id)
        if endpoint is None or not principal.sees(endpoint.environment):
            raise NotFound("webhook endpoint", webhook_id)
        return endpoint

    def _audit(
        self,
        principal: Principal,
        type: str,
        endpoint: WebhookEndpoint,
        now: datetime,
        **data: object,
    ) -> AuditEvent:
        return audit_event(
            principal, type, now, target_type="webhook", target_id=endpoint.id, data=data
        )

    async def create(
        self,
        principal: Principal,
        *,
        url: str,
        events: list[str],
        description: str = "",
        environment: str | None = None,
    ) -> CreatedWebhook:
        """Register an endpoint; its signing secret is in the answer only."""
        require_event_reader(principal)
        env = effective_environment(principal, environment)
        if env not in self._environments:
            raise InvalidInput(
                f"Unknown environment {env!r}; use one of: {', '.join(self._environments)}."
            )
        url = check_url(url, self.destinations)
        wanted = check_events(events)
        now = self._clock.now()
        endpoint_id = new_id("wh")
        secret = "whsec_" + secrets.token_urlsafe(32)
        endpoint = WebhookEndpoint(
            id=endpoint_id,
            org_id=principal.org_id,
            environment=env,
            url=url,
            events=wanted,
            secret_sealed=self._seal(endpoint_id, secret),
            created_by=principal.user_id,
            created_at=now,
            updated_at=now,
            description=description.strip()[:500],
        )
        async with self._store.begin() as tx:
            existing = await tx.list_webhooks(principal.org_id, None, PageRequest(1, 1))
            if existing.total >= MAX_ENDPOINTS:
                raise Conflict(f"An organisation has at most {MAX_ENDPOINTS} webhook endpoints.")
            await tx.insert_webhook(endpoint)
            await tx.insert_audit(
                self._audit(
                    principal, "webhook.created", endpoint, now, url=url, events=list(wanted)
                )
            )
        return CreatedWebhook(endpoint, secret)

    async def get(self, principal: Principal, webhook_id: str) -> WebhookEndpoint:
        async with self._store.begin() as tx:
            return await self._get(tx, principal, webhook_id)

    async def list_endpoints(
        self, principal: Principal, page: PageRequest, *, environment: str | None = None
    ) -> Page[WebhookEndpoint]:
        env = environment
        if principal.viewed_environment is not None:
            env = effective_environment(principal, environment)
        async with self._store.begin() as tx:
            return await tx.list_webhooks(principal.org_id, env, page)

    async def update(
        self,
        principal: Principal,
        webhook_id: str,
        *,
        url: str | None = None,
        events: list[str] | None = None,
        description: str | None = None,
        disabled: bool | None = None,
    ) -> WebhookEndpoint:
        changes: dict[str, object] = {}
        if url is not None or events is not None or disabled is False:
            require_event_reader(principal)
        if url is not None:
            changes["url"] = check_url(url, self.destinations)
        if events is not None:
            changes["events"] = check_events(events)
        if description is not None:
            changes["description"] = description.strip()[:500]
        now = self._clock.now()
        async with self._store.begin() as tx:
            endpoint = await self._get(tx, principal, webhook_id)
            if disabled is not None and disabled != (endpoint.disabled_at is not None):
                changes["disabled_at"] = now if disabled else None
            updated = replace(endpoint, updated_at=now, **changes)  # type: ignore[arg-type]
            await tx.update_webhook(updated)
            audit = {k: list(v) if isinstance(v, tuple) else v for k, v in changes.items()}
            if "disabled_at" in audit:
                audit["disabled_at"] = str(audit["disabled_at"]) if audit["disabled_at"] else None
            await tx.insert_audit(self._audit(principal, "webhook.updated", endpoint, now, **audit))
        return updated

    async def delete(self, principal: Principal, webhook_id: str) -> None:
        now = self._clock.now()
        async with self._store.begin() as tx:
            endpoint = await self._get(tx, principal, webhook_id)
            await tx.delete_webhook(principal.org_id, endpoint.id)
            await tx.insert_audit(
                self._audit(principal, "webhook.deleted", endpoint, now, url=endpoint.url)
            )

    async def roll_secret(self, principal: Principal, webhook_id: str) -> CreatedWebhook:
        """A new signing secret, at once (shown once); the old one stops signing."""
        secret = "whsec_" + secrets.token_urlsafe(32)
        now = self._clock.now()
        async with self._store.begin() as tx:
            endpoint = await self._get(tx, principal, webhook_id)
            updated = replace(
                endpoint, secret_sealed=self._seal(endpoint.id, secret), updated_at=now
            )
            await tx.update_webhook(updated)
            await tx.insert_audit(self._audit(principal, "webhook.secret_rolled", endpoint, now))
        return CreatedWebhook(updated, secret)

    async def deliveries(
        self, principal: Principal, webhook_id: str, page: PageRequest
    ) -> Page[WebhookDelivery]:
        """The endpoint's deliveries, newest first, with the outcome of their attempts (and
        the body sent, to a credential that may read audit events: ``readable_delivery``)."""
        async with self._store.begin() as tx:
            endpoint = await self._get(tx, principal, webhook_id)
            found = await tx.list_deliveries(principal.org_id, endpoint.id, page)
        return replace(found, items=[readable_delivery(principal, d) for d in found.items])

    async def redeliver(
        self, principal: Principal, webhook_id: str, delivery_id: str
    ) -> WebhookDelivery:
        """Send a failed delivery again, due at once, with its attempts counted afresh:
        the same event, the same body (a receiver that deduplicates by event id sees it
        once). Only a failed delivery is sent again (a 409 otherwise)."""
        now = self._clock.now()
        async with self._store.begin() as tx:
            endpoint = await self._get(tx, principal, webhook_id)
            found = await tx.get_delivery(principal.org_id, endpoint.id, delivery_id)
            if found is None:
                raise NotFound("webhook delivery", delivery_id)
            if not await tx.requeue_delivery(principal.org_id, endpoint.id, delivery_id, now):
                raise Conflict(
                    f"Delivery {delivery_id} is {found.status}: only a failed delivery is "
                    "sent again."
                )
            await tx.insert_audit(
                self._audit(
                    principal,
                    "webhook.redelivered",
                    endpoint,
                    now,
                    delivery_id=delivery_id,
                    event_type=found.event_type,
                )
            )
            queued = await tx.get_delivery(principal.org_id, endpoint.id, delivery_id)
        return readable_delivery(principal, queued or found)

    async def send_test(self, principal: Principal, webhook_id: str) -> WebhookDelivery:
        """Queue a ``webhook.test`` event for the endpoint, due at once."""
        now = self._clock.now()
        async with self._store.begin() as tx:
            endpoint = await self._get(tx, principal, webhook_id)
            event = audit_event(
                principal, TEST_EVENT, now, target_type="webhook", target_id=endpoint.id
            )
            delivery = self._delivery(
                endpoint, replace(event, environment=endpoint.environment), now
            )
            await tx.insert_deliveries([delivery])
        return readable_delivery(principal, delivery)

    # dispatching ----------------------------------------------------------------------

    @staticmethod
    def _delivery(endpoint: WebhookEndpoint, event: AuditEvent, now: datetime) -> WebhookDelivery:
        return WebhookDelivery(
            id=new_id("whd"),
            endpoint_id=endpoint.id,
            org_id=endpoint.org_id,
            event_id=event.id,
            event_type=event.type,
            payload=payload(event),
            created_at=now,
            next_attempt_at=now,
        )

    async def fan_out(self) -> int:
        """Move outbox events into deliveries for the endpoints that want them."""
        queued = 0
        for _ in range(10):  # bounded work per tick; the rest waits for the next one
            now = self._clock.now()
            async with self._store.begin() as tx:
                events = await tx.take_outbox(_OUTBOX_BATCH)
                if not events:
                    break
                endpoints = await tx.active_webhooks()
                deliveries = [
                    self._delivery(endpoint, event, now)
                    for event in events
                    for endpoint in endpoints
                    if subscribed(endpoint, event)
                ]
                queued += await tx.insert_deliveries(deliveries)
            if len(events) < _OUTBOX_BATCH:
                break
        return queued

    async def deliver_due(self) -> int:
        """Attempt the deliveries that are due; the number attempted."""
        now = self._clock.now()
        async with self._store.begin() as tx:
            claimed = await tx.claim_deliveries(now, now + self.policy.lease, self.policy.batch)
            endpoints = {}
            for delivery in claimed:
                if delivery.endpoint_id not in endpoints:
                    endpoint = await tx.get_webhook(delivery.org_id, delivery.endpoint_id)
                    if endpoint is not None:
                        endpoints[endpoint.id] = endpoint
        work = [(d, endpoints[d.endpoint_id]) for d in claimed if d.endpoint_id in endpoints]
        if not work:
            return 0
        done = await asyncio.gather(*(self._attempt(d, e) for d, e in work))
        async with self._store.begin() as tx:
            for delivery in done:
                await tx.finish_attempt(delivery)
        return len(done)

    async def run_once(self) -> None:
        """One tick of the dispatcher (the runtime's background task)."""
        try:
            await self.fan_out()
            await self.deliver_due()
        except ApiwardError:
            raise  # logged by the runtime; the next tick retries
        except Exception:
            # A bug must not stop every later delivery: leased rows are retried once
            # their lease runs out.
            log.exception("webhook_dispatch_failed")

    async def _attempt(
        self, delivery: WebhookDelivery, endpoint: WebhookEndpoint
    ) -> WebhookDelivery:
        attempt = delivery.attempts + 1
        status: int | None = None
        try:
            secret = self._sealer.open(endpoint.secret_sealed, _SEAL_CONTEXT + endpoint.id).decode()
        except SealError:
            error: str | None = (
                "The endpoint's secret cannot be opened: APIWARD_SECRET_KEY changed."
            )
            duration = 0.0
        else:
            body = delivery.payload.encode()
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(secret, body, int(self._clock.now().timestamp())),
                "Apiward-Event-Id": delivery.event_id,
                "Apiward-Event-Type": delivery.event_type,
                "Apiward-Delivery-Id": delivery.id,
                "Apiward-Delivery-Attempt": str(attempt),
            }
            outcome = await self._sender.post(endpoint.url, body, headers)
            status, duration = outcome.status, outcome.duration_ms
            error = outcome.error
            if error is None and status is not None and not 200 <= status < 300:
                error = f"The endpoint answered HTTP {status}."
        now = self._clock.now()
        entry: dict[str, object] = {
            "attempt": attempt,
            "at": now.isoformat(),
            "status": status,
            "error": error,
            "duration_ms": round(duration, 1),
        }
        done = replace(
            delivery,
            attempts=attempt,
            last_attempt_at=now,
            response_status=status,
            error=error,
            attempt_log=(*delivery.attempt_log, entry)[-_ATTEMPT_LOG:],
        )
        if error is None:
            self.outcomes["succeeded"] += 1
            return replace(done, status="succeeded", completed_at=now, next_attempt_at=None)
        if attempt >= self.policy.max_attempts:
            self.outcomes["failed"] += 1
            log.warning(
                "webhook_delivery_failed",
                delivery_id=delivery.id,
                endpoint_id=endpoint.id,
                attempts=attempt,
                error=error,
            )
            return replace(done, status="failed", completed_at=now, next_attempt_at=None)
        self.outcomes["retrying"] += 1
        return replace(done, next_attempt_at=now + self.policy.backoff(attempt))
