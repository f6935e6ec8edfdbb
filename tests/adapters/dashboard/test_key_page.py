"""Settings > API keys > a key: its page (facts, limits, credits, traffic, audit trail),
its edit form (through the API's own update and authority rule, errors next to each
field), and the key list's search, state filter and paging."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tests.adapters.dashboard.conftest import Browser
from tests.adapters.dashboard.test_keys import api_key
from tests.conftest import Org, bootstrap


def page_of(owner: Browser, key: dict[str, Any], **query: str) -> str:
    env = query.pop("env", key["environment"])
    r = owner.get(f"/dashboard/keys/{key['id']}?env={env}")
    assert r.status_code == 200, r.text
    return r.text


def flush(org: Org) -> None:
    org.client.portal.call(org.runtime.flush_usage)  # type: ignore[union-attr]
    org.client.portal.call(org.runtime.flush_analytics)  # type: ignore[union-attr]


def test_the_page_says_what_the_key_is_and_never_its_secret(org: Org, owner: Browser) -> None:
    key = org.create_key(
        ["keys:read", "customers:read"],
        name="Backend <b>",
        ip_allow=["203.0.113.0/24"],
        external_id="cus_<1>",
        meta={"plan": "<pro>"},
        expires_at="2099-01-01T00:00:00Z",
    )
    assert org.client.get("/v1/keys", headers=org.headers(key["key"])).status_code == 403
    flush(org)
    page = page_of(owner, key)
    assert "<h1>Backend &lt;b&gt;</h1>" in page
    assert f"{key['prefix']}…{key['last4']}" in page
    assert key["id"] in page
    assert "<code>customers:read</code>" in page and "<code>keys:read</code>" in page
    assert "203.0.113.0/24" in page
    assert "cus_&lt;1&gt;" in page and "&lt;pro&gt;" in page
    assert "2099-01-01" in page
    assert page.count("owner@acme.test") >= 2  # acts as, created by
    assert "from testclient" in page  # last used, with its address
    assert key["key"] not in page
    assert re.search(r'<span class="badge badge-active">active</span>', page)


def test_the_page_shows_the_operators_limits_and_credits_read_only(
    org: Org, owner: Browser
) -> None:
    operator = org.operator_key()
    key = org.create_key(
        ["keys:read"],
        by=operator,
        credits={"remaining": 40},
        rate_limits=[{"name": "per-key", "rate": "5/minute", "key": "credential"}],
    )
    assert org.client.get("/v1/keys", headers=org.headers(key["key"])).status_code == 200
    page = page_of(owner, key)
    assert "per-key" in page and "5 per minute" in page
    assert "4 left now" in page  # one request spent one of five
    assert "<strong>39</strong> credits left" in page
    assert 'name="credits"' not in page and 'name="rate_limits"' not in page


def test_the_page_charts_this_keys_traffic_only(org: Org, owner: Browser) -> None:
    key = org.create_key(["keys:read"])
    other = org.create_key(["keys:read"])
    for _ in range(3):
        org.client.get("/v1/keys", headers=org.headers(key["key"]))
    org.client.get("/v1/users", headers=org.headers(key["key"]))  # 403: lacks users:read
    for _ in range(5):
        org.client.get("/v1/keys", headers=org.headers(other["key"]))
    quiet = org.create_key(["keys:read"])
    flush(org)
    page = page_of(owner, key)
    assert '<strong class="stat" data-testid="total">4</strong>' in page
    assert "75.0%" in page
    assert '<svg class="chart"' in page
    assert "INSUFFICIENT_PERMISSIONS" in page
    assert 'data-testid="no-traffic"' in page_of(owner, quiet)


def test_the_audit_trail_lists_this_keys_events(org: Org, owner: Browser) -> None:
    key = org.create_key(["keys:read"], name="Tracked")
    other = org.create_key(["keys:read"], name="Untracked")
    assert owner.post(f"/dashboard/keys/{key['id']}/disable", {"env": "live"}).status_code == 303
    assert owner.post(f"/dashboard/keys/{other['id']}/disable", {"env": "live"}).status_code == 303
    page = page_of(owner, key)
    trail = page[page.index("Audit trail") :]
    assert trail.count('<code class="event">') == 2
    assert "key.created" in trail and "key.disabled" in trail
    assert other["id"] not in trail
    assert f"target={key['id']}" in trail  # the link to the whole log, filtered


def test_a_key_of_another_organisation_is_not_found(org: Org, owner: Browser) -> None:
    theirs = bootstrap(org.client, "Globex", "owner@globex.test", another=True)
    foreign = theirs.create_key(["keys:read"])
    for path in (
        f"/dashboard/keys/{foreign['id']}?env=live",
        f"/dashboard/keys/{foreign['id']}/edit?env=live",
    ):
        r = owner.get(path)
        assert r.status_code == 404, path
        assert foreign["key"] not in r.text
    r = owner.post(f"/dashboard/keys/{foreign['id']}/edit", {"env": "live", "name": "mine now"})
    assert r.status_code == 404
    assert (
        theirs.client.get(f"/v1/keys/{foreign['id']}", headers=theirs.headers()).json()["name"]
        == "k"
    )


def test_editing_changes_the_key_through_the_api(org: Org, owner: Browser) -> None:
    key = org.create_key(["keys:read", "customers:read"], name="Before")
    form = owner.get(f"/dashboard/keys/{key['id']}/edit?env=live").text
    # The key's own scopes are ticked, those no checkbox offers included.
    assert re.search(r'value="customers:read" checked', form)
    assert re.search(r'value="keys:read" checked', form)
    r = owner.post(
        f"/dashboard/keys/{key['id']}/edit",
        {
            "env": "live",
            "name": "After",
            "scope": ["keys:read"],
            "more_scopes": "invoices:read",
            "ip_allow": "198.51.100.7\n2001:db8::/48",
            "expires": "30",
        },
    )
    assert r.status_code == 303
    assert r.headers["location"] == f"/dashboard/keys/{key['id']}?env=live&done=updated"
    assert "The API key is changed." in owner.get(r.headers["location"]).text
    now = api_key(org, key["id"])
    assert now["name"] == "After"
    assert sorted(now["scopes"]) == ["invoices:read", "keys:read"]
    assert now["ip_allow"] == ["198.51.100.7/32", "2001:db8::/48"]
    assert now["expires_at"] is not None
    # "Keep as it is" keeps the expiry; "Never" removes it.
    owner.post(
        f"/dashboard/keys/{key['id']}/edit",
        {"env": "live", "name": "After", "scope": ["keys:read"], "expires": "keep"},
    )
    assert api_key(org, key["id"])["expires_at"] == now["expires_at"]
    owner.post(
        f"/dashboard/keys/{key['id']}/edit",
        {"env": "live", "name": "After", "scope": ["keys:read"], "expires": ""},
    )
    assert api_key(org, key["id"])["expires_at"] is None
    trail = page_of(owner, key)
    assert trail.count("key.updated") == 3


def test_saving_the_form_unchanged_changes_nothing(org: Org, owner: Browser) -> None:
    key = org.create_key(
        ["keys:read", "customers:read"], ip_allow=["10.0.0.0/8"], expires_at="2099-01-01T00:00:00Z"
    )
    before = api_key(org, key["id"])
    form = owner.get(f"/dashboard/keys/{key['id']}/edit?env=live").text
    fields: dict[str, Any] = {
        "env": "live",
        "name": re.search(r'id="name" name="name"[^>]*value="([^"]*)"', form).group(1),  # type: ignore[union-attr]
        "scope": re.findall(r'name="scope" value="([^"]+)" checked', form),
        "more_scopes": re.search(r'id="more_scopes"[^>]*value="([^"]*)"', form).group(1),  # type: ignore[union-attr]
        "ip_allow": re.search(r'id="ip_allow"[^>]*>([^<]*)</textarea>', form).group(1),  # type: ignore[union-attr]
        "expires": "keep",
    }
    assert owner.post(f"/dashboard/keys/{key['id']}/edit", fields).status_code == 303
    after = api_key(org, key["id"])
    for field in ("name", "scopes", "ip_allow", "space_allow", "expires_at"):
        assert after[field] == before[field], field


def test_an_edit_keeps_allow_listed_spaces_the_form_does_not_offer(
    org: Org, owner: Browser
) -> None:
    """A key's space allow-list may name a space the organisation's list leaves out (an
    archived one): the form shows it, ticked, and saving keeps it, never widening the key
    to every space unasked."""
    space = org.client.post("/v1/spaces", headers=org.headers(), json={"name": "Old"}).json()
    key = org.create_key(["keys:read"], name="Narrow", space_allow=[space["id"]])
    archived = org.client.patch(
        f"/v1/spaces/{space['id']}", headers=org.headers(), json={"archived": True}
    )
    assert archived.status_code == 200, archived.text
    form = owner.get(f"/dashboard/keys/{key['id']}/edit?env=live").text
    assert f'name="space" value="{space["id"]}" checked> <span>(archived, or not listed)' in form
    r = owner.post(
        f"/dashboard/keys/{key['id']}/edit",
        {
            "env": "live",
            "name": "Renamed",
            "scope": ["keys:read"],
            "expires": "keep",
            "space": [space["id"]],
        },
    )
    assert r.status_code == 303, r.text
    after = api_key(org, key["id"])
    assert after["name"] == "Renamed"
    assert after["space_allow"] == [space["id"]]


def test_errors_are_shown_next_to_each_field_and_change_nothing(org: Org, owner: Browser) -> None:
    key = org.create_key(["keys:read"], name="Kept")
    r = owner.post(
        f"/dashboard/keys/{key['id']}/edit",
        {
            "env": "live",
            "name": "",
            "scope": ["keys:read"],
            "ip_allow": "not-an-address",
            "expires": "date",
            "expires_on": "2001-01-01",
        },
    )
    assert r.status_code == 400
    assert "Correct the 3 fields marked below." in r.text
    for field in ("name", "ip_allow", "expires"):
        assert f'id="{field}-error"' in r.text, field
        assert f'aria-describedby="{field}-error"' in r.text, field
    assert 'id="scopes-error"' not in r.text
    assert "not-an-address" in r.text  # what was typed is kept
    assert api_key(org, key["id"])["name"] == "Kept"


def test_the_create_form_shows_its_errors_next_to_the_fields(owner: Browser) -> None:
    r = owner.post(
        "/dashboard/keys", {"name": "x", "env": "live", "scope": [], "ip_allow": "999.1.1.1"}
    )
    assert r.status_code == 400
    assert 'id="scopes-error"' in r.text and 'id="ip_allow-error"' in r.text
    assert 'id="name-error"' not in r.text


def test_an_edit_beyond_the_editors_role_is_refused_whole(
    org: Org, signed_in: Callable[..., Browser]
) -> None:
    """Nothing of the change is made, and the refusal is shown next to the scopes."""
    dev = signed_in("developer")
    key = org.create_key(["keys:read"], name="Dev's")
    r = dev.post(
        f"/dashboard/keys/{key['id']}/edit",
        {"env": "live", "name": "Renamed", "scope": ["keys:read"], "more_scopes": "users:manage"},
    )
    assert r.status_code == 400
    error = re.search(r'id="scopes-error"[^>]*>([^<]*)<', r.text)
    assert error and "users:manage" in error.group(1)
    assert 'aria-describedby="scopes-error"' in r.text
    assert "users:manage" in r.text.split('id="more_scopes"')[1][:300]  # the typed value kept
    assert api_key(org, key["id"])["name"] == "Dev's"
    assert api_key(org, key["id"])["scopes"] == ["keys:read"]


def test_a_viewer_sees_the_page_without_actions_and_cannot_edit(
    org: Org, signed_in: Callable[..., Browser]
) -> None:
    viewer = signed_in("viewer")
    key = org.create_key(["keys:read"])
    page = viewer.get(f"/dashboard/keys/{key['id']}?env=live")
    assert page.status_code == 200
    assert "/edit" not in page.text and "/revoke" not in page.text
    assert viewer.get(f"/dashboard/keys/{key['id']}/edit?env=live").status_code == 403
    r = viewer.post(f"/dashboard/keys/{key['id']}/edit", {"env": "live", "name": "Mine"})
    assert r.status_code == 403
    assert api_key(org, key["id"])["name"] == "k"


def test_the_list_searches_filters_by_state_and_pages(org: Org, owner: Browser) -> None:
    billing = org.create_key(["keys:read"], name="Billing backend")
    mobile = org.create_key(["keys:read"], name="Mobile app")
    owner.post(f"/dashboard/keys/{mobile['id']}/disable", {"env": "live"})

    def listed(query: str) -> str:
        r = owner.get(f"/dashboard/keys?env=live&{query}")
        assert r.status_code == 200
        return r.text

    found = listed("q=billing")
    assert billing["id"] in found and mobile["id"] not in found
    assert mobile["id"] in listed(f"q={mobile['last4']}")
    assert billing["id"] in listed(f"q={billing['id']}")
    disabled = listed("state=disabled")
    assert mobile["id"] in disabled and billing["id"] not in disabled
    assert '<option value="disabled" selected>' in disabled
    assert 'data-testid="no-match"' in listed("q=nothing+like+it")
    assert billing["id"] in listed("state=nonsense")  # an unknown state filters nothing
    for i in range(26):
        org.create_key(["keys:read"], name=f"Batch {i}")
    first = listed("q=batch")
    assert "26 keys found" in first
    assert "Page 1 of 2" in first
    assert "q=batch" in first[first.index('rel="next"') - 200 :]
    assert "Page 2 of 2" in listed("q=batch&page=2")


def test_the_page_shows_the_scopes_used_and_narrows_to_them(
    org: Org, owner: Browser, signed_in: Callable[..., Browser]
) -> None:
    key = org.create_key(["keys:read", "clients:read", "users:read"])
    for _ in range(2):
        assert org.client.get("/v1/keys", headers=org.headers(key["key"])).status_code == 200
    org.client.portal.call(org.runtime.flush_scope_usage)  # type: ignore[union-attr]
    page = page_of(owner, key)
    assert re.search(r"<code>keys:read</code></td><td data-label=\"Requests\">2</td>", page)
    unused = page.split('data-testid="scopes-unused"')[1].split("</p>")[0]
    assert "<code>clients:read</code>" in unused and "<code>users:read</code>" in unused
    assert "Narrow to what was used" in page
    # A viewer sees the same, without the action, and cannot narrow the key.
    viewer = signed_in("viewer")
    seen = viewer.get(f"/dashboard/keys/{key['id']}?env=live").text
    assert "<code>keys:read</code>" in seen and "Narrow to what was used" not in seen
    assert viewer.post(f"/dashboard/keys/{key['id']}/narrow", {"env": "live"}).status_code == 403
    assert sorted(api_key(org, key["id"])["scopes"]) == ["clients:read", "keys:read", "users:read"]
    r = owner.post(f"/dashboard/keys/{key['id']}/narrow", {"env": "live"})
    assert r.status_code == 303
    assert r.headers["location"] == f"/dashboard/keys/{key['id']}?env=live&done=narrowed"
    assert "narrowed to the scopes its requests used" in owner.get(r.headers["location"]).text
    assert api_key(org, key["id"])["scopes"] == ["keys:read"]
    assert "Narrow to what was used" not in page_of(owner, key)  # nothing left unused
    idle = org.create_key(["keys:read"])
    assert 'data-testid="no-scopes-used"' in page_of(owner, idle)
    refused = owner.post(f"/dashboard/keys/{idle['id']}/narrow", {"env": "live"})
    assert refused.status_code == 400 and "nothing to narrow it to" in refused.text


def test_the_page_says_where_the_key_was_seen_and_what_stopping_it_would_refuse(
    org: Org, owner: Browser
) -> None:
    key = org.create_key(["keys:read", "clients:read"])
    verifier = org.create_key(["keys:verify"])["key"]
    for ip, scope in (
        ("10.0.0.1", "keys:read"),
        ("10.0.0.2", "keys:read"),
        ("::1", "clients:read"),
    ):
        r = org.client.post(
            "/v1/keys/verify",
            headers=org.headers(verifier),
            json={"key": key["key"], "ip": ip, "scopes": [scope]},
        )
        assert r.json()["valid"] is True
    for flushing in ("flush_analytics", "flush_scope_usage", "flush_addresses"):
        org.client.portal.call(getattr(org.runtime, flushing))  # type: ignore[union-attr]
    page = page_of(owner, key)
    assert "Seen from 2 networks today." in page
    assert "10.0.0.0/24" not in page  # the page gives the count, not the networks
    assert (
        "In the last 7 days this key made 3 requests; disabling or revoking it would have "
        "refused all of them." in page
    )
    revoke = owner.get(f"/dashboard/keys/{key['id']}/revoke?env=live").text
    assert "made 3 requests; revoking it would have refused all of them." in revoke
    form = {"env": "live", "name": "k", "scope": ["keys:read"], "expires": "keep"}
    asked = owner.post(f"/dashboard/keys/{key['id']}/edit", form)
    assert asked.status_code == 200
    assert "In the last 7 days this key made 3 requests; 1 would have been refused." in asked.text
    assert sorted(api_key(org, key["id"])["scopes"]) == ["clients:read", "keys:read"]
    saved = owner.post(f"/dashboard/keys/{key['id']}/edit", {**form, "confirmed": "1"})
    assert saved.status_code == 303
    assert api_key(org, key["id"])["scopes"] == ["keys:read"]
    idle = org.create_key(["keys:read"])
    assert "No requests counted today." in page_of(owner, idle)
