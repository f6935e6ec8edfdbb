"""No time a request gives answers a 500: every route that takes one answers 2xx or 400
(the deployment's error envelope), at any year and any offset up to 23:59 either way."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from apiward.adapters.http.app import create_app
from tests.conftest import Org, bootstrap, examples, fast_settings

MOST = timedelta(hours=23, minutes=59)
OFFSETS = st.one_of(
    st.timezones(),
    st.sampled_from([timezone(MOST), timezone(-MOST), UTC]),
    st.timedeltas(-MOST, MOST).map(timezone),
)
EXTREMES = st.sampled_from(
    [datetime.min, datetime.max, datetime(9000, 1, 1), datetime(1970, 1, 1), datetime(2099, 1, 1)]
)
TIMES = st.one_of(
    st.builds(lambda d, z: d.replace(tzinfo=z), EXTREMES, st.one_of(st.none(), OFFSETS)),
    st.datetimes(timezones=st.one_of(st.none(), OFFSETS)),
).map(datetime.isoformat)

Call = Callable[[Org, str], httpx.Response]


def _key(org: Org, when: str) -> httpx.Response:
    body = {"name": "k", "scopes": ["keys:read"], "expires_at": when}
    r: httpx.Response = org.client.post("/v1/keys", headers=org.headers(), json=body)
    return r


def _key_update(org: Org, when: str) -> httpx.Response:
    key = org.create_key(["keys:read"])
    r: httpx.Response = org.client.patch(
        f"/v1/keys/{key['id']}", headers=org.headers(), json={"expires_at": when}
    )
    return r


def _client(org: Org, when: str) -> httpx.Response:
    body = {"name": "c", "scopes": ["keys:read"], "expires_at": when}
    r: httpx.Response = org.client.post("/v1/clients", headers=org.headers(), json=body)
    return r


def _query(path: str, name: str) -> Call:
    return lambda org, when: org.client.get(path, headers=org.headers(), params={name: when})


ROUTES: dict[tuple[str, str, str], Call] = {
    ("POST", "/v1/keys", "expires_at"): _key,
    ("PATCH", "/v1/keys/{key_id}", "expires_at"): _key_update,
    ("POST", "/v1/clients", "expires_at"): _client,
    ("GET", "/v1/audit-events", "since"): _query("/v1/audit-events", "since"),
    ("GET", "/v1/audit-events", "until"): _query("/v1/audit-events", "until"),
    ("GET", "/v1/analytics/verifications", "since"): _query("/v1/analytics/verifications", "since"),
    ("GET", "/v1/analytics/verifications", "until"): _query("/v1/analytics/verifications", "until"),
}
"""Every input of the API that is a time: the schema's date-time fields and parameters,
and analytics' since/until (a time or a span, so plain strings in the schema)."""


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Org]:
    db = tmp_path_factory.mktemp("times") / "t.db"
    settings_ = fast_settings(
        database_url=f"sqlite+aiosqlite:///{db}", auth_failure_limit="1000000/minute"
    )
    with TestClient(create_app(settings_), raise_server_exceptions=False) as client:
        yield bootstrap(client)


def _date_time_inputs(document: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(method, path, name) of each date-time body field and query parameter."""

    def is_time(schema: dict[str, Any]) -> bool:
        options = schema.get("anyOf", [schema])
        return any(o.get("format") == "date-time" for o in options)

    schemas = document["components"]["schemas"]
    found = set()
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            for param in op.get("parameters", []):
                if is_time(param["schema"]):
                    found.add((method.upper(), path, param["name"]))
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            ref = body.get("schema", {}).get("$ref", "")
            for name, prop in schemas.get(ref.rpartition("/")[2], {}).get("properties", {}).items():
                if is_time(prop):
                    found.add((method.upper(), path, name))
    return found


def test_every_time_input_of_the_api_is_exercised(org: Org) -> None:
    document = org.client.get("/openapi.json").json()
    analytics = {k for k in ROUTES if k[1] == "/v1/analytics/verifications"}
    assert _date_time_inputs(document) == set(ROUTES) - analytics
    params = document["paths"]["/v1/analytics/verifications"]["get"]["parameters"]
    assert {"since", "until"} <= {p["name"] for p in params}


@pytest.mark.parametrize(
    ("route", "when"),
    [
        (("GET", "/v1/analytics/verifications", "until"), "9999-12-31T23:59:59-23:59"),
        (("GET", "/v1/analytics/verifications", "since"), "0001-01-01T00:00:00+23:59"),
        (("GET", "/v1/audit-events", "until"), "9999-12-31T23:59:59-23:59"),
        (("GET", "/v1/audit-events", "since"), "0001-01-01T00:00:00+23:59"),
        (("POST", "/v1/keys", "expires_at"), "9999-12-31T23:59:59-23:59"),
        (("POST", "/v1/keys", "expires_at"), "9999-12-31T23:59:59Z"),
        (("PATCH", "/v1/keys/{key_id}", "expires_at"), "9999-12-31T23:59:59-23:59"),
        (("POST", "/v1/clients", "expires_at"), "9999-12-31T23:59:59-23:59"),
    ],
)
def test_the_reported_times_are_a_400_in_the_envelope(
    org: Org, route: tuple[str, str, str], when: str
) -> None:
    r = ROUTES[route](org, when)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "BAD_REQUEST" and body["request_id"]
    assert "1970-01-01T00:00:00Z and 9000-01-01T00:00:00Z" in body["message"]


def test_times_in_range_still_work(org: Org) -> None:
    later = "2999-12-31T23:59:59-23:59"
    assert _key(org, later).json()["expires_at"] == "3000-01-01T23:58:59Z"
    assert _client(org, later).status_code == 201
    assert _query("/v1/audit-events", "since")(org, "1970-01-01T00:00:00Z").status_code == 200
    r = org.client.get(
        "/v1/analytics/verifications",
        headers=org.headers(),
        params={"since": "2026-01-01T00:00:00+23:59", "until": "2026-01-02T00:00:00-23:59"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["since"] == "2025-12-31T00:01:00Z"


@settings(
    max_examples=examples(50),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(when=TIMES)
@example(when="9999-12-31T23:59:59.999999-23:59")
@example(when="0001-01-01T00:00:00+23:59")
@pytest.mark.parametrize("route", list(ROUTES), ids=lambda r: f"{r[0]} {r[1]} {r[2]}")
def test_any_time_on_any_route_is_2xx_or_400(
    org: Org, route: tuple[str, str, str], when: str
) -> None:
    r = ROUTES[route](org, when)
    assert r.status_code in (200, 201, 400), (when, r.status_code, r.text)
    if r.status_code == 400:
        assert r.json()["code"] == "BAD_REQUEST"


@settings(
    max_examples=examples(50),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(since=TIMES, until=TIMES)
@example(since="9999-12-30T00:00:00Z", until="9999-12-31T23:59:59-23:59")
@pytest.mark.parametrize("path", ["/v1/analytics/verifications", "/v1/audit-events"])
def test_any_span_of_a_query_is_200_or_400(org: Org, path: str, since: str, until: str) -> None:
    r = org.client.get(path, headers=org.headers(), params={"since": since, "until": until})
    assert r.status_code in (200, 400), (since, until, r.status_code, r.text)
