"""The protected API's scopes (``APIWARD_API_SCOPES``) in the dashboard's forms: offered
first, with their descriptions; apiward's own scopes folded below; a typed scope that
the API does not have refused next to the field, with the nearest one suggested."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apiward.adapters.settings import Settings
from apiward.core.errors import InvalidInput
from apiward.core.roles import MANAGEMENT_SCOPES
from apiward.core.scopes import check_known
from tests.adapters.dashboard.conftest import Browser
from tests.conftest import fast_settings

CATALOGUE = {
    "invoices:read": "Read invoices",
    "invoices:write": "Create and change invoices",
    "customers:read": "Read customers",
}


GROUPS = {"Billing": ["invoices:read", "invoices:write"]}


@pytest.fixture
def settings(migrated_sqlite_url: str) -> Settings:
    return fast_settings(
        database_url=migrated_sqlite_url, api_scopes=CATALOGUE, api_scope_groups=GROUPS
    )


def test_the_apis_scopes_come_first_and_apiwards_own_are_folded(owner: Browser) -> None:
    page = owner.get("/dashboard/keys/new").text
    api = page.index('value="invoices:read"')
    folded = page.index('<details class="own-scopes"')
    assert api < folded < page.index('value="keys:write"')
    assert "Create and change invoices" in page
    assert '<details class="own-scopes">' in page  # closed: nothing of apiward's ticked


def test_the_apis_scopes_are_shown_under_their_groups_in_order(owner: Browser) -> None:
    page = owner.get("/dashboard/keys/new").text
    billing = page.index('<p class="scope-group">Billing</p>')
    assert billing < page.index('value="invoices:read"') < page.index('value="invoices:write"')
    assert page.index('value="invoices:write"') < page.index('value="customers:read"')
    listed = owner.client.get("/openapi.json").json()["x-apiward-api-scopes"]
    assert {e["scope"]: e.get("group") for e in listed} == {
        "invoices:read": "Billing",
        "invoices:write": "Billing",
        "customers:read": None,
    }


def test_a_group_must_name_declared_scopes() -> None:
    with pytest.raises(ValueError, match="which api_scopes does not"):
        fast_settings(api_scopes=CATALOGUE, api_scope_groups={"Billing": ["invoice:read"]})


def test_a_typo_is_refused_next_to_the_scopes_with_the_nearest_scope(owner: Browser) -> None:
    r = owner.post("/dashboard/keys", {"name": "x", "env": "live", "more_scopes": "invoice:read"})
    assert r.status_code == 400
    error = re.search(r'id="scopes-error"[^>]*>([^<]*)<', r.text)
    assert error
    assert "Unknown scope &#39;invoice:read&#39;" in error.group(1)
    assert "Did you mean &#39;invoices:read&#39;?" in error.group(1)


def test_known_scopes_patterns_over_them_and_apiwards_own_are_accepted(owner: Browser) -> None:
    r = owner.post(
        "/dashboard/keys",
        {"name": "x", "env": "live", "more_scopes": "invoices:* customers:read keys:read"},
    )
    assert r.status_code == 201, r.text


def test_a_ticked_scope_the_form_offered_is_never_refused(owner: Browser) -> None:
    r = owner.post(
        "/dashboard/keys", {"name": "x", "env": "live", "scope": ["invoices:write", "*"]}
    )
    assert r.status_code == 201, r.text


def test_the_client_forms_check_too(owner: Browser) -> None:
    r = owner.post(
        "/dashboard/clients", {"name": "x", "env": "live", "more_scopes": "custmers:read"}
    )
    assert r.status_code == 400
    assert "Did you mean &#39;customers:read&#39;?" in r.text


def test_a_catalogue_of_patterns_or_bad_descriptions_fails_at_start() -> None:
    with pytest.raises(ValueError, match="not patterns"):
        fast_settings(api_scopes={"invoices:*": "All invoices"})
    with pytest.raises(ValueError, match="1 to 200"):
        fast_settings(api_scopes={"invoices:read": ""})
    with pytest.raises(ValueError, match="Invalid scope"):
        fast_settings(api_scopes={"invoices read": "x"})


known_scope = st.sampled_from([*CATALOGUE, *MANAGEMENT_SCOPES])


@given(scope=known_scope, wildcard=st.sampled_from(["resource", "action", "none"]))
def test_every_known_scope_and_every_pattern_over_one_passes(scope: str, wildcard: str) -> None:
    resource, action = scope.split(":")
    typed = {"resource": f"*:{action}", "action": f"{resource}:*", "none": scope}[wildcard]
    check_known([typed], [*CATALOGUE, *MANAGEMENT_SCOPES])


@given(resource=st.from_regex(r"[a-z]{1,12}", fullmatch=True))
def test_a_scope_of_a_resource_the_api_lacks_is_refused(resource: str) -> None:
    known = [*CATALOGUE, *MANAGEMENT_SCOPES]
    scope = f"{resource}:read"
    if any(k.split(":")[0] == resource for k in known):
        return
    with pytest.raises(InvalidInput, match="Unknown scope"):
        check_known([scope], known)
