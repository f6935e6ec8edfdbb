"""No form input gives a 500: every dashboard form, and the token endpoints' form bodies,
fuzzed with the fields they read and hostile values (digits of other scripts, huge
numbers, control characters, deep JSON)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.adapters.dashboard.conftest import Browser
from tests.conftest import Org, examples

# Each dashboard form and the fields it reads ({id} parts are filled with real or bogus ids).
FORMS: dict[str, tuple[str, ...]] = {
    "/dashboard/keys": ("name", "env", "scope", "expires", "expires_on", "ip_allow", "user_id"),
    "/dashboard/keys/{key}/roll": ("grace",),
    "/dashboard/keys/{key}/disable": (),
    "/dashboard/keys/{key}/edit": (
        "name",
        "scope",
        "more_scopes",
        "expires",
        "expires_on",
        "ip_allow",
        "space",
    ),
    "/dashboard/keys/{key}/narrow": (),
    "/dashboard/clients/{client}/edit": ("name", "scope", "more_scopes"),
    "/dashboard/webhooks": ("url", "description", "event"),
    "/dashboard/webhooks/{hook}/test": (),
    "/dashboard/webhooks/{hook}/roll": (),
    "/dashboard/webhooks/{hook}/disable": (),
    "/dashboard/webhooks/{hook}/enable": (),
    "/dashboard/account/mfa/begin": (),
    "/dashboard/account/mfa/confirm": ("code",),
    "/dashboard/account/mfa/disable": ("code", "current"),
    "/dashboard/login/code": ("code",),
    "/dashboard/clients": ("name", "env", "scope", "expires", "expires_on", "user_id"),
    "/dashboard/members/users": ("email", "name", "role", "space_id", "password"),
    "/dashboard/members/users/{user}/roles": ("role", "space_id"),
    "/dashboard/members/users/{user}/roles/remove": ("space_id",),
    "/dashboard/members/spaces": ("name",),
    "/dashboard/members/roles": ("name", "scopes", "description"),
    "/dashboard/members/invitations": ("email", "role"),
    "/dashboard/account/password": ("current", "password", "confirm"),
    "/dashboard/projects": ("name",),
    "/dashboard/projects/switch": ("org_id",),
}
HOSTILE = st.sampled_from(
    [
        "²",
        "٣",
        "99999999",
        "-1",
        "1e9",
        "0",
        "",
        " ",
        "\x00",
        "date",
        "live",
        "test",
        "owner",
        "*",
        "[" * 5000,
        "9" * 400,
        "\U0001d7d7\U0001d7d7",  # mathematical bold nines
        "2026-02-30",
        "10000-01-01",
        "a" * 5000,
    ]
)
VALUES = st.one_of(HOSTILE, st.text(max_size=40))


_REAL: dict[str, dict[str, str]] = {}


def _ids(org: Org) -> dict[str, str]:
    """A real key, client and webhook endpoint of ``org`` (made once), so that the forms
    acting on one are fuzzed past the lookup; bogus ids are fuzzed by the others."""
    if org.id not in _REAL:
        headers = org.headers()
        client = org.client.post(
            "/v1/clients", headers=headers, json={"name": "c", "scopes": ["keys:read"]}
        ).json()
        hook = org.client.post(
            "/v1/webhooks",
            headers=headers,
            json={"url": "https://127.0.0.1:9/x", "events": ["key.created"]},
        )
        assert hook.status_code == 201, hook.text
        _REAL[org.id] = {
            "key": org.create_key(["keys:read"])["id"],
            "client": client["client_id"],
            "hook": hook.json()["id"],
        }
    return _REAL[org.id]


def _path(template: str, org: Org) -> str:
    return template.format(user=org.owner_id, **_ids(org))


@settings(
    max_examples=examples(150),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    form=st.sampled_from(sorted(FORMS)),
    values=st.lists(VALUES, min_size=7, max_size=7),
    extra=st.dictionaries(st.sampled_from(["expires", "grace", "page"]), VALUES, max_size=2),
)
def test_no_dashboard_form_input_gives_a_500(
    owner: Browser, org: Org, form: str, values: list[str], extra: dict[str, str]
) -> None:
    data: dict[str, Any] = dict(zip(FORMS[form], values, strict=False)) | extra
    r = owner.post(_path(form, org), data)
    assert r.status_code < 500, (form, data, r.text[:300])


@settings(
    max_examples=examples(150),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    path=st.sampled_from(
        ["/v1/auth/token", "/v1/auth/refresh", "/v1/auth/revoke", "/v1/auth/introspect"]
    ),
    fields=st.dictionaries(
        st.sampled_from(
            [
                "grant_type",
                "username",
                "password",
                "client_id",
                "client_secret",
                "scope",
                "refresh_token",
                "token",
                "token_type_hint",
                "subject_token",
                "space_id",
                "org_id",
            ]
        ),
        VALUES,
        max_size=6,
    ),
    json_body=st.booleans(),
)
def test_no_token_endpoint_body_gives_a_500(
    org: Org, path: str, fields: dict[str, str], json_body: bool
) -> None:
    if json_body:
        r = org.client.post(path, json=fields, headers=org.headers())
    else:
        r = org.client.post(path, data=fields, headers=org.headers())
    assert r.status_code < 500, (path, fields, r.text[:300])


def test_deeply_nested_json_is_a_clear_400(org: Org) -> None:
    deep = "[" * 100_000
    for path in ["/v1/auth/token", "/v1/auth/refresh", "/v1/auth/revoke", "/v1/auth/introspect"]:
        r = org.client.post(
            path, content=deep, headers={**org.headers(), "content-type": "application/json"}
        )
        assert r.status_code == 400, (path, r.text)
        assert "nest at most 32 levels" in r.json()["error_description"]
