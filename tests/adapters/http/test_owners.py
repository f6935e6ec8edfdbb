"""Who a key or client belongs to (``external_id``, ``meta``): set and changed through
the API within the authority rule, searched within one organisation and environment,
bounded, and given back by the verify API, on the principal and by forward auth."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from apiward.adapters.http.app import create_app
from apiward.adapters.settings import Settings
from apiward.server import Apiward, require
from tests.conftest import Org, bootstrap, examples, fast_settings

META = {"plan": "pro", "seats": 12, "trial": False, "region": "eu west"}


@pytest.fixture
def settings(sqlite_url: str) -> Settings:
    """Forward auth sends the ``plan`` and ``billing_tier`` meta fields."""
    return fast_settings(database_url=sqlite_url, forward_meta=["plan", "billing_tier"])


def _client(org: Org, key: str | None = None, **fields: Any) -> dict[str, Any]:
    body = {"name": "svc", "scopes": ["keys:read"], **fields}
    r = org.client.post("/v1/clients", headers=org.headers(key), json=body)
    assert r.status_code == 201, r.text
    made: dict[str, Any] = r.json()
    return made


def _ids(r: Any) -> list[str]:
    assert r.status_code == 200, r.text
    return [item.get("id") or item["client_id"] for item in r.json()["items"]]


def _events(org: Org, target: str) -> list[dict[str, Any]]:
    r = org.client.get("/v1/audit-events", headers=org.headers(), params={"target_id": target})
    items: list[dict[str, Any]] = r.json()["items"]
    return items


# 1. Set, changed, shown --------------------------------------------------------------------


def test_a_key_carries_its_external_id_and_meta_from_creation_to_every_answer(org: Org) -> None:
    key = org.create_key(["keys:read"], external_id="cus_4QFJ", meta=META)
    assert (key["external_id"], key["meta"]) == ("cus_4QFJ", META)
    shown = org.client.get(f"/v1/keys/{key['id']}", headers=org.headers()).json()
    assert (shown["external_id"], shown["meta"]) == ("cus_4QFJ", META)
    assert list(shown["meta"]) == list(META)  # in the order given
    bare = org.create_key(["keys:read"])
    assert (bare["external_id"], bare["meta"]) == (None, {})


def test_an_update_sets_replaces_and_clears_them(org: Org) -> None:
    key = org.create_key(["keys:read"], external_id="cus_1", meta=META)
    path, h = f"/v1/keys/{key['id']}", org.headers()
    r = org.client.patch(path, headers=h, json={"name": "renamed"})
    assert (r.json()["external_id"], r.json()["meta"]) == ("cus_1", META)  # untouched
    r = org.client.patch(path, headers=h, json={"external_id": "cus_2", "meta": {"plan": "free"}})
    assert (r.json()["external_id"], r.json()["meta"]) == ("cus_2", {"plan": "free"})
    r = org.client.patch(path, headers=h, json={"external_id": None, "meta": None})
    assert (r.json()["external_id"], r.json()["meta"]) == (None, {})
    r = org.client.patch(path, headers=h, json={"meta": {"a": 1}})
    r = org.client.patch(path, headers=h, json={"meta": {}})
    assert r.json()["meta"] == {}


def test_key_events_and_so_webhooks_say_whom_the_key_belongs_to(org: Org) -> None:
    """Each key event's document (the audit event a webhook delivers) carries the key's
    external_id; creation and updates carry the meta set."""
    key = org.create_key(["keys:read"], external_id="cus_1", meta={"plan": "pro"})
    h = org.headers()
    org.client.patch(f"/v1/keys/{key['id']}", headers=h, json={"meta": {"plan": "team"}})
    org.client.post(f"/v1/keys/{key['id']}/disable", headers=h)
    org.client.post(f"/v1/keys/{key['id']}/revoke", headers=h)
    data = {e["type"]: e["data"] for e in _events(org, key["id"])}
    assert data["key.created"]["external_id"] == "cus_1"
    assert data["key.created"]["meta"] == {"plan": "pro"}
    assert data["key.updated"] == {"meta": {"plan": "team"}, "external_id": "cus_1"}
    assert data["key.disabled"] == {"external_id": "cus_1"}
    assert data["key.revoked"] == {"external_id": "cus_1"}
    rolled = org.create_key(["keys:read"], external_id="cus_9", meta={"plan": "pro"})
    new = org.client.post(f"/v1/keys/{rolled['id']}/roll", headers=h, json={"grace_seconds": 0})
    assert (new.json()["external_id"], new.json()["meta"]) == ("cus_9", {"plan": "pro"})
    (roll,) = [e for e in _events(org, rolled["id"]) if e["type"] == "key.rolled"]
    assert roll["data"]["external_id"] == "cus_9"
    plain = org.create_key(["keys:read"])
    org.client.post(f"/v1/keys/{plain['id']}/disable", headers=h)
    assert {e["type"]: e["data"] for e in _events(org, plain["id"])}["key.disabled"] == {}


def test_a_client_carries_them_too(org: Org) -> None:
    client = _client(org, external_id="acct_7", meta={"plan": "pro"})
    assert (client["external_id"], client["meta"]) == ("acct_7", {"plan": "pro"})
    path, h = f"/v1/clients/{client['client_id']}", org.headers()
    r = org.client.patch(path, headers=h, json={"external_id": "acct_8", "meta": {"x": 1}})
    assert (r.json()["external_id"], r.json()["meta"]) == ("acct_8", {"x": 1})
    r = org.client.patch(path, headers=h, json={"external_id": None})
    assert (r.json()["external_id"], r.json()["meta"]) == (None, {"x": 1})
    created = _events(org, client["client_id"])
    assert {e["type"] for e in created} == {"client.created", "client.updated"}


# 2. Searched within one organisation and one environment -----------------------------------


def test_list_by_external_id_finds_this_orgs_keys_of_that_id_only(org: Org, other_org: Org) -> None:
    mine = [org.create_key(["keys:read"], external_id="cus_shared")["id"] for _ in range(2)]
    org.create_key(["keys:read"], external_id="cus_other")
    org.create_key(["keys:read"])
    theirs = other_org.create_key(["keys:read"], external_id="cus_shared")["id"]
    found = org.client.get("/v1/keys", headers=org.headers(), params={"external_id": "cus_shared"})
    assert sorted(_ids(found)) == sorted(mine) and found.json()["total"] == 2
    across = other_org.client.get(
        "/v1/keys", headers=other_org.headers(), params={"external_id": "cus_shared"}
    )
    assert _ids(across) == [theirs]
    none = org.client.get("/v1/keys", headers=org.headers(), params={"external_id": "CUS_SHARED"})
    assert _ids(none) == []


def test_list_by_external_id_stays_in_the_callers_environment(org: Org) -> None:
    live = org.create_key(["keys:read"], external_id="cus_1")["id"]
    test = org.create_key(["keys:read"], env="test", external_id="cus_1")["id"]
    q = {"external_id": "cus_1"}
    assert _ids(org.client.get("/v1/keys", headers=org.headers(), params=q)) == [live]
    as_test = org.headers(org.owner_test_key)
    assert _ids(org.client.get("/v1/keys", headers=as_test, params=q)) == [test]
    crossing = org.client.get("/v1/keys", headers=as_test, params={**q, "environment": "live"})
    assert crossing.status_code == 403


def test_list_clients_by_external_id(org: Org, other_org: Org) -> None:
    mine = _client(org, external_id="acct_1")["client_id"]
    _client(org)
    _client(other_org, external_id="acct_1")
    test = _client(org, org.owner_test_key, external_id="acct_1")["client_id"]
    q = {"external_id": "acct_1"}
    assert _ids(org.client.get("/v1/clients", headers=org.headers(), params=q)) == [mine]
    as_test = org.headers(org.owner_test_key)
    assert _ids(org.client.get("/v1/clients", headers=as_test, params=q)) == [test]


@pytest.mark.parametrize("path", ["/v1/keys", "/v1/clients"])
@pytest.mark.parametrize("bad", ["a b", "x" * 256, "cüs", ""])
def test_searching_for_an_id_no_credential_can_have_is_a_400(org: Org, path: str, bad: str) -> None:
    r = org.client.get(path, headers=org.headers(), params={"external_id": bad})
    assert r.status_code == 400, r.text
    assert "external_id" in r.json()["message"]


# 3. Bounded ------------------------------------------------------------------------------


LIMITS = [
    ({"external_id": "cus 1"}, "external_id must be 1 to 255 visible ASCII"),
    ({"external_id": "x" * 256}, "external_id"),
    ({"external_id": ""}, "external_id"),
    ({"meta": {f"k{i}": i for i in range(65)}}, "meta holds at most 64 properties"),
    ({"meta": {"a": "x" * 4100}}, "meta is at most 4096 bytes"),
    ({"meta": {"deep": {"a": 1}}}, "meta.deep: values are strings, numbers, booleans or null"),
    ({"meta": {"list": ["a"]}}, "meta.list: values are strings"),
    ({"meta": {"n": 2**53}}, "meta.n: integers are kept within"),
    ({"meta": {"k" * 65: 1}}, "meta: property names are 1 to 64 characters"),
    ({"meta": ["plan"]}, "meta"),
]


@pytest.mark.parametrize(("fields", "says"), LIMITS)
def test_out_of_bounds_is_a_400_naming_the_field_on_create_and_update(
    org: Org, fields: dict[str, Any], says: str
) -> None:
    h = org.headers()
    key = org.create_key(["keys:read"], external_id="cus_1", meta={"plan": "pro"})
    client = _client(org, external_id="cus_1", meta={"plan": "pro"})
    answers = [
        org.client.post("/v1/keys", headers=h, json={"name": "k", "scopes": ["a:b"], **fields}),
        org.client.patch(f"/v1/keys/{key['id']}", headers=h, json=fields),
        org.client.post("/v1/clients", headers=h, json={"name": "c", "scopes": ["a:b"], **fields}),
        org.client.patch(f"/v1/clients/{client['client_id']}", headers=h, json=fields),
    ]
    for r in answers:
        assert r.status_code == 400, r.text
        assert says in r.json()["message"], r.json()
    unchanged = org.client.get(f"/v1/keys/{key['id']}", headers=h).json()
    assert (unchanged["external_id"], unchanged["meta"]) == ("cus_1", {"plan": "pro"})
    keys = org.client.get("/v1/keys", headers=h, params={"page_size": 100}).json()
    assert keys["total"] == 2  # the owner's key and the one above: nothing more made


# 4. Setting them follows the authority rule ------------------------------------------------


def test_a_credential_without_keys_write_sets_neither(org: Org) -> None:
    key = org.create_key(["keys:read"], external_id="cus_1")
    reader = org.create_key(["keys:read"])["key"]
    for body in ({"external_id": "cus_2"}, {"meta": {"plan": "free"}}):
        r = org.client.patch(f"/v1/keys/{key['id']}", headers=org.headers(reader), json=body)
        assert r.status_code == 403 and r.json()["message"].endswith("keys:write"), r.text
    r = org.client.post(
        "/v1/keys",
        headers=org.headers(reader),
        json={"name": "x", "scopes": ["keys:read"], "external_id": "cus_2"},
    )
    assert r.status_code == 403
    shown = org.client.get(f"/v1/keys/{key['id']}", headers=org.headers()).json()
    assert (shown["external_id"], shown["meta"]) == ("cus_1", {})


def test_a_delegated_key_sets_them_only_on_keys_it_may_manage(org: Org) -> None:
    """A key kept to one space manages the keys kept to that space, and no other: it may
    not label an org-wide key or client, as it may not rename one."""
    space = org.client.post("/v1/spaces", headers=org.headers(), json={"name": "A"}).json()["id"]
    delegate = org.create_key(["keys:read", "keys:write", "clients:write"], space_allow=[space])
    h = org.headers(delegate["key"], **{"Apiward-Space-Id": space})
    wide = org.create_key(["keys:read"], external_id="cus_1")
    inside = org.create_key(["keys:read"], space_allow=[space])
    client = _client(org, external_id="cus_1")
    for path in (f"/v1/keys/{wide['id']}", f"/v1/clients/{client['client_id']}"):
        r = org.client.patch(path, headers=h, json={"external_id": "cus_evil", "meta": {"a": 1}})
        assert (r.status_code, r.json()["reason"]) == (403, "EXCEEDS_AUTHORITY"), r.text
    assert org.client.get(f"/v1/keys/{wide['id']}", headers=org.headers()).json()["meta"] == {}
    r = org.client.patch(f"/v1/keys/{inside['id']}", headers=h, json={"external_id": "cus_2"})
    assert (r.status_code, r.json()["external_id"]) == (200, "cus_2")
    test_key = org.headers(org.owner_test_key)
    r = org.client.patch(f"/v1/keys/{wide['id']}", headers=test_key, json={"external_id": "x"})
    assert r.status_code == 404  # a test credential never reaches a live key


def test_another_orgs_key_is_not_found_whatever_it_sets(org: Org, other_org: Org) -> None:
    key = org.create_key(["keys:read"], external_id="cus_1")
    r = other_org.client.patch(
        f"/v1/keys/{key['id']}", headers=other_org.headers(), json={"external_id": "cus_x"}
    )
    assert r.status_code == 404


# 5. The verify API's answer ---------------------------------------------------------------


def test_the_verify_api_answers_them_for_keys_of_the_callers_org_only(
    org: Org, other_org: Org
) -> None:
    verifier = org.headers(org.create_key(["keys:verify"])["key"])
    key = org.create_key(["customers:read"], external_id="cus_1", meta=META)
    ok = org.client.post("/v1/keys/verify", headers=verifier, json={"key": key["key"]}).json()
    assert (ok["valid"], ok["external_id"], ok["meta"]) == (True, "cus_1", META)
    org.client.post(f"/v1/keys/{key['id']}/disable", headers=org.headers())
    off = org.client.post("/v1/keys/verify", headers=verifier, json={"key": key["key"]}).json()
    assert (off["code"], off["external_id"], off["meta"]) == ("DISABLED", "cus_1", META)
    foreign = other_org.create_key(["customers:read"], external_id="cus_theirs", meta=META)
    other = org.client.post("/v1/keys/verify", headers=verifier, json={"key": foreign["key"]})
    assert other.json()["code"] == "NOT_FOUND"
    assert (other.json()["external_id"], other.json()["meta"]) == (None, None)
    assert "cus_theirs" not in other.text


# 6. Forward auth -------------------------------------------------------------------------


def _check(org: Org, credential: str, query: str = "") -> Any:
    r = org.client.get(f"/v1/auth/check{query}", headers=org.headers(credential))
    assert r.status_code == 200, r.text
    return r.headers


@pytest.mark.parametrize("query", ["", "?scope=customers:read"])  # fast path, and the route's
def test_forward_auth_sends_the_external_id_and_the_named_meta_fields(org: Org, query: str) -> None:
    meta = {"plan": "pro plus", "billing_tier": "gold", "secret_note": "internal"}
    key = org.create_key(["customers:read"], external_id="cus_1", meta=meta)["key"]
    headers = _check(org, key, query)
    assert headers["x-apiward-external-id"] == "cus_1"
    assert headers["x-apiward-meta-plan"] == "pro%20plus"
    assert headers["x-apiward-meta-billing-tier"] == "gold"
    assert "internal" not in str(headers)  # a field the setting does not name stays home
    bare = _check(org, org.create_key(["customers:read"])["key"], query)
    # Every header is sent, empty without a value, so a client's own never passes.
    assert bare["x-apiward-external-id"] == ""
    assert bare["x-apiward-meta-plan"] == "" and bare["x-apiward-meta-billing-tier"] == ""


def test_without_forwarded_fields_no_meta_header_is_sent(tmp_path: Path) -> None:
    settings = fast_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'plain.db'}")
    with TestClient(create_app(settings)) as c:
        org = bootstrap(c)
        key = org.create_key(["customers:read"], external_id="cus_1", meta=META)["key"]
        headers = _check(org, key)
        assert headers["x-apiward-external-id"] == "cus_1"
        assert not [name for name in headers if name.startswith("x-apiward-meta-")]


@hypothesis_settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(value=st.one_of(st.text(max_size=60), st.integers(-(2**53) + 1, 2**53 - 1), st.booleans()))
def test_no_meta_value_breaks_a_forwarded_header(org: Org, value: str | int | bool) -> None:
    """Whatever a tenant puts in a forwarded field (CR, LF, NUL, non-ASCII, a forged
    header line), the check answers 200 and the header decodes back to the value."""
    key = org.create_key(["customers:read"], meta={"plan": value}, external_id="cus_1")
    headers = _check(org, key["key"])
    sent = headers["x-apiward-meta-plan"]
    assert sent.isascii() and "\r" not in sent and "\n" not in sent
    text = value if isinstance(value, str) else str(value).lower()
    assert unquote(sent) == text
    assert headers["x-apiward-org"] == org.id  # no line of the value became a header


def test_a_clients_tokens_carry_the_clients_external_id_and_follow_its_changes(org: Org) -> None:
    client = _client(org, external_id="acct_1", meta={"plan": "team"})
    token = org.client.post(
        "/v1/auth/token",
        json={
            "grant_type": "client_credentials",
            "client_id": client["client_id"],
            "client_secret": client["client_secret"],
        },
    ).json()["access_token"]
    headers = _check(org, token)
    assert headers["x-apiward-credential-kind"] == "access_token"
    assert (headers["x-apiward-external-id"], headers["x-apiward-meta-plan"]) == ("acct_1", "team")
    r = org.client.patch(
        f"/v1/clients/{client['client_id']}",
        headers=org.headers(),
        json={"external_id": "acct_2", "meta": {"plan": "pro"}},
    )
    assert r.status_code == 200
    headers = _check(org, token)
    assert (headers["x-apiward-external-id"], headers["x-apiward-meta-plan"]) == ("acct_2", "pro")


# 7. The principal of a protected route ----------------------------------------------------


def test_a_route_behind_require_reads_them_on_the_principal(tmp_path: Path) -> None:
    aw = Apiward(fast_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'e.db'}"))
    app = FastAPI()
    aw.init_app(app)

    @app.get("/whoami")
    async def whoami(request: Request, principal: Any = require("customers:read")) -> Any:
        frozen = False
        try:
            principal.meta["plan"] = "free"
        except TypeError:
            frozen = True
        return {"external_id": principal.external_id, "meta": dict(principal.meta), "ro": frozen}

    with TestClient(app) as c:
        runtime = aw.runtime

        async def made() -> tuple[str, str]:
            boot = await runtime.tenancy.bootstrap("Acme", "o@acme.test", "correct horse battery")
            owner = await runtime.operators.principal(boot.org.id)
            owned = await runtime.keys.create(
                owner, name="a", scopes=["customers:read"], external_id="cus_1", meta=META
            )
            bare = await runtime.keys.create(owner, name="b", scopes=["customers:read"])
            return owned.plaintext, bare.plaintext

        owned, bare = c.portal.call(made)  # type: ignore[union-attr]
        r = c.get("/whoami", headers={"Authorization": f"Bearer {owned}"})
        assert r.json() == {"external_id": "cus_1", "meta": META, "ro": True}
        again = c.get("/whoami", headers={"Authorization": f"Bearer {owned}"})
        assert again.json()["meta"] == META  # the cached principal was not changed
        r = c.get("/whoami", headers={"Authorization": f"Bearer {bare}"})
        assert r.json() == {"external_id": None, "meta": {}, "ro": True}


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        (["plan", "Plan"], "would both be sent in X-Apiward-Meta-Plan"),
        (["billing_tier", "billing-tier"], "would both be sent"),
        (["a b"], "it names a header"),
        ([f"f{i}" for i in range(65)], "at most 64 meta fields"),
    ],
)
def test_a_forwarded_field_list_that_cannot_be_sent_stops_the_start(
    fields: list[str], says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        Settings(forward_meta=fields)
