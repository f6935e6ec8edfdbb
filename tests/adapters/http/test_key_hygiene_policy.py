"""An organisation's own key hygiene policy, through ``PATCH /v1/org``: it only tightens
the operator's, and the hygiene run applies it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from apiward.adapters.settings import Settings
from apiward.core.models import AuditFilter, PageRequest
from tests.conftest import FakeClock, Org, fast_settings


@pytest.fixture
def settings(sqlite_url: str) -> Settings:
    return fast_settings(database_url=sqlite_url, key_unused_disable_days=90)


def test_a_tenant_tightens_the_operators_policy_and_sees_what_is_in_force(org: Org) -> None:
    before = org.client.get("/v1/org", headers=org.headers()).json()
    assert before["key_hygiene"] is None
    assert before["key_hygiene_in_force"] == {
        "unused_days": 90,
        "expiry_reminder_days": [30, 7, 1],
        "credit_thresholds": [50, 80, 100],
        "shared_networks": None,
        "shared_countries": None,
        "shared_disable": False,
    }
    own = {"unused_days": 30, "expiry_reminder_days": [14, 7], "credit_thresholds": [95]}
    r = org.client.patch("/v1/org", headers=org.headers(), json={"key_hygiene": own})
    assert r.status_code == 200, r.text
    assert r.json()["key_hygiene"] == {
        "unused_days": 30,
        "expiry_reminder_days": [14, 7],
        "credit_thresholds": [95],
        "shared_networks": None,
        "shared_countries": None,
        "shared_disable": False,
    }
    after = org.client.get("/v1/org", headers=org.headers()).json()
    assert after["key_hygiene_in_force"] == {
        "unused_days": 30,
        "expiry_reminder_days": [30, 14, 7, 1],  # the operator's days stay
        "credit_thresholds": [50, 80, 95, 100],
        "shared_networks": None,
        "shared_countries": None,
        "shared_disable": False,
    }
    audited = org.client.get(
        "/v1/audit-events", headers=org.headers(), params={"type": "org.updated"}
    ).json()["items"]
    assert audited[0]["data"]["key_hygiene"]["unused_days"] == 30
    # null: the operator's alone again.
    cleared = org.client.patch("/v1/org", headers=org.headers(), json={"key_hygiene": None})
    assert cleared.json()["key_hygiene"] is None
    assert cleared.json()["key_hygiene_in_force"]["unused_days"] == 90


@pytest.mark.parametrize(
    ("own", "says"),
    [
        ({"unused_days": 120}, "longer than the operator's 90"),
        ({"unused_days": 0}, "unused_days"),
        ({"expiry_reminder_days": [0]}, "expiry_reminder_days"),
        ({"credit_thresholds": [101]}, "credit_thresholds"),
        ({"credit_thresholds": list(range(1, 12))}, "credit_thresholds"),
        ({"unused_for": 3}, "unused_for"),
        ({"shared_networks": 1}, "shared_networks"),
        ({"shared_countries": 301}, "shared_countries"),
    ],
)
def test_a_tenant_cannot_loosen_or_send_nonsense(
    org: Org, own: dict[str, object], says: str
) -> None:
    r = org.client.patch("/v1/org", headers=org.headers(), json={"key_hygiene": own})
    assert 400 <= r.status_code < 500, r.text
    assert says in r.text
    assert org.client.get("/v1/org", headers=org.headers()).json()["key_hygiene"] is None


def test_setting_the_policy_needs_org_manage(org: Org) -> None:
    reader = org.create_key(["org:read"])["key"]
    r = org.client.patch(
        "/v1/org", headers=org.headers(reader), json={"key_hygiene": {"unused_days": 1}}
    )
    assert r.status_code == 403
    assert "org:manage" in r.text


def test_the_run_applies_each_organisations_own_policy(timed_org: Org, clock: FakeClock) -> None:
    """Two orgs under the operator's 90 days: the one that chose 30 days and a 14-day
    reminder has its idle keys disabled at day 46 and its key reminded at 14 days; the
    other keeps its keys and hears the operator's 30-day reminder."""
    org = timed_org
    runtime = org.runtime
    strict = {"unused_days": 30, "expiry_reminder_days": [14]}
    r = org.client.patch("/v1/org", headers=org.headers(), json={"key_hygiene": strict})
    assert r.status_code == 200, r.text

    async def scenario() -> dict[str, dict[str, list[object]]]:
        boot = await runtime.tenancy.bootstrap(
            "Globex", "owner@globex.test", "correct horse battery", allow_another=True
        )
        soon = clock.now() + timedelta(days=60)
        for org_id in (org.id, boot.org.id):
            principal = await runtime.operators.principal(org_id)
            await runtime.keys.create(principal, name="idle", scopes=["keys:read"])
            await runtime.keys.create(principal, name="soon", scopes=["keys:read"], expires_at=soon)
        clock.advance(46 * 86_400)  # 14 days before the expiry
        await runtime.hygiene.run()
        found: dict[str, dict[str, list[object]]] = {}
        async with runtime.store.begin() as tx:
            for name, org_id in (("acme", org.id), ("globex", boot.org.id)):
                events = await tx.list_audit(org_id, AuditFilter(), PageRequest(1, 100))
                found[name] = {
                    "disabled": [
                        *sorted(
                            str(e.data["name"])
                            for e in events.items
                            if e.type == "key.disabled_unused"
                        )
                    ],
                    "reminded": [e.data["days"] for e in events.items if e.type == "key.expiring"],
                }
        return found

    found = org.client.portal.call(scenario)  # type: ignore[union-attr]
    # Acme's keys were all made 46 days ago and never used: its two owner keys too.
    assert found["acme"] == {"disabled": ["idle", "owner", "owner", "soon"], "reminded": [14]}
    assert found["globex"] == {"disabled": [], "reminded": [30]}


def test_a_policy_in_force_longer_than_a_tenant_may_send_is_shown(org: Org) -> None:
    """Ten reminder days and ten thresholds of the organisation's own, added to the
    operator's three each: the policy in force holds thirteen, more than a request may
    carry, and is shown (it was a 500)."""
    own = {
        "expiry_reminder_days": [2, 3, 4, 5, 6, 8, 9, 10, 11, 12],
        "credit_thresholds": [10, 20, 30, 40, 60, 70, 75, 85, 90, 95],
    }
    r = org.client.patch("/v1/org", headers=org.headers(), json={"key_hygiene": own})
    assert r.status_code == 200, r.text
    in_force = r.json()["key_hygiene_in_force"]
    assert in_force["expiry_reminder_days"] == [30, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1]
    assert len(in_force["credit_thresholds"]) == 13
    shown = org.client.get("/v1/org", headers=org.headers())
    assert shown.status_code == 200 and shown.json()["key_hygiene_in_force"] == in_force
