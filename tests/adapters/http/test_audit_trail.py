"""The audit log records every security-relevant event, with who, what, where and when."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from apiward.adapters import logging as logs
from apiward.adapters.http.app import create_app
from apiward.core.ids import new_id
from apiward.core.models import AuditEvent
from tests.conftest import Org, bootstrap, fast_settings, migrated_sqlite


@pytest.fixture
def org(tmp_path: Path) -> Iterator[Org]:
    settings = fast_settings(
        database_url=migrated_sqlite(tmp_path / "audit.db"),
        auth_failure_limit="3/minute",
        credits_low_threshold=2,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield bootstrap(client)


def events(org: Org, **params: str) -> list[dict[str, Any]]:
    r = org.client.get(
        "/v1/audit-events", headers=org.headers(), params={"page_size": "100", **params}
    )
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def test_a_change_made_over_http_records_actor_credential_ip_agent_and_request_id(
    org: Org,
) -> None:
    r = org.client.post(
        "/v1/keys",
        headers=org.headers(**{"User-Agent": "deploy-bot/1.0", "X-Request-Id": "req-audit-1"}),
        json={"name": "ci", "scopes": ["keys:read"]},
    )
    [event] = events(org, type="key.created", target_id=r.json()["id"])
    assert event["actor_user_id"] == org.owner_id
    assert event["actor_credential_id"].startswith("key_")
    assert event["ip"] == "testclient" and event["user_agent"] == "deploy-bot/1.0"
    assert event["request_id"] == "req-audit-1"
    assert event["space_id"] == org.space_id and event["environment"] == "live"
    assert datetime.fromisoformat(event["created_at"]) > datetime.now(UTC) - timedelta(minutes=1)


LIMITED: dict[str, Any] = {"rate_limits": [{"name": "per-key", "rate": "2/minute"}]}


def test_a_rate_limit_lockout_is_recorded_once_a_minute_per_credential(org: Org) -> None:
    key = org.create_key(["keys:read"], **LIMITED)
    statuses = [
        org.client.get(
            "/v1/keys", headers=org.headers(key["key"], **{"X-Request-Id": f"req-{i}"})
        ).status_code
        for i in range(6)
    ]
    assert statuses == [200, 200, 429, 429, 429, 429]
    [lockout] = events(org, type="rate_limit.exceeded")
    assert lockout["actor_credential_id"] == key["id"] and lockout["target_id"] == key["id"]
    assert lockout["data"]["policy"] == "per-key" and lockout["data"]["route"] == "/v1/keys"
    assert lockout["request_id"] == "req-2" and lockout["ip"] == "testclient"
    assert org.runtime.lockouts.suppressed == 3
    other = org.create_key(["keys:read"], **LIMITED)
    for _ in range(3):
        org.client.get("/v1/keys", headers=org.headers(other["key"]))
    assert len(events(org, type="rate_limit.exceeded")) == 2  # another credential: its own


def test_failed_authentications_locking_out_an_address_are_logged_once(org: Org) -> None:
    stream = io.StringIO()
    logs.configure("info", "json", stream)
    statuses = [
        org.client.get("/v1/keys", headers=org.headers("aw_live_nope")).status_code
        for _ in range(6)
    ]
    assert statuses == [401, 401, 401, 429, 429, 429]
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    locked = [line for line in lines if line["event"] == "auth_failures_locked_out"]
    assert len(locked) == 1 and locked[0]["policy"] == "auth-failures"
    assert locked[0]["ip"] == "testclient" and locked[0]["request_id"]


def test_credits_falling_low_and_running_out_are_recorded(org: Org) -> None:
    key = org.create_key(["keys:read"], by=org.operator_key(), credits={"remaining": 3})
    for _ in range(2):
        assert org.client.get("/v1/keys", headers=org.headers(key["key"])).status_code == 200
    [low] = events(org, type="credits.low")
    assert low["target_id"] == key["id"] and low["data"] == {"remaining": 1, "threshold": 2}
    org.client.get("/v1/keys", headers=org.headers(key["key"]))
    assert org.client.get("/v1/keys", headers=org.headers(key["key"])).status_code == 429
    [out] = events(org, type="credits.exhausted")
    assert out["data"]["policy"] == "credits"
    assert len(events(org, type="credits.low")) == 1


def test_a_signing_key_rotation_is_recorded_in_every_organisation(org: Org) -> None:
    other = bootstrap(org.client, "Globex", "owner@globex.test", another=True)
    before = org.runtime.keyring.current.kid
    rotated = org.client.portal.call(org.runtime.keyring.rotate)  # type: ignore[union-attr]
    for who in (org, other):
        [event] = events(who, type="signing_key.rotated")
        assert event["target_id"] == rotated.kid and event["environment"] is None
        assert event["data"]["reason"] == "manual" and event["data"]["retired"] == [before]
        assert event["actor_credential_id"] == "system"


def test_login_refresh_reuse_role_and_membership_changes_are_recorded(org: Org) -> None:
    login = {"username": "owner@acme.test", "password": "correct horse battery"}
    org.client.post("/v1/auth/token", json={**login, "password": "wrong"})
    pair = org.client.post("/v1/auth/token", json=login).json()
    org.client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    org.client.portal.call(org.runtime.tokens.drain)  # type: ignore[union-attr]
    org.client.post(
        "/v1/roles", headers=org.headers(), json={"name": "auditor", "scopes": ["audit:read"]}
    )
    user = org.create_user("ann@acme.test")
    org.client.put(
        f"/v1/users/{user['id']}/memberships", headers=org.headers(), json={"role": "auditor"}
    )
    types = {e["type"] for e in events(org)}
    assert {
        "login.failed",
        "login.succeeded",
        "role.created",
        "user.created",
        "membership.granted",
    } <= types


def test_the_audit_api_filters_by_type_actor_target_and_time(org: Org) -> None:
    key = org.create_key(["keys:read"])
    org.client.post(f"/v1/keys/{key['id']}/disable", headers=org.headers())
    assert [e["type"] for e in events(org, target_id=key["id"])] == ["key.disabled", "key.created"]
    assert all(e["actor_user_id"] == org.owner_id for e in events(org, actor_user_id=org.owner_id))
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert events(org, since=future) == []
    assert len(events(org, until=future, type="key.disabled")) == 1


def _old_event(org_id: str, days: int) -> AuditEvent:
    return AuditEvent(
        id=new_id("evt"),
        org_id=org_id,
        environment="live",
        type="key.created",
        created_at=datetime.now(UTC) - timedelta(days=days),
    )


def test_retention_deletes_events_older_than_the_setting(org: Org) -> None:
    old, recent = _old_event(org.id, 400), _old_event(org.id, 300)

    async def seed() -> tuple[int, int]:
        async with org.runtime.store.begin() as tx:
            await tx.insert_audit(old)
            await tx.insert_audit(recent)
        return await org.runtime.housekeeping.enforce_retention(force=True)

    deleted, _ = org.client.portal.call(seed)  # type: ignore[union-attr]
    assert deleted == 1
    ids = {
        e["id"] for e in events(org, until=(datetime.now(UTC) - timedelta(days=200)).isoformat())
    }
    assert ids == {recent.id}
    # Once an hour at most: housekeeping runs every minute.
    assert org.client.portal.call(org.runtime.housekeeping.enforce_retention) == (0, 0)  # type: ignore[union-attr]


def test_retention_zero_keeps_everything(tmp_path: Path) -> None:
    settings = fast_settings(
        database_url=migrated_sqlite(tmp_path / "keep.db"), audit_retention_days=0
    )
    with TestClient(create_app(settings)) as client:
        org = bootstrap(client)
        ancient = _old_event(org.id, 3650)

        async def seed() -> tuple[int, int]:
            async with org.runtime.store.begin() as tx:
                await tx.insert_audit(ancient)
            return await org.runtime.housekeeping.enforce_retention(force=True)

        assert client.portal.call(seed) == (0, 0)  # type: ignore[union-attr]
        assert (
            ancient.id
            in client.get(
                "/v1/audit-events", headers=org.headers(), params={"type": "key.created"}
            ).text
        )


def test_the_credential_filter_finds_what_a_key_did_and_what_was_done_to_it(org: Org) -> None:
    writer = org.create_key(["keys:write", "keys:read"])
    made = org.client.post(
        "/v1/keys", headers=org.headers(writer["key"]), json={"name": "x", "scopes": ["keys:read"]}
    ).json()
    org.client.post(f"/v1/keys/{writer['id']}/disable", headers=org.headers())
    found = events(org, credential_id=writer["id"])
    assert [(e["type"], e["target_id"]) for e in found] == [
        ("key.disabled", writer["id"]),
        ("key.created", made["id"]),
        ("key.created", writer["id"]),
    ]
