"""Webhooks end to end: a real receiver on loopback gets signed events, retries, history."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from apiward.adapters.http.app import create_app
from apiward.core.models import RequestContext
from apiward.services.leaks import LeakReport
from apiward.webhooks import WebhookSignatureError, verify_signature
from tests.conftest import Org, bootstrap, fast_settings, migrated_sqlite
from tests.live import serve


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class Receiver:
    """A webhook receiver: records every call; answers the statuses queued per path."""

    url: str = ""
    calls: list[Received] = field(default_factory=list)
    answers: dict[str, list[int]] = field(default_factory=dict)

    async def handle(self, request: Request) -> Response:
        path = request.url.path
        self.calls.append(Received(path, dict(request.headers), await request.body()))
        queued = self.answers.get(path)
        return Response(status_code=queued.pop(0) if queued else 200)

    def at(self, path: str) -> list[Received]:
        return [c for c in self.calls if c.path == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    app = Starlette(routes=[Route("/{name}", rec.handle, methods=["POST"])])
    with serve(app) as base:
        rec.url = base
        yield rec


@pytest.fixture
def org(tmp_path: Path) -> Iterator[Org]:
    settings = fast_settings(
        database_url=migrated_sqlite(tmp_path / "hooks.db"),
        webhook_poll_seconds=0.05,
        webhook_retry_base_seconds=0.05,
        webhook_max_attempts=3,
        refresh_grace_seconds=0,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield bootstrap(client)


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the webhook")
        time.sleep(0.02)


def register(org: Org, url: str, events: list[str], key: str | None = None) -> dict[str, Any]:
    r = org.client.post(
        "/v1/webhooks", headers=org.headers(key), json={"url": url, "events": events}
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def deliveries(org: Org, webhook_id: str) -> list[dict[str, Any]]:
    r = org.client.get(f"/v1/webhooks/{webhook_id}/deliveries", headers=org.headers())
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def latest(org: Org, webhook_id: str) -> dict[str, Any]:
    """The newest delivery of the endpoint, or {} before the first."""
    items = deliveries(org, webhook_id)
    return items[0] if items else {}


def test_a_created_key_is_delivered_signed_with_the_endpoint_secret(
    org: Org, receiver: Receiver
) -> None:
    hook = register(org, f"{receiver.url}/a", ["key.created"])
    assert hook["secret"].startswith("whsec_") and hook["state"] == "enabled"
    key = org.create_key(["keys:read"])
    wait_for(lambda: len(receiver.at("/a")) == 1)
    call = receiver.at("/a")[0]
    verify_signature(hook["secret"], call.headers["apiward-signature"], call.body)
    with pytest.raises(WebhookSignatureError):
        verify_signature("whsec_not-the-secret", call.headers["apiward-signature"], call.body)
    event = call.event
    assert event["type"] == "key.created" and event["org_id"] == org.id
    assert event["target"] == {"type": "api_key", "id": key["id"]}
    assert event["environment"] == "live"
    assert call.headers["apiward-event-id"] == event["id"]
    assert call.headers["apiward-event-type"] == "key.created"
    assert call.headers["content-type"] == "application/json"
    assert key["key"] not in call.body.decode()  # never the secret itself


def test_a_500_is_retried_with_backoff_then_succeeds_and_the_history_shows_it(
    org: Org, receiver: Receiver
) -> None:
    receiver.answers["/retry"] = [500]
    hook = register(org, f"{receiver.url}/retry", ["key.revoked"])
    key = org.create_key(["keys:read"])
    org.client.post(f"/v1/keys/{key['id']}/revoke", headers=org.headers())
    wait_for(lambda: len(receiver.at("/retry")) == 2)
    first, second = receiver.at("/retry")
    assert first.body == second.body  # the same event, signed afresh
    assert second.headers["apiward-delivery-attempt"] == "2"
    verify_signature(hook["secret"], second.headers["apiward-signature"], second.body)
    wait_for(lambda: latest(org, hook["id"]).get("status") == "succeeded")
    [delivery] = deliveries(org, hook["id"])
    assert delivery["event_type"] == "key.revoked" and delivery["attempts"] == 2
    assert [a["status"] for a in delivery["attempt_log"]] == [500, 200]
    assert delivery["attempt_log"][0]["error"] == "The endpoint answered HTTP 500."
    assert delivery["response_status"] == 200 and delivery["completed_at"] is not None
    assert delivery["payload"]["target"]["id"] == key["id"]


def test_attempts_are_bounded_then_the_delivery_fails(org: Org, receiver: Receiver) -> None:
    receiver.answers["/down"] = [503] * 10
    hook = register(org, f"{receiver.url}/down", ["key.created"])
    org.create_key(["keys:read"])
    wait_for(lambda: latest(org, hook["id"]).get("status") == "failed")
    [delivery] = deliveries(org, hook["id"])
    assert delivery["attempts"] == 3 and delivery["next_attempt_at"] is None
    assert len(receiver.at("/down")) == 3


def test_a_failed_delivery_is_sent_again_on_request_and_only_then(
    org: Org, receiver: Receiver
) -> None:
    """Redelivery queues the same event (same id, same body) with its attempts counted
    afresh and the earlier attempts kept in its log; only a failed delivery can be sent
    again, and only by its own organisation."""
    receiver.answers["/flaky"] = [503] * 3
    hook = register(org, f"{receiver.url}/flaky", ["key.created"])
    org.create_key(["keys:read"])
    wait_for(lambda: latest(org, hook["id"]).get("status") == "failed")
    failed = latest(org, hook["id"])
    path = f"/v1/webhooks/{hook['id']}/deliveries/{failed['id']}/redeliver"
    other = bootstrap(org.client, "Globex", "owner@globex.test", another=True)
    assert org.client.post(path, headers=other.headers()).status_code == 404
    r = org.client.post(path, headers=org.headers())
    assert r.status_code == 202, r.text
    assert (r.json()["status"], r.json()["attempts"]) == ("pending", 0)
    wait_for(lambda: latest(org, hook["id"]).get("status") == "succeeded")
    calls = receiver.at("/flaky")
    assert len(calls) == 4
    assert calls[-1].body == calls[0].body  # the same event, byte for byte
    done = latest(org, hook["id"])
    assert done["id"] == failed["id"] and done["attempts"] == 1
    again = org.client.post(path, headers=org.headers())
    assert again.status_code == 409 and "succeeded" in again.json()["message"]
    missing = f"/v1/webhooks/{hook['id']}/deliveries/whd_nope/redeliver"
    assert org.client.post(missing, headers=org.headers()).status_code == 404
    audit = org.client.get(
        "/v1/audit-events", headers=org.headers(), params={"type": "webhook.redelivered"}
    ).json()
    assert [e["data"]["delivery_id"] for e in audit["items"]] == [failed["id"]]


def test_an_unreachable_endpoint_records_the_error(org: Org) -> None:
    hook = register(org, "http://127.0.0.1:9/nothing", ["key.created"])
    org.create_key(["keys:read"])
    wait_for(lambda: latest(org, hook["id"]).get("attempts", 0) >= 1)
    delivery = latest(org, hook["id"])
    assert delivery["response_status"] is None and "Connect" in delivery["error"]


def test_each_org_receives_only_its_own_events(org: Org, receiver: Receiver) -> None:
    other = bootstrap(org.client, "Globex", "owner@globex.test", another=True)
    mine = register(org, f"{receiver.url}/acme", ["*"])
    theirs = register(other, f"{receiver.url}/globex", ["*"])
    org.create_key(["keys:read"])
    other.create_key(["keys:read"])
    wait_for(lambda: len(receiver.at("/acme")) == 1 and len(receiver.at("/globex")) == 1)
    time.sleep(0.3)  # nothing else arrives
    assert [c.event["org_id"] for c in receiver.at("/acme")] == [org.id]
    assert [c.event["org_id"] for c in receiver.at("/globex")] == [other.id]
    assert len(deliveries(org, mine["id"])) == 1
    r = other.client.get(f"/v1/webhooks/{mine['id']}/deliveries", headers=other.headers())
    assert r.status_code == 404
    listed = other.client.get("/v1/webhooks", headers=other.headers()).json()
    assert [w["id"] for w in listed["items"]] == [theirs["id"]]


def test_a_test_environment_event_is_not_sent_to_a_live_endpoint(
    org: Org, receiver: Receiver
) -> None:
    register(org, f"{receiver.url}/live", ["key.created"])
    test_hook = register(org, f"{receiver.url}/test", ["key.created"], key=org.owner_test_key)
    assert test_hook["environment"] == "test"
    org.create_key(["keys:read"], env="test")
    wait_for(lambda: len(receiver.at("/test")) == 1)
    time.sleep(0.3)
    assert receiver.at("/live") == []


def test_only_subscribed_events_are_sent_and_a_disabled_endpoint_gets_nothing(
    org: Org, receiver: Receiver
) -> None:
    revoked_only = register(org, f"{receiver.url}/revoked", ["key.revoked"])
    disabled = register(org, f"{receiver.url}/off", ["*"])
    r = org.client.patch(
        f"/v1/webhooks/{disabled['id']}", headers=org.headers(), json={"disabled": True}
    )
    assert r.status_code == 200 and r.json()["state"] == "disabled"
    key = org.create_key(["keys:read"])
    org.client.post(f"/v1/keys/{key['id']}/disable", headers=org.headers())
    org.client.post(f"/v1/keys/{key['id']}/revoke", headers=org.headers())
    wait_for(lambda: len(receiver.at("/revoked")) == 1)
    time.sleep(0.3)
    assert [c.event["type"] for c in receiver.at("/revoked")] == ["key.revoked"]
    assert receiver.at("/off") == []
    assert deliveries(org, revoked_only["id"])[0]["event_type"] == "key.revoked"


def test_the_test_event_and_a_rolled_secret(org: Org, receiver: Receiver) -> None:
    hook = register(org, f"{receiver.url}/ping", ["key.created"])
    rolled = org.client.post(f"/v1/webhooks/{hook['id']}/roll-secret", headers=org.headers())
    assert rolled.status_code == 200
    secret = rolled.json()["secret"]
    assert secret != hook["secret"]
    sent = org.client.post(f"/v1/webhooks/{hook['id']}/test", headers=org.headers())
    assert sent.status_code == 202 and sent.json()["event_type"] == "webhook.test"
    wait_for(lambda: len(receiver.at("/ping")) == 1)
    call = receiver.at("/ping")[0]
    assert call.event["type"] == "webhook.test"
    verify_signature(secret, call.headers["apiward-signature"], call.body)
    with pytest.raises(WebhookSignatureError):
        verify_signature(hook["secret"], call.headers["apiward-signature"], call.body)


def test_the_secret_is_shown_once_and_stored_sealed(org: Org) -> None:
    hook = register(org, "https://hooks.acme.test/in", ["key.revoked"])
    shown = org.client.get(f"/v1/webhooks/{hook['id']}", headers=org.headers()).json()
    assert "secret" not in shown
    listed = org.client.get("/v1/webhooks", headers=org.headers()).text
    assert hook["secret"] not in listed

    async def stored() -> str:
        async with org.runtime.store.begin() as tx:
            endpoint = await tx.get_webhook(org.id, hook["id"])
        assert endpoint is not None
        return endpoint.secret_sealed

    sealed = org.client.portal.call(stored)  # type: ignore[union-attr]
    assert hook["secret"] not in sealed and hook["secret"][6:] not in sealed


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"url": "http://hooks.acme.test/in", "events": ["*"]}, "https://"),
        ({"url": "ftp://hooks.acme.test/in", "events": ["*"]}, "https://"),
        ({"url": "https://user:pw@hooks.acme.test/", "events": ["*"]}, "credentials"),
        ({"url": "https://hooks.acme.test:99999/", "events": ["*"]}, "not a valid URL"),
        ({"url": "/relative", "events": ["*"]}, "absolute"),
        ({"url": "https://hooks.acme.test/", "events": ["key.exploded"]}, "Unknown event"),
        ({"url": "https://hooks.acme.test/", "events": []}, "events"),
    ],
)
def test_bad_endpoints_are_refused_with_a_message(
    org: Org, body: dict[str, Any], message: str
) -> None:
    r = org.client.post("/v1/webhooks", headers=org.headers(), json=body)
    assert r.status_code == 400, r.text
    assert message in r.json()["message"]


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/in", "http://localhost/in", "http://[::1]/in"]
)
def test_plain_http_is_allowed_to_loopback_only(org: Org, url: str) -> None:
    assert register(org, url, ["*"])["url"] == url


def test_scopes_guard_reading_and_managing(org: Org) -> None:
    reader = org.create_key(["webhooks:read"])["key"]
    r = org.client.post(
        "/v1/webhooks",
        headers=org.headers(reader),
        json={"url": "https://hooks.acme.test/", "events": ["*"]},
    )
    assert r.status_code == 403 and r.json()["required_scope"] == "webhooks:manage"
    assert org.client.get("/v1/webhooks", headers=org.headers(reader)).status_code == 200
    events = org.client.get("/v1/webhooks/events", headers=org.headers(reader)).json()
    assert {"key.leaked", "credits.low", "refresh_token.reuse_detected"} <= {
        e["type"] for e in events
    }
    nobody = org.create_key(["keys:read"])["key"]
    assert org.client.get("/v1/webhooks", headers=org.headers(nobody)).status_code == 403


def test_delivery_bodies_are_shown_to_audit_readers_only(org: Org, receiver: Receiver) -> None:
    """A delivery's body is an audit event: the history shows it to a credential holding
    ``audit:read``, and to one holding only ``webhooks:read`` everything else, with the
    body withheld (``payload`` null), in the history and in a test's answer alike."""
    reader = org.headers(org.create_key(["webhooks:read"])["key"])
    auditor = org.headers(org.create_key(["webhooks:read", "audit:read"])["key"])
    tester = org.headers(org.create_key(["webhooks:manage"])["key"])
    hook = register(org, f"{receiver.url}/a", ["key.created"])
    made = org.create_key(["keys:read"])
    wait_for(lambda: bool(latest(org, hook["id"])))
    path = f"/v1/webhooks/{hook['id']}/deliveries"
    [withheld] = org.client.get(path, headers=reader).json()["items"]
    [shown] = org.client.get(path, headers=auditor).json()["items"]
    assert withheld["payload"] is None
    assert shown["payload"]["target"] == {"type": "api_key", "id": made["id"]}
    assert (withheld["id"], withheld["event_type"]) == (shown["id"], "key.created")
    r = org.client.post(f"/v1/webhooks/{hook['id']}/test", headers=tester)
    assert r.status_code == 202, r.text
    assert r.json()["payload"] is None


def test_deleting_an_endpoint_is_audited_and_drops_its_history(
    org: Org, receiver: Receiver
) -> None:
    hook = register(org, f"{receiver.url}/gone", ["key.created"])
    org.create_key(["keys:read"])
    wait_for(lambda: len(receiver.at("/gone")) == 1)
    assert org.client.delete(f"/v1/webhooks/{hook['id']}", headers=org.headers()).status_code == 204
    assert org.client.get(f"/v1/webhooks/{hook['id']}", headers=org.headers()).status_code == 404
    audit = org.client.get(
        "/v1/audit-events", headers=org.headers(), params={"target_id": hook["id"]}
    ).json()
    assert [e["type"] for e in audit["items"]] == ["webhook.deleted", "webhook.created"]


def test_a_leaked_key_notifies_with_key_leaked_then_key_revoked(
    org: Org, receiver: Receiver
) -> None:
    register(org, f"{receiver.url}/leaks", ["key.leaked", "key.revoked"])
    key = org.create_key(["keys:read"])

    async def leak() -> None:
        report = LeakReport(key["key"], "apiward_api_key", "https://gist.example/1", "gist")
        await org.runtime.leaks.report([report], RequestContext(), reporter="test")

    org.client.portal.call(leak)  # type: ignore[union-attr]
    wait_for(lambda: len(receiver.at("/leaks")) == 2)
    leaked, revoked = sorted((c.event for c in receiver.at("/leaks")), key=lambda e: e["type"])
    assert leaked["type"] == "key.leaked" and revoked["type"] == "key.revoked"
    assert leaked["data"]["url"] == "https://gist.example/1" and leaked["data"]["source"] == "gist"
    assert leaked["target"]["id"] == revoked["target"]["id"] == key["id"]


def test_refresh_token_reuse_is_notified(org: Org, receiver: Receiver) -> None:
    register(org, f"{receiver.url}/reuse", ["refresh_token.reuse_detected"])
    login = {"username": "owner@acme.test", "password": "correct horse battery"}
    pair = org.client.post("/v1/auth/token", json=login).json()
    refresh = {"refresh_token": pair["refresh_token"]}
    successor = org.client.post("/v1/auth/refresh", json=refresh).json()["refresh_token"]
    assert org.client.post("/v1/auth/refresh", json={"refresh_token": successor}).is_success
    assert org.client.post("/v1/auth/refresh", json=refresh).status_code == 401
    wait_for(lambda: len(receiver.at("/reuse")) == 1)
    event = receiver.at("/reuse")[0].event
    assert event["type"] == "refresh_token.reuse_detected"
    assert event["target"]["id"] == org.owner_id and event["data"]["family_id"]
    assert pair["refresh_token"] not in receiver.at("/reuse")[0].body.decode()
