"""The webhook service's rules: who receives an event, the retry schedule, valid URLs."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from apiward.core.destinations import LOOPBACK, Destinations
from apiward.core.errors import InvalidInput
from apiward.core.models import AuditEvent, RequestContext
from apiward.core.webhooks import WebhookEndpoint
from apiward.services.audit import new_event
from apiward.services.webhooks import (
    WEBHOOK_EVENTS,
    DeliveryPolicy,
    check_events,
    check_url,
    payload,
    subscribed,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LOCAL = Destinations(LOOPBACK)
"""Loopback receivers allowed, as on a developer's machine."""
ENDPOINT = WebhookEndpoint(
    id="wh_1",
    org_id="org_a",
    environment="live",
    url="https://hooks.example.test/",
    events=("key.revoked",),
    secret_sealed="-",
    created_by="usr_1",
    created_at=T0,
    updated_at=T0,
)
EVENT = AuditEvent(
    id="evt_1",
    org_id="org_a",
    environment="live",
    type="key.revoked",
    created_at=T0 + timedelta(seconds=1),
    actor_user_id="usr_1",
    actor_credential_id="key_1",
    target_type="api_key",
    target_id="key_2",
    ip="203.0.113.9",
    data={"reason": "x"},
)


@pytest.mark.parametrize(
    ("change", "wanted"),
    [
        ({}, True),
        ({"org_id": "org_b"}, False),
        ({"environment": "test"}, False),
        ({"environment": None}, True),  # an organisation-wide event
        ({"type": "key.created"}, False),
        ({"created_at": T0 - timedelta(seconds=1)}, False),  # before the endpoint existed
    ],
)
def test_who_receives_an_event(change: dict[str, object], wanted: bool) -> None:
    assert subscribed(ENDPOINT, replace(EVENT, **change)) is wanted  # type: ignore[arg-type]


def test_star_means_every_catalogued_event_but_not_internal_ones() -> None:
    everything = replace(ENDPOINT, events=("*",))
    for event_type in WEBHOOK_EVENTS:
        assert subscribed(everything, replace(EVENT, type=event_type))
    assert not subscribed(everything, replace(EVENT, type="webhook.created"))


def test_the_retry_schedule_doubles_with_bounded_jitter_and_a_cap() -> None:
    policy = DeliveryPolicy(retry_base=30, retry_max=600)
    for attempt, base in [(1, 30), (2, 60), (3, 120), (5, 480), (6, 600), (20, 600)]:
        delay = policy.backoff(attempt).total_seconds()
        assert base <= delay <= base * 1.1


def test_the_payload_names_the_event_target_actor_and_context() -> None:
    body = json.loads(payload(EVENT))
    assert body["id"] == "evt_1" and body["type"] == "key.revoked"
    assert body["created_at"] == "2026-01-01T00:00:01Z"
    assert body["target"] == {"type": "api_key", "id": "key_2"}
    assert body["actor"] == {"user_id": "usr_1", "credential_id": "key_1"}
    assert body["context"]["ip"] == "203.0.113.9" and body["data"] == {"reason": "x"}


def test_a_payload_holds_times_of_the_event_data_as_rfc3339_text() -> None:
    """An event's data is made JSON-safe where the event is made, so its body (and the
    audit log's copy) carry the same text for a time."""
    event = new_event(
        "key.updated",
        T0,
        RequestContext(),
        org_id="org_a",
        environment="live",
        data={"expires_at": T0 + timedelta(days=1), "ip_allow": ("10.0.0.0/8",)},
    )
    assert event.data == {"expires_at": "2026-01-02T00:00:00Z", "ip_allow": ["10.0.0.0/8"]}
    assert json.loads(payload(event))["data"] == event.data


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.test/in?x=1",
        "http://127.0.0.1:8000/in",
        "http://127.1.2.3/in",
        "http://[::1]:9000/in",
        "http://localhost/in",
    ],
)
def test_accepted_urls(url: str) -> None:
    assert check_url(f"  {url} ", LOCAL) == url


@pytest.mark.parametrize(
    "url",
    [
        "",
        "http://10.0.0.1/in",
        "http://hooks.example.test/in",
        "https://",
        "https://a b/",
        "https://x.test/a\nb",
        "javascript:alert(1)",
        "https://u:p@x.test/",
        "https://x.test:70000/",
        "https://x.test/" + "a" * 2048,
    ],
)
def test_refused_urls(url: str) -> None:
    with pytest.raises(InvalidInput):
        check_url(url, LOCAL)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/in",
        "http://localhost/in",
        "https://10.0.0.7/in",
        "https://192.168.1.1/in",
        "https://169.254.169.254/latest/meta-data",
        "https://[::ffff:127.0.0.1]/in",
        "https://[fd00::1]/in",
        "https://100.64.0.1/in",
        "https://0.0.0.0/in",
        "https://224.0.0.1/in",
        "https://[::127.0.0.1]/in",  # IPv4-compatible
        "https://[::a00:1]/in",
        "https://[64:ff9b::7f00:1]/in",  # NAT64 of 127.0.0.1
        "https://[64:ff9b::a9fe:a9fe]/in",  # NAT64 of the metadata service
        "https://[64:ff9b:1::a00:1]/in",  # local-use NAT64
        "https://[2002:7f00:1::]/in",  # 6to4 of 127.0.0.1
        "https://[2002:a00:1::1]/in",  # 6to4 of 10.0.0.1
        "https://[fec0::1]/in",  # site-local
        "https://[2001::1]/in",  # Teredo
    ],
)
def test_private_addresses_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(InvalidInput, match="public addresses only"):
        check_url(url, Destinations())
    assert check_url(url, Destinations.parse(["0.0.0.0/0", "::/0"])) == url


def test_public_addresses_and_names_pass() -> None:
    public = (
        "https://93.184.215.14/in",
        "https://[2606:4700::1]/in",
        "https://x.test/in",
        "https://[64:ff9b::5db8:d70e]/in",  # NAT64 of a public address
        "https://[2002:5db8:d70e::1]/in",  # 6to4 of a public address
    )
    for url in public:
        assert check_url(url, Destinations()) == url


def test_events_are_deduplicated_and_checked() -> None:
    assert check_events(["key.revoked", "key.revoked", " * "]) == ("key.revoked", "*")
    with pytest.raises(InvalidInput, match="at least one"):
        check_events([])
    with pytest.raises(InvalidInput, match=r"Unknown event 'key\.exploded'"):
        check_events(["key.exploded"])
