"""The edges: throttles under concurrency, refused requests spending nothing, bad input
answered with a 4xx, and what secrets and metadata are served with."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from apiward.adapters.dashboard.sessions import Sessions
from apiward.adapters.http.app import create_app
from apiward.core.models import RequestContext
from tests.conftest import Org, bootstrap, fast_settings

PASSWORD = "correct horse battery"


def storm(org: Org, attempt: Callable[[int], Coroutine[Any, Any, object]]) -> Counter[str]:
    async def run() -> Counter[str]:
        results = await asyncio.gather(*(attempt(i) for i in range(25)), return_exceptions=True)
        return Counter(type(r).__name__ for r in results)

    counts: Counter[str] = org.client.portal.call(run)  # type: ignore[union-attr]
    return counts


@pytest.mark.parametrize("door", ["token endpoint", "dashboard"])
def test_concurrent_wrong_passwords_get_at_most_five_checks(org: Org, door: str) -> None:
    runtime = org.runtime
    email = "guarded@acme.test"
    org.create_user(email, role="viewer", password=PASSWORD)
    context = RequestContext(ip="203.0.113.9")

    async def attempt(i: int, password: str | None = None) -> object:
        guess = password or f"wrong guess {i}"
        if door == "dashboard":
            return await Sessions(runtime).sign_in(email, guess, context)
        return await runtime.tokens.password_grant(
            email, guess, scope=None, org_id=None, environment=None, context=context
        )

    counts = storm(org, attempt)
    refused = "SignInFailed" if door == "dashboard" else "InvalidGrant"
    assert counts == {refused: 5, "LoginThrottled": 20}
    right = storm(org, lambda i: attempt(i, PASSWORD))
    assert right == {"LoginThrottled": 25}


# A refused request spends nothing, on every path ---------------------------------------

LIMITED = {"rate_limits": [{"name": "per-credential", "rate": "3/minute", "key": "credential"}]}


@pytest.fixture
def metered(tmp_path: Path) -> Iterator[Org]:
    settings = fast_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'm.db'}", **LIMITED)
    with TestClient(create_app(settings)) as c:
        yield bootstrap(c)


REFUSALS: list[tuple[str, Callable[[Org, str, str], Any]]] = [
    (
        "require(): missing scope",
        lambda o, k, _: o.client.get("/v1/clients", headers=o.headers(k)),
    ),
    (
        "require(): invalid body",
        lambda o, k, _: o.client.post("/v1/keys", headers=o.headers(k), json={"name": 7}),
    ),
    (
        "forward auth: missing scope",
        lambda o, k, _: o.client.get(
            "/v1/auth/check", headers=o.headers(k, **{"X-Apiward-Require": "clients:read"})
        ),
    ),
    (
        "verify: missing scope",
        lambda o, k, verifier: o.client.post(
            "/v1/keys/verify",
            headers=o.headers(verifier),
            json={"key": k, "scopes": ["clients:read"]},
        ),
    ),
]


@pytest.mark.parametrize(("path", "refuse"), REFUSALS, ids=[p for p, _ in REFUSALS])
def test_a_refused_request_spends_no_limit_and_no_credit(
    metered: Org, path: str, refuse: Callable[[Org, str, str], Any]
) -> None:
    operator = metered.operator_key()
    key = metered.create_key(["keys:read", "keys:write"], by=operator, credits={"remaining": 10})
    verifier = metered.create_key(["keys:verify"], by=operator)["key"]
    for _ in range(3):  # the verifier's own budget is 3 a minute
        r = refuse(metered, key["key"], verifier)
        assert r.status_code in (200, 400, 403), r.text
        assert r.status_code != 200 or r.json()["valid"] is False
    shown = metered.client.get(f"/v1/keys/{key['id']}", headers=metered.headers()).json()
    assert shown["credits"]["remaining"] == 10, path
    # The whole budget (3 a minute) is still there, then the limit holds.
    statuses = [
        metered.client.get("/v1/keys", headers=metered.headers(key["key"])).status_code
        for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429], path
    shown = metered.client.get(f"/v1/keys/{key['id']}", headers=metered.headers()).json()
    assert shown["credits"]["remaining"] == 7
