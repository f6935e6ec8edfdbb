"""A hung PostgreSQL (every process of a server of the test's own stopped with SIGSTOP):
each wait is bounded, requests answer 503 with Retry-After, /readyz says not ready, and
all recovers when the server resumes."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from apiward.adapters.http.app import create_app
from tests.conftest import bootstrap, fast_settings
from tests.private_postgres import PrivatePostgres, private_postgres  # noqa: F401

pytestmark = pytest.mark.postgres

BOUND = 1.0  # APIWARD_DATABASE_TIMEOUT_SECONDS of the test
NEVER = 30.0  # what "answered" means here: a hung request would wait as long as the freeze


def answered(call: Any) -> httpx.Response:
    """The answer of ``call``, or a failure if it waits as long as ``NEVER``."""
    got: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: got.append(call()), daemon=True)
    thread.start()
    thread.join(NEVER)
    assert got, f"no answer within {NEVER} s while the database hung"
    return got[0]


def test_a_hung_database_costs_a_request_the_bound_then_a_503(
    private_postgres: PrivatePostgres,  # noqa: F811
) -> None:
    settings = fast_settings(
        database_url=private_postgres.url,
        database_timeout_seconds=BOUND,
        invalidation_poll_seconds=3600,
    )
    with TestClient(create_app(settings)) as client:
        org = bootstrap(client)
        assert client.get("/v1/keys", headers=org.headers()).status_code == 200
        with private_postgres.frozen():
            for _ in range(3):  # the pool's connections, and new ones
                r = answered(lambda: client.get("/v1/keys", headers=org.headers()))
                assert r.status_code == 503, r.text
                assert r.json()["code"] == "SERVICE_UNAVAILABLE"
                assert r.headers["retry-after"] == "5"
            ready = answered(lambda: client.get("/readyz"))
            assert ready.status_code == 503, ready.text
        recovered = [client.get("/v1/keys", headers=org.headers()).status_code for _ in range(3)]
        assert recovered[-1] == 200, recovered
        assert client.get("/readyz").status_code == 200
