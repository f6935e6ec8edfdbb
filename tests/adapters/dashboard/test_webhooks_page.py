"""Settings > Webhooks: add an endpoint (its secret shown once), see its deliveries, send
a test event to a real receiver, roll the secret, disable, delete; all through the
service of /v1/webhooks, for those whose role manages webhooks."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from apiward.adapters.settings import Settings
from apiward.webhooks import WebhookSignatureError, verify_signature
from tests.adapters.dashboard.conftest import Browser, secret_of
from tests.adapters.http.test_webhooks import Receiver, wait_for
from tests.adapters.http.test_webhooks import receiver as receiver
from tests.conftest import Org, fast_settings, migrated_sqlite


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return fast_settings(
        database_url=migrated_sqlite(tmp_path / "hooks.db"),
        webhook_poll_seconds=0.05,
        webhook_retry_base_seconds=0.05,
        webhook_max_attempts=2,
    )


def add(owner: Browser, url: str, events: list[str]) -> tuple[str, str]:
    """(endpoint id, signing secret) of an endpoint added through the form."""
    r = owner.post("/dashboard/webhooks", {"env": "live", "url": url, "event": events})
    assert r.status_code == 201, r.text
    secret = secret_of(r.text)
    found = re.search(r'href="/dashboard/webhooks/(wh_\w+)\?env=live"', r.text)
    assert found
    return found.group(1), secret


def signed_with(call_headers: dict[str, str], body: bytes, secret: str) -> bool:
    try:
        verify_signature(secret, call_headers["apiward-signature"], body, now=time.time())
    except WebhookSignatureError:
        return False
    return True


def test_add_test_and_roll_an_endpoint(org: Org, owner: Browser, receiver: Receiver) -> None:
    hook_id, secret = add(owner, f"{receiver.url}/hook", ["key.created"])
    assert secret.startswith("whsec_")
    listed = owner.get("/dashboard/webhooks").text
    assert f"{receiver.url}/hook" in listed and secret not in listed

    r = owner.post(f"/dashboard/webhooks/{hook_id}/test", {"env": "live"})
    assert r.status_code == 303
    wait_for(lambda: len(receiver.at("/hook")) == 1)
    call = receiver.at("/hook")[0]
    assert call.event["type"] == "webhook.test"
    assert signed_with(call.headers, call.body, secret)
    wait_for(lambda: "badge-delivery-succeeded" in owner.get(f"/dashboard/webhooks/{hook_id}").text)
    page = owner.get(f"/dashboard/webhooks/{hook_id}").text
    assert "webhook.test" in page and "HTTP 200" in page and secret not in page

    assert "Roll the signing secret?" in owner.get(f"/dashboard/webhooks/{hook_id}/roll").text
    r = owner.post(f"/dashboard/webhooks/{hook_id}/roll", {"env": "live"})
    assert r.status_code == 201
    rolled = secret_of(r.text)
    assert rolled != secret
    org.create_key(["keys:read"])
    wait_for(lambda: len(receiver.at("/hook")) == 2)
    call = receiver.at("/hook")[1]
    assert call.event["type"] == "key.created"
    assert signed_with(call.headers, call.body, rolled)
    assert not signed_with(call.headers, call.body, secret)


def test_a_failed_delivery_is_redelivered_from_its_page(
    org: Org, owner: Browser, receiver: Receiver, signed_in: Callable[..., Browser]
) -> None:
    receiver.answers["/flaky"] = [500, 500]
    hook_id, _ = add(owner, f"{receiver.url}/flaky", ["key.created"])
    org.create_key(["keys:read"])
    page = f"/dashboard/webhooks/{hook_id}"
    wait_for(lambda: "badge-delivery-failed" in owner.get(page).text)
    html = owner.get(page).text
    action = re.search(r'action="(/dashboard/webhooks/wh_\w+/deliveries/whd_\w+/redeliver)"', html)
    assert action
    viewer = signed_in("viewer")
    assert "Redeliver" not in viewer.get(page).text
    assert viewer.post(action.group(1), {"env": "live"}).status_code == 403
    r = owner.post(action.group(1), {"env": "live"})
    assert r.status_code == 303
    assert "The delivery is queued again" in owner.get(r.headers["location"]).text
    wait_for(lambda: "badge-delivery-succeeded" in owner.get(page).text)
    assert len(receiver.at("/flaky")) == 3
    assert "Redeliver" not in owner.get(page).text


def test_errors_are_shown_next_to_the_url_and_the_events(owner: Browser) -> None:
    r = owner.post(
        "/dashboard/webhooks",
        {"env": "live", "url": "ftp://example.com/x", "event": ["key.created"]},
    )
    assert r.status_code == 400
    assert 'id="url-error"' in r.text and 'id="events-error"' not in r.text
    r = owner.post("/dashboard/webhooks", {"env": "live", "url": "https://example.com/x"})
    assert r.status_code == 400
    assert 'id="events-error"' in r.text
    assert "No live webhook endpoint yet." in owner.get("/dashboard/webhooks").text


def test_disable_enable_and_delete(org: Org, owner: Browser, receiver: Receiver) -> None:
    hook_id, _ = add(owner, f"{receiver.url}/d", ["*"])

    def state() -> object:
        r = org.client.get(f"/v1/webhooks/{hook_id}", headers=org.headers())
        return r.json()["state"] if r.status_code == 200 else r.status_code

    owner.post(f"/dashboard/webhooks/{hook_id}/disable", {"env": "live"})
    assert state() == "disabled"
    assert (
        "The endpoint is disabled"
        in owner.get(f"/dashboard/webhooks/{hook_id}?env=live&done=disabled").text
    )
    owner.post(f"/dashboard/webhooks/{hook_id}/enable", {"env": "live"})
    assert state() == "enabled"
    assert "Delete this endpoint?" in owner.get(f"/dashboard/webhooks/{hook_id}/delete").text
    r = owner.post(f"/dashboard/webhooks/{hook_id}/delete", {"env": "live"})
    assert r.headers["location"] == "/dashboard/webhooks?env=live&done=deleted"
    assert state() == 404


def test_readers_see_managers_act_and_other_tenants_find_nothing(
    org: Org,
    other_org: Org,
    owner: Browser,
    receiver: Receiver,
    browser: Callable[[], Browser],
    signed_in: Callable[..., Browser],
) -> None:
    hook_id, _ = add(owner, f"{receiver.url}/v", ["key.created"])
    viewer = signed_in("viewer")
    page = viewer.get(f"/dashboard/webhooks/{hook_id}")
    assert page.status_code == 200
    assert "Send a test event" not in page.text and "Roll secret" not in page.text
    for action in ("test", "roll", "disable", "delete"):
        assert viewer.post(f"/dashboard/webhooks/{hook_id}/{action}", {}).status_code == 403
    assert viewer.get("/dashboard/webhooks/new").status_code == 403
    intruder = browser()
    intruder.sign_in("owner@globex.test")
    assert hook_id not in intruder.get("/dashboard/webhooks").text
    assert intruder.get(f"/dashboard/webhooks/{hook_id}").status_code == 404
    for action in ("test", "roll", "disable", "delete"):
        assert intruder.post(f"/dashboard/webhooks/{hook_id}/{action}", {}).status_code == 404
    assert org.client.get(f"/v1/webhooks/{hook_id}", headers=org.headers()).status_code == 200
    assert receiver.at("/v") == []
