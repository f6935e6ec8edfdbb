"""Settings > OAuth clients > a client: its page (facts, traffic, audit trail, actions)
and its edit form (name and scopes, through the API's update and authority rule)."""

from __future__ import annotations

import re
from collections.abc import Callable

from tests.adapters.dashboard.conftest import Browser
from tests.adapters.dashboard.test_clients import create_client, token
from tests.conftest import Org


def flush(org: Org) -> None:
    org.client.portal.call(org.runtime.flush_usage)  # type: ignore[union-attr]
    org.client.portal.call(org.runtime.flush_analytics)  # type: ignore[union-attr]


def test_the_page_says_what_the_client_is_and_charts_its_grants(org: Org, owner: Browser) -> None:
    _, client_id, secret = create_client(owner)
    assert token(org, client_id, secret).status_code == 200
    assert token(org, client_id, "wrong" + secret[5:]).status_code == 401
    flush(org)
    r = owner.get(f"/dashboard/clients/{client_id}?env=live")
    assert r.status_code == 200
    page = r.text
    assert "<h1>Partner</h1>" in page
    assert f"…{secret[-4:]}" in page and secret not in page
    assert "<code>keys:read</code>" in page
    assert "owner@acme.test" in page
    assert '<strong class="stat" data-testid="total">' in page
    assert "Audit trail" in page and "client.created" in page
    assert f'href="/dashboard/clients/{client_id}?env=live"' in owner.get("/dashboard/clients").text


def test_editing_renames_and_narrows_the_client(org: Org, owner: Browser) -> None:
    _, client_id, secret = create_client(owner)
    form = owner.get(f"/dashboard/clients/{client_id}/edit?env=live").text
    assert re.search(r'value="keys:read" checked', form)
    r = owner.post(
        f"/dashboard/clients/{client_id}/edit",
        {"env": "live", "name": "Partner (EU)", "scope": [], "more_scopes": "invoices:read"},
    )
    assert r.status_code == 303
    assert "The OAuth client is changed." in owner.get(r.headers["location"]).text
    got = org.client.get(f"/v1/clients/{client_id}", headers=org.headers()).json()
    assert (got["name"], got["scopes"]) == ("Partner (EU)", ["invoices:read"])
    granted = token(org, client_id, secret).json()
    assert granted["scope"] == "invoices:read"


def test_errors_stay_next_to_their_fields(org: Org, owner: Browser) -> None:
    _, client_id, _ = create_client(owner)
    r = owner.post(f"/dashboard/clients/{client_id}/edit", {"env": "live", "name": "", "scope": []})
    assert r.status_code == 400
    assert 'id="name-error"' in r.text and 'id="scopes-error"' in r.text
    assert org.client.get(f"/v1/clients/{client_id}", headers=org.headers()).json()["name"] == (
        "Partner"
    )


def test_only_writers_of_this_organisation_may_edit(
    org: Org,
    other_org: Org,
    owner: Browser,
    browser: Callable[[], Browser],
    signed_in: Callable[..., Browser],
) -> None:
    _, client_id, _ = create_client(owner)
    viewer = signed_in("viewer")
    assert viewer.get(f"/dashboard/clients/{client_id}?env=live").status_code == 200
    assert "/edit" not in viewer.get(f"/dashboard/clients/{client_id}?env=live").text
    assert viewer.get(f"/dashboard/clients/{client_id}/edit?env=live").status_code == 403
    assert viewer.post(f"/dashboard/clients/{client_id}/edit", {"name": "x"}).status_code == 403
    intruder = browser()
    intruder.sign_in("owner@globex.test")
    assert intruder.get(f"/dashboard/clients/{client_id}?env=live").status_code == 404
    r = intruder.post(
        f"/dashboard/clients/{client_id}/edit", {"env": "live", "name": "Mine", "scope": []}
    )
    assert r.status_code == 404
    dev = signed_in("developer")
    r = dev.post(
        f"/dashboard/clients/{client_id}/edit",
        {"env": "live", "name": "Wider", "scope": ["keys:read", "users:manage"]},
    )
    assert r.status_code == 400 and "users:manage" in r.text
    got = org.client.get(f"/v1/clients/{client_id}", headers=org.headers()).json()
    assert (got["name"], got["scopes"]) == ("Partner", ["keys:read"])
