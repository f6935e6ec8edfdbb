"""The edges: throttles under concurrency, refused requests spending nothing, bad input
answered with a 4xx, and what secrets and metadata are served with."""

from __future__ import annotations

import asyncio
import subprocess
import sys
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


# Metadata and caching -------------------------------------------------------------------


def test_metadata_comes_from_the_public_url_whatever_the_host_header(tmp_path: Path) -> None:
    settings = fast_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'meta.db'}",
        public_url="https://auth.example.test",
    )
    with TestClient(create_app(settings)) as c:
        r = c.get("/.well-known/oauth-authorization-server", headers={"Host": "evil.test"})
    meta = r.json()
    assert meta["issuer"] == "https://auth.example.test"
    assert meta["token_endpoint"] == "https://auth.example.test/v1/auth/token"
    assert meta["jwks_uri"] == "https://auth.example.test/.well-known/jwks.json"
    assert "evil" not in r.text
    assert r.headers["cache-control"] == "public, max-age=3600"


def test_answers_carrying_a_secret_are_never_stored(org: Org) -> None:
    c, h = org.client, org.headers()
    key = c.post("/v1/keys", headers=h, json={"name": "k", "scopes": ["keys:read"]})
    rolled = c.post(f"/v1/keys/{key.json()['id']}/roll", headers=h, json={})
    client = c.post("/v1/clients", headers=h, json={"name": "c", "scopes": ["keys:read"]})
    hook = c.post("/v1/webhooks", headers=h, json={"url": "http://127.0.0.1:9/in", "events": ["*"]})
    secret = c.post(f"/v1/webhooks/{hook.json()['id']}/roll-secret", headers=h)
    for answer in (key, rolled, client, hook, secret):
        assert answer.status_code in (200, 201), answer.text
        assert answer.headers["cache-control"] == "no-store", answer.request.url


# Files ------------------------------------------------------------------------------------


def test_the_database_its_journal_and_the_secret_file_are_private(tmp_path: Path) -> None:
    db = tmp_path / "private.db"
    settings = fast_settings(database_url=f"sqlite+aiosqlite:///{db}", secret_key=None)
    with TestClient(create_app(settings)) as c:
        bootstrap(c)
        for name in ("private.db", "private.db-wal", "private.db-shm", "private.db.secret"):
            mode = (tmp_path / name).stat().st_mode & 0o777
            assert mode == 0o600, (name, oct(mode))


def test_workers_starting_together_share_one_secret(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 's.db'}"
    script = (
        "import sys; from apiward.adapters.settings import Settings; "
        "from apiward.adapters.secret import deployment_secret; "
        f"sys.stdout.write(deployment_secret(Settings(database_url={url!r})).decode())"
    )
    workers = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    secrets = {w.communicate(timeout=60)[0] for w in workers}
    assert len(secrets) == 1 and len(secrets.pop()) >= 48
    assert [p.name for p in tmp_path.iterdir()] == ["s.db.secret"]


# Forward auth reads the declared proxy's header only ----------------------------------


@pytest.mark.parametrize(
    ("proxy", "theirs", "client_added"),
    [
        ("traefik", "X-Forwarded-Uri", "X-Original-URI"),
        ("nginx", "X-Original-URI", "X-Forwarded-Uri"),
        ("envoy", None, "X-Envoy-Original-Path"),
    ],
)
def test_the_original_path_comes_from_the_declared_proxy_only(
    tmp_path: Path, proxy: str, theirs: str | None, client_added: str
) -> None:
    """Envoy sets no header: ``ext_authz`` asks at ``/v1/auth/check`` + the path."""
    settings = fast_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'p.db'}",
        forward_auth_proxy=proxy,
        rate_limit_routes=[
            {"route": "/v1/things", "limits": [{"name": "things", "rate": "9/minute"}]},
            {"route": "/v1/events", "exempt": True},
        ],
    )

    def asked(original: str, **extra: str) -> Any:
        if theirs is None:
            return c.get("/v1/auth/check" + original, headers=org.headers(**extra))
        return c.get("/v1/auth/check", headers=org.headers(**{theirs: original, **extra}))

    with TestClient(create_app(settings)) as c:
        org = bootstrap(c)
        others = {client_added: "/v1/events", "X-Original-URI": "/v1/events"}
        r = asked("/v1/%74hings?x=1", **({} if proxy == "nginx" else others))
        assert r.status_code == 200, r.text
        assert r.headers["ratelimit-policy"] == '"things";q=9;w=60'
        assert asked("/v1/%2Fthings").status_code == 400


def test_a_nul_character_is_a_bad_input_on_every_store(database_url: str) -> None:
    """PostgreSQL cannot store a NUL character, SQLite can: neither gives a 500. A
    sign-in with one in the address finds no one (the answer of an unknown address);
    anything else with one is a 400 that says so."""
    with TestClient(create_app(fast_settings(database_url=database_url))) as client:
        org = bootstrap(client)

        def sign_in(username: str) -> tuple[int, str]:
            r = client.post(
                "/v1/auth/token",
                json={"grant_type": "password", "username": username, "password": "pw pw"},
            )
            return r.status_code, r.json()["error_description"]

        assert sign_in("a\u0000b@x.test") == sign_in("nobody@x.test")
        key = client.post(
            "/v1/keys", headers=org.headers(), json={"name": "a\u0000b", "scopes": ["keys:read"]}
        )
        assert 400 <= key.status_code < 500, key.text
