"""Least privilege, measured: the scopes each key's and client's allowed requests used,
counted per day in memory, flushed in batches, and read back per credential; only ever
for the caller's organisation and environment."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from apiward.adapters.http.app import create_app
from apiward.adapters.storage.migrate import upgrade
from apiward.adapters.storage.sql import SqlStore
from apiward.core.errors import ServiceUnavailable
from apiward.core.models import CredentialKind, Principal
from apiward.core.scope_usage import day_of
from apiward.core.scopes import ScopeSet
from apiward.services.scope_usage import ScopeTally
from tests.conftest import FakeClock, Org, bootstrap, fast_settings


@pytest.fixture
def clock() -> FakeClock:
    made = FakeClock()
    made.current = datetime(2026, 12, 1, 12, tzinfo=UTC)
    return made


@pytest.fixture
def org(database_url: str, clock: FakeClock) -> Iterator[Org]:
    settings = fast_settings(database_url=database_url)
    with TestClient(create_app(settings, clock=clock), raise_server_exceptions=False) as c:
        yield bootstrap(c)


def flush(org: Org) -> int:
    written: int = org.client.portal.call(org.runtime.flush_scope_usage)  # type: ignore[union-attr]
    return written


def usage(org: Org, path: str, key: str | None = None, **params: str) -> Any:
    r = org.client.get(f"{path}/scope-usage", headers=org.headers(key), params=params)
    assert r.status_code == 200, r.text
    return r.json()


def stored(org: Org, credential_id: str) -> list[tuple[int, str, int]]:
    async def rows() -> list[tuple[int, str, int]]:
        async with org.runtime.store.begin() as tx:
            found = await tx.scope_uses(org.id, "live", credential_id, 0, 10**6)
        return [(u.day, u.scope, u.count) for u in found]

    got: list[tuple[int, str, int]] = org.client.portal.call(rows)  # type: ignore[union-attr]
    return got


def test_routes_checks_and_the_verify_api_count_the_scopes_they_needed(org: Org) -> None:
    c = org.client
    key = org.create_key(["keys:read", "clients:read", "things:read", "webhooks:write"])
    verifier = org.create_key(["keys:verify"])
    auth = org.headers(key["key"])
    for _ in range(3):
        assert c.get("/v1/keys", headers=auth).status_code == 200  # require("keys:read")
    check = c.get("/v1/auth/check", headers={**auth, "X-Apiward-Require": "keys:read"})
    assert check.status_code == 200  # forward auth, the scope a proxy asked for
    assert c.get("/v1/users", headers=auth).status_code == 403  # refused: nothing used
    verified = c.post(
        "/v1/keys/verify",
        headers=org.headers(verifier["key"]),
        json={"key": key["key"], "scopes": ["things:read"]},
    )
    assert verified.json()["valid"] is True
    assert stored(org, key["id"]) == []  # nothing written on the request path
    assert flush(org) >= 2
    day = day_of(org.runtime.clock.now())
    assert stored(org, key["id"]) == [(day, "keys:read", 4), (day, "things:read", 1)]
    answer = usage(org, f"/v1/keys/{key['id']}")
    assert answer["id"] == key["id"]
    assert [(u["scope"], u["requests"], u["granted_by"]) for u in answer["used"]] == [
        ("keys:read", 4, "keys:read"),
        ("things:read", 1, "things:read"),
    ]
    assert answer["used"][0]["last_used_on"] == "2026-12-01"
    assert answer["unused"] == ["clients:read", "webhooks:write"]
    assert answer["narrowed"] == ["keys:read", "things:read"]
    assert usage(org, f"/v1/keys/{verifier['id']}")["used"][0]["scope"] == "keys:verify"


def test_a_wildcard_key_reports_the_concrete_scopes_it_stood_for(org: Org) -> None:
    c = org.client
    key = org.create_key(["*"])
    auth = org.headers(key["key"])
    c.get("/v1/keys", headers=auth)
    c.get("/v1/clients", headers=auth)
    c.get("/v1/keys", headers=auth)
    flush(org)
    answer = usage(org, f"/v1/keys/{key['id']}")
    assert [(u["scope"], u["requests"], u["granted_by"]) for u in answer["used"]] == [
        ("clients:read", 1, "*"),
        ("keys:read", 2, "*"),
    ]
    assert answer["unused"] == []  # its one scope, the wildcard, was used
    assert answer["narrowed"] == ["clients:read", "keys:read"]

    # Narrowing is an ordinary update: the key's owner narrows it, and it still works.
    narrowed = c.patch(
        f"/v1/keys/{key['id']}", headers=org.headers(), json={"scopes": answer["narrowed"]}
    )
    assert narrowed.status_code == 200, narrowed.text
    assert narrowed.json()["scopes"] == ["clients:read", "keys:read"]
    assert c.get("/v1/keys", headers=auth).status_code == 200
    assert c.get("/v1/users", headers=auth).status_code == 403
    flush(org)
    after = usage(org, f"/v1/keys/{key['id']}")
    assert [(u["scope"], u["granted_by"]) for u in after["used"]] == [
        ("clients:read", "clients:read"),
        ("keys:read", "keys:read"),
    ]
    assert after["unused"] == []


def test_a_required_pattern_is_never_counted_as_a_scope_used(org: Org) -> None:
    """A check that requires a pattern (``*``, ``invoices:*``) names no concrete scope: it
    counts nothing, so narrowing never keeps a wildcard because a request asked for one."""
    c = org.client
    key = org.create_key(["*"])
    auth = org.headers(key["key"])
    for pattern in ("*", "invoices:*", "*:read"):
        r = c.get("/v1/auth/check", headers={**auth, "X-Apiward-Require": pattern})
        assert r.status_code == 200, r.text
    c.get("/v1/auth/check", headers={**auth, "X-Apiward-Require": "invoices:read"})
    flush(org)
    answer = usage(org, f"/v1/keys/{key['id']}")
    assert [u["scope"] for u in answer["used"]] == ["invoices:read"]
    assert answer["narrowed"] == ["invoices:read"]


def test_the_narrowing_update_follows_authority(org: Org) -> None:
    c = org.client
    wide = org.create_key(["*"])
    c.get("/v1/keys", headers=org.headers(wide["key"]))
    flush(org)
    narrowed = usage(org, f"/v1/keys/{wide['id']}")["narrowed"]
    assert narrowed == ["keys:read"]
    body = {"scopes": narrowed}
    path = f"/v1/keys/{wide['id']}"
    reader = org.create_key(["keys:read"])  # may read the report, not change the key
    assert usage(org, path, reader["key"])["narrowed"] == narrowed
    r = c.patch(path, headers=org.headers(reader["key"]), json=body)
    assert r.status_code == 403 and r.json()["reason"] == "INSUFFICIENT_SCOPE"
    # keys:write without the scopes it would hand out: delegation never amplifies.
    writer = org.create_key(["keys:write"])
    r = c.patch(path, headers=org.headers(writer["key"]), json=body)
    assert r.status_code == 403 and r.json()["reason"] == "EXCEEDS_AUTHORITY", r.text
    other = bootstrap(c, "Globex", "owner@globex.test", another=True)
    assert c.patch(path, headers=other.headers(), json=body).status_code == 404
    assert c.patch(path, headers=org.headers(org.owner_test_key), json=body).status_code == 404
    assert c.get(f"/v1/keys/{wide['id']}", headers=org.headers()).json()["scopes"] == ["*"]


def test_counts_are_per_day_by_the_injected_clock(org: Org, clock: FakeClock) -> None:
    c = org.client
    key = org.create_key(["keys:read", "clients:read"])
    auth = org.headers(key["key"])
    c.get("/v1/clients", headers=auth)
    c.get("/v1/keys", headers=auth)
    clock.advance(2 * 86400)
    c.get("/v1/keys", headers=auth)
    c.get("/v1/keys", headers=auth)
    flush(org)  # one batch, one row per day and scope
    first, third = day_of(clock.now()) - 2, day_of(clock.now())
    assert stored(org, key["id"]) == [
        (first, "clients:read", 1),
        (first, "keys:read", 1),
        (third, "keys:read", 2),
    ]
    whole = usage(org, f"/v1/keys/{key['id']}")
    assert [(u["scope"], u["requests"], u["last_used_on"]) for u in whole["used"]] == [
        ("clients:read", 1, "2026-12-01"),
        ("keys:read", 3, "2026-12-03"),
    ]
    recent = usage(org, f"/v1/keys/{key['id']}", since="1d")
    assert [(u["scope"], u["requests"]) for u in recent["used"]] == [("keys:read", 2)]
    assert recent["unused"] == ["clients:read"]
    dated = usage(org, f"/v1/keys/{key['id']}", since="2026-12-02")
    assert dated["since"].startswith("2026-12-02T00:00:00")
    assert [u["scope"] for u in dated["used"]] == ["keys:read"]


@pytest.mark.parametrize(
    ("since", "words"),
    [
        ("yesterday", "ISO time"),
        ("7 days", "ISO time"),
        ("2027-01-01T00:00:00Z", "future"),
        ("2020-01-01", "retention"),
        ("-3d", "ISO time"),
        ("0001-01-01T00:00:00+23:59", "since"),
        ("9999-12-31T23:59:59-23:59", "since"),
        ("99999d", "since"),
    ],
)
def test_a_bad_since_is_a_clear_400(org: Org, since: str, words: str) -> None:
    key = org.create_key(["keys:read"])
    client = org.client.post(
        "/v1/clients", headers=org.headers(), json={"name": "c", "scopes": ["keys:read"]}
    ).json()
    for path in (f"/v1/keys/{key['id']}", f"/v1/clients/{client['client_id']}"):
        r = org.client.get(f"{path}/scope-usage", headers=org.headers(), params={"since": since})
        assert r.status_code == 400, r.text
        assert words in r.json()["message"], r.text


def test_another_organisations_or_environments_credentials_are_not_found(org: Org) -> None:
    c = org.client
    key = org.create_key(["keys:read"])
    client = c.post(
        "/v1/clients", headers=org.headers(), json={"name": "c", "scopes": ["keys:read"]}
    ).json()
    c.get("/v1/keys", headers=org.headers(key["key"]))
    flush(org)
    other = bootstrap(c, "Globex", "owner@globex.test", another=True)
    for path in (f"/v1/keys/{key['id']}", f"/v1/clients/{client['client_id']}"):
        for headers in (other.headers(), org.headers(org.owner_test_key)):
            r = c.get(f"{path}/scope-usage", headers=headers)
            assert r.status_code == 404, r.text
    test_key = org.create_key(["keys:read"], env="test")
    r = c.get(f"/v1/keys/{test_key['id']}/scope-usage", headers=org.headers())
    assert r.status_code == 404  # a live credential sees no test key
    assert c.get(f"/v1/keys/{key['id']}/scope-usage", headers=org.headers()).status_code == 200
    no_scope = org.create_key(["clients:read"])
    r = c.get(f"/v1/keys/{key['id']}/scope-usage", headers=org.headers(no_scope["key"]))
    assert r.status_code == 403 and r.json()["reason"] == "INSUFFICIENT_SCOPE"


def test_a_clients_tokens_count_under_the_client(org: Org) -> None:
    c = org.client
    client = c.post(
        "/v1/clients",
        headers=org.headers(),
        json={"name": "c", "scopes": ["keys:read", "clients:read"]},
    ).json()
    grant = {
        "grant_type": "client_credentials",
        "client_id": client["client_id"],
        "client_secret": client["client_secret"],
    }
    token = c.post("/v1/auth/token", json=grant).json()["access_token"]
    for _ in range(2):
        assert c.get("/v1/keys", headers=org.headers(token)).status_code == 200
    flush(org)
    answer = usage(org, f"/v1/clients/{client['client_id']}")
    assert [(u["scope"], u["requests"]) for u in answer["used"]] == [("keys:read", 2)]
    assert answer["unused"] == ["clients:read"]
    path = f"/v1/clients/{client['client_id']}"
    narrowed = c.patch(path, headers=org.headers(), json={"scopes": answer["narrowed"]})
    assert narrowed.status_code == 200 and narrowed.json()["scopes"] == ["keys:read"]


def _principal(credential: str, kind: CredentialKind = CredentialKind.API_KEY) -> Principal:
    return Principal(
        org_id="org_a",
        environment="live",
        space_id="spc_a",
        user_id="usr_a",
        scopes=ScopeSet(["*"]),
        credential_id=credential,
        credential_kind=kind,
    )


def test_a_flush_that_fails_keeps_its_counts_for_the_next(tmp_path: Path) -> None:
    clock = FakeClock()
    clock.current = datetime(2026, 1, 1, 23, 59, tzinfo=UTC)

    async def run() -> list[tuple[int, str, int]]:
        store = SqlStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'f.db'}")
        await upgrade(store.engine)
        tally = ScopeTally(lambda: clock.now().timestamp())
        for _ in range(3):
            tally.count(_principal("key_1"), ["keys:read", "clients:read"])

        class Down:
            def begin(self) -> Any:
                raise ServiceUnavailable()

        with pytest.raises(ServiceUnavailable):
            await tally.flush(Down())  # type: ignore[arg-type]
        clock.advance(120)  # the next day
        tally.count(_principal("key_1"), ["keys:read"])
        tally.count(_principal("", CredentialKind.ACCESS_TOKEN), ["keys:read"])  # no client
        assert await tally.flush(store) == 3
        assert await tally.flush(store) == 0  # nothing left, nothing written
        async with store.begin() as tx:
            rows = await tx.scope_uses("org_a", "live", "key_1", 0, 10**6)
        await store.close()
        return [(u.day, u.scope, u.count) for u in rows]

    day = day_of(datetime(2026, 1, 1, tzinfo=UTC))
    assert asyncio.run(run()) == [
        (day, "clients:read", 3),
        (day, "keys:read", 3),
        (day + 1, "keys:read", 1),
    ]


def test_two_processes_flushes_add_never_overwrite(tmp_path: Path) -> None:
    async def run() -> int:
        store = SqlStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
        await upgrade(store.engine)
        tallies = [ScopeTally() for _ in range(2)]
        for tally in tallies:  # two processes sharing one database
            for _ in range(5):
                tally.count(_principal("key_1"), ["keys:read"])
            await tally.flush(store)
        async with store.begin() as tx:
            rows = await tx.scope_uses("org_a", "live", "key_1", 0, 10**6)
        await store.close()
        return sum(u.count for u in rows)

    assert asyncio.run(run()) == 10


def test_counts_past_the_daily_retention_are_pruned(org: Org, clock: FakeClock) -> None:
    key = org.create_key(["keys:read"])
    org.client.get("/v1/keys", headers=org.headers(key["key"]))
    flush(org)
    assert len(stored(org, key["id"])) == 1
    later = clock.now() + org.runtime.settings.analytics_retention["day"] + timedelta(days=1)
    org.client.portal.call(org.runtime.analytics.prune, later)  # type: ignore[union-attr]
    assert stored(org, key["id"]) == []


def test_made_up_scopes_of_a_wildcard_key_mint_a_bounded_number_of_rows(
    org: Org, clock: FakeClock
) -> None:
    """Whoever holds a ``*`` key may ask the check for any scope: a credential is
    counted under at most ``MAX_SCOPES_A_DAY`` scopes a day, flushes or not."""
    from apiward.services.scope_usage import MAX_SCOPES_A_DAY

    key = org.create_key(["*"])
    auth = org.headers(key["key"])
    for n in range(MAX_SCOPES_A_DAY + 20):
        wanted = {"X-Apiward-Require": f"made{n}:up"}
        assert org.client.get("/v1/auth/check", headers={**auth, **wanted}).status_code == 200
        if n == 50:
            flush(org)
    c = org.client
    assert (
        c.get("/v1/auth/check", headers={**auth, "X-Apiward-Require": "made0:up"}).status_code
        == 200
    )
    flush(org)
    rows = stored(org, key["id"])
    assert len(rows) == MAX_SCOPES_A_DAY
    assert ("made0:up", 2) in {(scope, count) for _, scope, count in rows}
    assert org.runtime.scope_tally.dropped == 20
    clock.advance(86400)  # a new day counts anew
    assert (
        c.get("/v1/auth/check", headers={**auth, "X-Apiward-Require": "fresh:one"}).status_code
        == 200
    )
    flush(org)
    assert len(stored(org, key["id"])) == MAX_SCOPES_A_DAY + 1
