"""Property-based checks: parsers never fail unexpectedly, and no credential ever
reaches data outside its organisation and environment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apiward.adapters.http.app import create_app
from apiward.core import tokens as jwt_tokens
from apiward.core.errors import MissingCredential
from apiward.services.auth import bearer_token
from tests.conftest import Org, bootstrap, examples, fast_settings

PRINTABLE = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=300)


@given(PRINTABLE)
def test_authorization_header_parsing_only_refuses_cleanly(header: str) -> None:
    try:
        token = bearer_token(header)
    except MissingCredential:
        return
    assert token and " " not in token


@given(
    st.one_of(
        PRINTABLE, st.builds(lambda a, b, c: f"eyJ{a}.{b}.{c}", PRINTABLE, PRINTABLE, PRINTABLE)
    )
)
def test_jwt_verification_only_refuses_cleanly(token: str) -> None:
    with pytest.raises((jwt_tokens.TokenInvalid, jwt_tokens.TokenExpired)):
        jwt_tokens.verify(token, {}, issuer="i", audience="a")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Org]]:
    db = tmp_path_factory.mktemp("props") / "p.db"
    settings_ = fast_settings(
        database_url=f"sqlite+aiosqlite:///{db}", auth_failure_limit="1000000/minute"
    )
    with TestClient(create_app(settings_), raise_server_exceptions=False) as client:
        orgs = [bootstrap(client, f"Org{i}", f"o{i}@org{i}.test", another=i > 0) for i in range(3)]
        yield orgs


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header=PRINTABLE)
def test_any_authorization_header_gets_a_4xx(world: list[Org], header: str) -> None:
    r = world[0].client.get("/v1/keys", headers={"Authorization": header})
    assert r.status_code in (401, 403, 429), (header, r.status_code)


KEY_SPECS = st.lists(
    st.tuples(
        st.integers(0, 2),
        st.sampled_from(["live", "test"]),
        st.lists(
            st.sampled_from(["keys:read", "keys:write", "users:read", "a:b"]),
            min_size=1,
            max_size=3,
        ),
    ),
    min_size=2,
    max_size=6,
)


@settings(
    max_examples=examples(15),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(specs=KEY_SPECS)
def test_no_credential_reaches_another_tenant_or_environment(
    world: list[Org], specs: list[tuple[int, str, list[str]]]
) -> None:
    made = [
        (o, env, scopes, world[o].create_key([*scopes, "keys:read"], env=env))
        for o, env, scopes in specs
    ]
    for org_index, env, _, key in made:
        org = world[org_index]
        headers = org.headers(key["key"])
        listed = org.client.get("/v1/keys?page_size=100", headers=headers)
        assert listed.status_code == 200
        for item in listed.json()["items"]:
            assert item["environment"] == env
        for other_index, other_env, _, other in made:
            r = org.client.get(f"/v1/keys/{other['id']}", headers=headers)
            same = other_index == org_index and other_env == env
            assert r.status_code == (200 if same else 404)
            if not same:
                assert other["id"] not in listed.text
        users = org.client.get("/v1/users", headers=headers)
        if users.status_code == 200:
            emails = {u["email"] for u in users.json()["items"]}
            assert emails == {f"o{org_index}@org{org_index}.test"}
