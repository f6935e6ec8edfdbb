"""What the operator set on a key (expiry, IP and space allow-lists) stays the operator's:
a tenant may tighten it, never clear or extend it; the operator may (docs/authority.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import Org

DAY = timedelta(days=1)


def when(days: float) -> str:
    return (datetime.now(UTC) + days * DAY).replace(microsecond=0).isoformat()


def refused_by_operator(r: Any, field: str) -> str:
    """A 403 naming the operator's field and the permission that may change it."""
    assert r.status_code == 403, r.text
    body: dict[str, Any] = r.json()
    assert body["reason"] == "OPERATOR_ONLY", body
    assert body["required_scope"] == "operator:limits"
    message: str = body["message"]
    assert field in message and "the operator set on this key" in message
    return message


def new_space(org: Org, name: str) -> str:
    r = org.client.post("/v1/spaces", headers=org.headers(), json={"name": name})
    assert r.status_code == 201, r.text
    space_id: str = r.json()["id"]
    return space_id


def bounded_key(org: Org, **fields: Any) -> dict[str, Any]:
    """A key the operator made through its credential, with ``fields`` set."""
    return org.create_key(["keys:read", "keys:write"], by=org.operator_key(), **fields)


def patch(org: Org, key: dict[str, Any], by: str | None = None, **body: Any) -> Any:
    return org.client.patch(f"/v1/keys/{key['id']}", headers=org.headers(by), json=body)


def stored(org: Org, key_id: str) -> dict[str, Any]:
    body: dict[str, Any] = org.client.get(f"/v1/keys/{key_id}", headers=org.headers()).json()
    return body


def test_an_operator_credential_records_what_it_sets_as_the_operators(org: Org) -> None:
    until = when(30)
    key = bounded_key(org, expires_at=until, ip_allow=["10.0.0.0/8"], space_allow=[org.space_id])
    bounds = key["operator_bounds"]
    assert datetime.fromisoformat(bounds["expires_at"]) == datetime.fromisoformat(until)
    assert bounds["ip_allow"] == ["10.0.0.0/8"] and bounds["space_allow"] == [org.space_id]
    mine = org.create_key(["keys:read"], expires_at=until, ip_allow=["10.0.0.0/8"])
    assert mine["operator_bounds"] == {"expires_at": None, "ip_allow": None, "space_allow": None}


def test_a_tenant_cannot_clear_or_extend_the_operators_expiry(org: Org) -> None:
    key = bounded_key(org, expires_at=when(30))
    before = stored(org, key["id"])
    for later in (None, when(31), when(3000)):
        refused_by_operator(patch(org, key, expires_at=later), "expires_at")
        # the key's own credential is refused too
        assert patch(org, key, key["key"], expires_at=later).status_code == 403
    assert stored(org, key["id"]) == before
    earlier = patch(org, key, expires_at=when(7))
    assert earlier.status_code == 200, earlier.text
    assert datetime.fromisoformat(earlier.json()["expires_at"]) < datetime.fromisoformat(
        before["expires_at"]
    )
    # back up to the operator's own date is still within it
    again = patch(org, key, expires_at=before["expires_at"])
    assert again.status_code == 200, again.text
    assert again.json()["operator_bounds"] == before["operator_bounds"]


@pytest.mark.parametrize(
    ("ip_allow", "allowed"),
    [
        ([], False),
        (["0.0.0.0/0"], False),
        (["10.0.0.0/8", "192.0.2.0/24"], False),
        (["2001:db8::/32"], False),
        (["9.255.255.255"], False),
        (["10.1.0.0/16", "10.2.3.4"], True),
        (["10.0.0.0/8"], True),
    ],
)
def test_a_tenant_may_only_narrow_the_operators_ip_allow_list(
    org: Org, ip_allow: list[str], allowed: bool
) -> None:
    key = bounded_key(org, ip_allow=["10.0.0.0/8"])
    r = patch(org, key, ip_allow=ip_allow)
    if allowed:
        assert r.status_code == 200, r.text
        assert r.json()["operator_bounds"]["ip_allow"] == ["10.0.0.0/8"]
    else:
        refused_by_operator(r, "ip_allow")
        assert stored(org, key["id"])["ip_allow"] == ["10.0.0.0/8"]


def test_a_tenant_may_only_narrow_the_operators_space_allow_list(org: Org) -> None:
    first, second, other = (new_space(org, n) for n in ("first", "second", "other"))
    key = bounded_key(org, space_allow=[first, second])
    for wider in ([], [other], [first, other]):
        refused_by_operator(patch(org, key, space_allow=wider), "space_allow")
    assert stored(org, key["id"])["space_allow"] == [first, second]
    r = patch(org, key, space_allow=[second])
    assert r.status_code == 200, r.text
    assert r.json()["operator_bounds"]["space_allow"] == [first, second]


def test_the_operator_may_loosen_and_its_change_becomes_the_bound(org: Org) -> None:
    operator = org.operator_key()
    key = bounded_key(org, expires_at=when(30), ip_allow=["10.0.0.0/8"])
    r = patch(org, key, operator, expires_at=None, ip_allow=["10.0.0.0/8", "192.0.2.0/24"])
    assert r.status_code == 200, r.text
    bounds = r.json()["operator_bounds"]
    assert bounds["expires_at"] is None and bounds["ip_allow"] == ["10.0.0.0/8", "192.0.2.0/24"]
    # the expiry is the tenant's again; the wider list is the new bound
    assert patch(org, key, expires_at=when(400)).status_code == 200
    assert patch(org, key, expires_at=None).status_code == 200
    assert patch(org, key, ip_allow=["192.0.2.0/25"]).status_code == 200
    refused_by_operator(patch(org, key, ip_allow=[]), "ip_allow")
    cleared = patch(org, key, operator, ip_allow=[])
    assert cleared.json()["operator_bounds"]["ip_allow"] is None
    assert patch(org, key, ip_allow=["203.0.113.0/24"]).status_code == 200


def test_a_tenants_other_changes_leave_the_operators_bounds(org: Org) -> None:
    key = bounded_key(org, expires_at=when(30), ip_allow=["10.0.0.0/8"])
    r = patch(org, key, name="renamed", scopes=["keys:read"])
    assert r.status_code == 200, r.text
    assert r.json()["operator_bounds"] == key["operator_bounds"]


def test_a_roll_carries_the_operators_bounds_to_the_new_key(org: Org) -> None:
    key = bounded_key(org, expires_at=when(30), ip_allow=["10.0.0.0/8"])
    r = org.client.post(f"/v1/keys/{key['id']}/roll", headers=org.headers(), json={})
    assert r.status_code == 201, r.text
    new = r.json()
    assert new["operator_bounds"] == key["operator_bounds"]
    refused_by_operator(patch(org, new, expires_at=None), "expires_at")
    refused_by_operator(patch(org, new, ip_allow=[]), "ip_allow")


def test_an_operator_made_clients_expiry_cannot_be_changed_by_anyone(org: Org) -> None:
    """A client's expiry is set when it is made and never changed after."""
    until = when(30)
    r = org.client.post(
        "/v1/clients",
        headers=org.headers(org.operator_key()),
        json={"name": "c", "scopes": ["keys:read"], "expires_at": until},
    )
    assert r.status_code == 201, r.text
    path = f"/v1/clients/{r.json()['client_id']}"
    for later in (None, when(300)):
        r = org.client.patch(path, headers=org.headers(), json={"expires_at": later})
        assert r.status_code == 400 and "expires_at" in r.text
    got = org.client.get(path, headers=org.headers()).json()
    assert datetime.fromisoformat(got["expires_at"]) == datetime.fromisoformat(until)
