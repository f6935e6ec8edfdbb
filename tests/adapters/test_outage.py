"""A database outage (a PostgreSQL of the test's own, stopped): a key verified before it
keeps working for the serve-stale bound past its cache TTL, a key never seen is a 503,
and with no bound every key is a 503 once its TTL has passed."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from apiward.adapters.http.app import create_app
from tests.conftest import bootstrap, fast_settings
from tests.private_postgres import PrivatePostgres, private_postgres  # noqa: F401

pytestmark = pytest.mark.postgres

TTL = 0.3


@pytest.mark.parametrize(("serve_stale", "during"), [(600.0, 200), (0.0, 503)])
def test_keys_verified_before_an_outage_work_through_it_for_the_bound(
    private_postgres: PrivatePostgres,  # noqa: F811
    serve_stale: float,
    during: int,
) -> None:
    settings = fast_settings(
        database_url=private_postgres.url,
        cache_ttl_seconds=TTL,
        cache_serve_stale_seconds=serve_stale,
        database_timeout_seconds=2.0,
    )
    with TestClient(create_app(settings)) as client:
        org = bootstrap(client)
        made = client.post(
            "/v1/keys", headers=org.headers(), json={"name": "k", "scopes": ["things:read"]}
        ).json()
        never_seen = client.post(
            "/v1/keys", headers=org.headers(), json={"name": "n", "scopes": ["things:read"]}
        ).json()
        verifier = client.post(
            "/v1/keys", headers=org.headers(), json={"name": "v", "scopes": ["keys:verify"]}
        ).json()
        as_verifier = {"Authorization": f"Bearer {verifier['key']}"}
        check = {"Authorization": f"Bearer {made['key']}", "X-Original-URI": "/v1/things"}
        assert client.get("/v1/auth/check", headers=check).status_code == 200
        known = client.post("/v1/keys/verify", headers=as_verifier, json={"key": made["key"]})
        assert known.json()["valid"] is True
        private_postgres.stop()
        time.sleep(TTL * 3)  # past the TTL: only a stale record can answer
        statuses = [client.get("/v1/auth/check", headers=check).status_code for _ in range(3)]
        assert statuses == [during] * 3
        cold = {"Authorization": f"Bearer {never_seen['key']}", "X-Original-URI": "/v1/things"}
        refused = client.get("/v1/auth/check", headers=cold)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
        # The verify API cannot say a key it never saw is no key: it is unavailable too
        # (the verifier's own key is served stale, or is itself the 503 without a bound).
        asked = client.post("/v1/keys/verify", headers=as_verifier, json={"key": never_seen["key"]})
        assert asked.status_code == 503, asked.text
        private_postgres.start()
        assert client.get("/v1/auth/check", headers=cold).status_code == 200
        if serve_stale:
            assert "apiward_cache_stale_served_total 4.0" in client.get("/metrics").text
