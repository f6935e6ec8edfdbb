"""Rate limits and usage credits over HTTP: headers, 429s, tiers, per-key limits."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from apiward.adapters.http.app import create_app
from apiward.core.keys import KeyFormats
from tests.conftest import Org, bootstrap, fast_settings, migrated_sqlite

MONACO_AND_MONK = {
    "rate_limits": [
        {"name": "org-hourly", "rate": "1000/hour", "key": "org"},
        {"name": "per-ip", "rate": "5/minute", "key": "ip"},
    ],
    "rate_limit_routes": [{"route": "/v1/spaces", "exempt": True}],
    "rate_limit_tiers": {
        "pro": {
            "limits": [
                {"name": "org-hourly", "rate": "100000/hour", "key": "org"},
                {"name": "per-ip", "rate": "50/minute", "key": "ip"},
            ]
        }
    },
}


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Org]:
    settings = fast_settings(database_url=migrated_sqlite(tmp_path / "l.db"), **MONACO_AND_MONK)
    with TestClient(create_app(settings)) as client:
        yield bootstrap(client)


def test_headers_describe_the_limit_closest_to_exhaustion(limited: Org) -> None:
    r = limited.client.get("/v1/keys", headers=limited.headers())
    assert r.status_code == 200
    assert r.headers["x-ratelimit-limit"] == "5"
    assert r.headers["x-ratelimit-remaining"] == "4"
    assert int(r.headers["x-ratelimit-reset"]) >= int(time.time())
    assert r.headers["ratelimit-policy"] == '"per-ip";q=5;w=60'
    assert r.headers["ratelimit"].startswith('"per-ip";r=4;t=')


def test_429_after_the_limit_with_retry_after_and_body(limited: Org) -> None:
    for _ in range(5):
        assert limited.client.get("/v1/keys", headers=limited.headers()).status_code == 200
    r = limited.client.get("/v1/keys", headers=limited.headers())
    assert r.status_code == 429
    body = r.json()
    assert body["code"] == "RATE_LIMITED"
    assert "Retry after" in body["message"] and "'per-ip'" in body["message"]
    assert int(r.headers["retry-after"]) >= 1
    assert r.headers["x-ratelimit-remaining"] == "0"


def test_exempt_route_has_no_limit(limited: Org) -> None:
    for _ in range(10):
        r = limited.client.get("/v1/spaces", headers=limited.headers())
        assert r.status_code == 200
        assert "x-ratelimit-limit" not in r.headers


def test_moving_an_org_to_a_tier_applies_at_once(limited: Org) -> None:
    operator = limited.headers(limited.operator_key())
    r = limited.client.patch("/v1/org", headers=operator, json={"rate_tier": "pro"})
    assert r.status_code == 200
    assert r.json()["rate_tier"] == "pro"
    assert {x["name"]: x["limit"] for x in r.json()["rate_limits"]}["per-ip"] == 50
    after = limited.client.get("/v1/keys", headers=limited.headers())
    assert after.headers["x-ratelimit-limit"] == "50"
    bad = limited.client.patch("/v1/org", headers=operator, json={"rate_tier": "gold"})
    assert bad.status_code == 400 and "pro" in bad.json()["message"]
    back = limited.client.patch("/v1/org", headers=operator, json={"rate_tier": None})
    assert back.json()["rate_tier"] is None


def test_a_keys_own_limit_set_by_the_operator_replaces_the_orgs(limited: Org) -> None:
    key = limited.create_key(
        ["keys:read"],
        by=limited.operator_key(),
        rate_limits=[{"name": "per-ip", "rate": "2/minute", "key": "ip"}],
    )
    assert key["rate_limits"] == [
        {
            "name": "per-ip",
            "rate": "2/minute",
            "key": "ip",
            "mode": "enforce",
            "replaces_plan": True,
        }
    ]
    headers = limited.headers(key["key"])
    assert limited.client.get("/v1/keys", headers=headers).headers["x-ratelimit-limit"] == "2"
    bad = limited.client.post(
        "/v1/keys",
        headers=limited.headers(),
        json={
            "name": "x",
            "scopes": ["keys:read"],
            "rate_limits": [{"name": "x", "rate": "lots", "key": "ip"}],
        },
    )
    assert bad.status_code == 400 and "Invalid rate" in bad.json()["message"]


def test_usage_credits_are_spent_and_exhausted(org: Org) -> None:
    operator = org.headers(org.operator_key())
    key = org.create_key(["keys:read"], by=org.operator_key(), credits={"remaining": 3})
    assert key["credits"] == {"remaining": 3, "refill": None}
    headers = org.headers(key["key"])
    for _ in range(3):
        assert org.client.get("/v1/keys", headers=headers).status_code == 200
    r = org.client.get("/v1/keys", headers=headers)
    assert r.status_code == 429
    assert r.json()["code"] == "USAGE_EXCEEDED"
    assert "retry-after" not in r.headers
    shown = org.client.get(f"/v1/keys/{key['id']}", headers=org.headers()).json()
    assert shown["credits"]["remaining"] == 0
    topped = org.client.patch(
        f"/v1/keys/{key['id']}",
        headers=operator,
        json={"credits": {"remaining": 1, "refill": {"amount": 100, "interval": "daily"}}},
    )
    assert topped.json()["credits"]["refill"]["amount"] == 100
    assert org.client.get("/v1/keys", headers=headers).status_code == 200


def test_verify_reports_rate_limit_and_credits(limited: Org) -> None:
    verifier = limited.create_key(
        ["keys:verify"], rate_limits=[{"name": "per-ip", "rate": "1000/minute", "key": "ip"}]
    )["key"]
    target = limited.create_key(["a:b"], by=limited.operator_key(), credits={"remaining": 2})["key"]

    def verify() -> dict[str, Any]:
        r = limited.client.post(
            "/v1/keys/verify",
            headers=limited.headers(verifier),
            json={"key": target, "ip": "203.0.113.9"},
        )
        body: dict[str, Any] = r.json()
        return body

    first = verify()
    assert first["valid"] is True and first["credits_remaining"] == 1
    assert first["ratelimit"]["limit"] == 5 and first["ratelimit"]["remaining"] == 4
    verify()
    assert verify()["code"] == "USAGE_EXCEEDED"


def test_failed_authentications_from_one_ip_are_limited(tmp_path: Path) -> None:
    settings = fast_settings(
        database_url=migrated_sqlite(tmp_path / "f.db"), auth_failure_limit="3/minute"
    )
    with TestClient(create_app(settings)) as client:
        org = bootstrap(client)
        codes = [
            client.get("/v1/keys", headers={"Authorization": "Bearer nope"}).status_code
            for _ in range(5)
        ]
        assert codes == [401, 401, 401, 429, 429]
        blocked = client.get("/v1/keys", headers={"Authorization": "Bearer nope"})
        assert "failed authentications" in blocked.json()["message"]
        # A valid credential from the same address still works.
        assert client.get("/v1/keys", headers=org.headers()).status_code == 200


def _basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


BOGUS_CLIENTS: dict[str, Callable[[TestClient, int], httpx.Response]] = {
    "token, secret in the body": lambda c, n: c.post(
        "/v1/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": f"client_no{n}",
            "client_secret": "x",
        },
    ),
    "token, HTTP Basic": lambda c, n: c.post(
        "/v1/auth/token",
        data={"grant_type": "client_credentials"},
        headers=_basic(f"client_no{n}", "x"),
    ),
    "token, malformed Basic": lambda c, n: c.post(
        "/v1/auth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic !{n}"},
    ),
    "token exchange": lambda c, n: c.post(
        "/v1/auth/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "client_id": f"client_no{n}",
            "client_secret": "x",
        },
    ),
    "introspection": lambda c, n: c.post(
        "/v1/auth/introspect", data={"token": "t"}, headers=_basic(f"client_no{n}", "x")
    ),
    "revocation": lambda c, n: c.post(
        "/v1/auth/revoke", data={"token": "t", "client_id": f"client_no{n}", "client_secret": "x"}
    ),
}


@pytest.mark.parametrize("door", BOGUS_CLIENTS)
def test_failed_client_authentications_count_against_the_same_limit(
    tmp_path: Path, door: str
) -> None:
    """Unknown clients and wrong secrets spend the address's failure budget wherever a
    client authenticates, as failed keys do (one budget for both); past it, 429."""
    settings = fast_settings(
        database_url=migrated_sqlite(tmp_path / "c.db"), auth_failure_limit="4/hour"
    )
    send = BOGUS_CLIENTS[door]
    with TestClient(create_app(settings)) as client:
        org = bootstrap(client)
        made = client.post(
            "/v1/clients", headers=org.headers(), json={"name": "partner", "scopes": ["keys:read"]}
        ).json()
        assert client.get("/v1/keys", headers={"Authorization": "Bearer nope"}).status_code == 401
        codes = [send(client, n).status_code for n in range(40)]
        assert codes == [401] * 3 + [429] * 37
        blocked = send(client, 99)
        body = blocked.json()
        assert body["code"] == "RATE_LIMITED" and "failed authentications" in body["message"]
        assert int(blocked.headers["retry-after"]) >= 1
        assert "www-authenticate" not in blocked.headers
        assert client.get("/v1/keys", headers={"Authorization": "Bearer nope"}).status_code == 429
        # The client that knows its secret still gets its token; nothing was spent on it.
        good = client.post(
            "/v1/auth/token",
            data={"grant_type": "client_credentials"},
            headers=_basic(made["client_id"], made["client_secret"]),
        )
        assert good.status_code == 200, good.text
        metrics = client.get("/metrics").text
        assert 'apiward_failed_authentications_total{credential="client"} 41.0' in metrics
        assert 'apiward_failed_authentications_total{credential="key"} 2.0' in metrics


def test_made_up_refresh_tokens_count_against_the_same_limit(tmp_path: Path) -> None:
    """A refresh token that was never issued is a failed authentication too: at either
    refresh door, it spends the address's failure budget; past it, 429."""
    settings = fast_settings(
        database_url=migrated_sqlite(tmp_path / "r.db"), auth_failure_limit="4/hour"
    )
    with TestClient(create_app(settings)) as client:
        bootstrap(client)
        refresh_format = KeyFormats(settings.key_format).view("rt").current
        made_up = [refresh_format.generate("live") for _ in range(6)]  # well-formed
        codes = [
            client.post(
                "/v1/auth/token", data={"grant_type": "refresh_token", "refresh_token": token}
            ).status_code
            for token in made_up[:3]
        ]
        codes.append(
            client.post(
                "/v1/auth/refresh", json={"refresh_token": "not-a-refresh-token"}
            ).status_code
        )
        codes += [
            client.post("/v1/auth/refresh", json={"refresh_token": token}).status_code
            for token in made_up[3:]
        ]
        assert codes == [400, 400, 400, 401, 429, 429, 429]
        assert client.get("/v1/keys", headers={"Authorization": "Bearer nope"}).status_code == 429
        metrics = client.get("/metrics").text
        assert 'apiward_failed_authentications_total{credential="refresh"} 7.0' in metrics
