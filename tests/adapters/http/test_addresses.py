"""Shared keys noticed and impact before a change: the networks each key's and client's
allowed requests came from, counted per day in memory, flushed with the analytics, read
back per credential (never a full address, never another tenant's), announced past an
organisation's threshold once a day, and weighed against a proposed change."""

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
from apiward.core.addresses import EXACT_CAP
from apiward.core.errors import ServiceUnavailable
from apiward.core.models import AuditFilter, CredentialKind, PageRequest, Principal, RequestContext
from apiward.core.scope_usage import day_of
from apiward.core.scopes import ScopeSet
from apiward.services.addresses import AddressTally
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


def call(org: Org, fn: Any, *args: Any) -> Any:
    return org.client.portal.call(fn, *args)  # type: ignore[union-attr]


def flush_all(org: Org) -> None:
    call(org, org.runtime.flush_analytics)
    call(org, org.runtime.flush_scope_usage)
    call(org, org.runtime.flush_addresses)


def verify(org: Org, verifier: str, key: str, ip: str, scopes: list[str] | None = None) -> None:
    body: dict[str, Any] = {"key": key, "ip": ip}
    if scopes:
        body["scopes"] = scopes
    r = org.client.post("/v1/keys/verify", headers=org.headers(verifier), json=body)
    assert r.json()["valid"] is True, r.text


def addresses(org: Org, path: str, **params: str) -> Any:
    r = org.client.get(f"{path}/addresses", headers=org.headers(), params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_requests_are_counted_by_network_never_by_address(org: Org) -> None:
    key = org.create_key(["keys:read"])
    verifier = org.create_key(["keys:verify"])["key"]
    for ip in ("10.0.0.1", "10.0.0.2", "::ffff:10.0.0.3", "10.0.1.9", "2001:db8:7:1::5"):
        verify(org, verifier, key["key"], ip)
    assert addresses(org, f"/v1/keys/{key['id']}")["days"] == []  # nothing written yet
    flush_all(org)
    r = org.client.get(f"/v1/keys/{key['id']}/addresses", headers=org.headers())
    (day,) = r.json()["days"]
    assert day["day"] == "2026-12-01"
    assert (day["requests"], day["networks"], day["networks_exact"]) == (5, 3, True)
    assert day["countries"] is None  # no country source configured
    assert [(n["prefix"], n["requests"]) for n in day["top"]] == [
        ("10.0.0.0/24", 3),
        ("10.0.1.0/24", 1),
        ("2001:db8:7::/48", 1),
    ]
    for full in ("10.0.0.1", "10.0.0.2", "10.0.1.9", "2001:db8:7:1::5"):
        assert full not in r.text


def test_past_the_cap_networks_are_estimated_and_requests_still_counted(org: Org) -> None:
    key = org.create_key(["keys:read"])
    verifier = org.create_key(["keys:verify"])["key"]
    distinct = EXACT_CAP + 100
    for i in range(distinct):
        verify(org, verifier, key["key"], f"10.{i // 256}.{i % 256}.1")
    flush_all(org)
    (day,) = addresses(org, f"/v1/keys/{key['id']}")["days"]
    assert day["networks_exact"] is False
    assert abs(day["networks"] - distinct) <= 0.15 * distinct
    assert len(day["top"]) == EXACT_CAP
    assert day["unlisted_requests"] == 100
    assert day["requests"] == distinct


def test_the_days_follow_the_injected_clock_and_since(org: Org, clock: FakeClock) -> None:
    key = org.create_key(["keys:read"])
    verifier = org.create_key(["keys:verify"])["key"]
    verify(org, verifier, key["key"], "192.0.2.1")
    clock.advance(86_400)
    verify(org, verifier, key["key"], "198.51.100.1")
    verify(org, verifier, key["key"], "192.0.2.77")
    flush_all(org)
    days = addresses(org, f"/v1/keys/{key['id']}")["days"]
    assert [(d["day"], d["networks"]) for d in days] == [("2026-12-01", 1), ("2026-12-02", 2)]
    recent = addresses(org, f"/v1/keys/{key['id']}", since="2026-12-02")["days"]
    assert [d["day"] for d in recent] == ["2026-12-02"]


def test_a_clients_tokens_count_under_the_client(org: Org) -> None:
    c = org.client
    made = c.post(
        "/v1/clients", headers=org.headers(), json={"name": "c", "scopes": ["keys:read"]}
    ).json()
    r = c.post(
        "/v1/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": made["client_id"],
            "client_secret": made["client_secret"],
        },
    )
    token = r.json()["access_token"]

    async def request_from(ip: str) -> None:  # the one authentication every route runs
        await org.runtime.auth.authenticate(f"Bearer {token}", RequestContext(ip=ip))

    call(org, request_from, "10.9.8.7")
    flush_all(org)
    (day,) = addresses(org, f"/v1/clients/{made['client_id']}")["days"]
    assert [n["prefix"] for n in day["top"]] == ["10.9.8.0/24"]


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"ip_allow": "10.0.0.0/33"}, "ip_allow"),
        ({"ip_allow": "nowhere"}, "ip_allow"),
        ({"scopes": ",".join(f"s{i}:read" for i in range(101))}, "at most 100 scopes"),
        ({"ip_allow": ",".join(f"10.{i}.0.0/16" for i in range(101))}, "at most 100 networks"),
    ],
)
def test_a_bad_proposal_is_a_clear_400(org: Org, params: dict[str, str], words: str) -> None:
    key = org.create_key(["keys:read"])
    r = org.client.get(f"/v1/keys/{key['id']}/impact", headers=org.headers(), params=params)
    assert r.status_code == 400, r.text
    assert words in r.json()["message"]


def test_impact_of_revoking_narrowing_and_an_allow_list(org: Org) -> None:
    key = org.create_key(["keys:read", "clients:read"])
    verifier = org.create_key(["keys:verify"])["key"]
    for _ in range(6):
        verify(org, verifier, key["key"], "10.0.0.1", ["keys:read"])
    for _ in range(4):
        verify(org, verifier, key["key"], "2001:db8::1", ["clients:read"])
    flush_all(org)
    path = f"/v1/keys/{key['id']}/impact"
    revoke = org.client.get(path, headers=org.headers()).json()
    assert (revoke["requests"], revoke["refused_at_least"], revoke["refused_at_most"]) == (
        10,
        10,
        10,
    )
    assert revoke["exact"] is True and sum(r["requests"] for r in revoke["by_route"]) == 10
    narrow = org.client.get(path, headers=org.headers(), params={"scopes": "keys:read"}).json()
    assert (narrow["refused_at_least"], narrow["refused_at_most"]) == (4, 4)
    assert narrow["by_scope"] == [{"name": "clients:read", "requests": 4, "verdict": "refused"}]
    allow = org.client.get(path, headers=org.headers(), params={"ip_allow": "10.0.0.0/8"}).json()
    assert (allow["refused_at_least"], allow["refused_at_most"], allow["exact"]) == (4, 4, True)
    assert allow["by_network"] == [{"name": "2001:db8::/48", "requests": 4, "verdict": "refused"}]
    partly = org.client.get(
        path, headers=org.headers(), params={"ip_allow": "10.0.0.0/25,2001:db8::/32"}
    ).json()
    assert (partly["refused_at_least"], partly["refused_at_most"]) == (0, 6)
    assert partly["by_network"][0]["verdict"] == "unknown"


def test_another_organisations_or_environments_credentials_are_not_found(org: Org) -> None:
    key = org.create_key(["keys:read"])
    test_key = org.create_key(["keys:read"], env="test")
    for path in (f"/v1/keys/{key['id']}/addresses", f"/v1/keys/{key['id']}/impact"):
        r = org.client.get(path, headers=org.headers(org.owner_test_key))
        assert r.status_code == 404, r.text
    r = org.client.get(f"/v1/keys/{test_key['id']}/addresses", headers=org.headers())
    assert r.status_code == 404
    reader = org.create_key(["analytics:read"])
    r = org.client.get(f"/v1/keys/{key['id']}/addresses", headers=org.headers(reader["key"]))
    assert r.status_code == 403  # keys:read is needed, as for the key itself


def test_an_organisations_threshold_announces_a_shared_key_once_a_day_and_disables_it(
    org: Org, clock: FakeClock
) -> None:
    own = {"shared_networks": 3, "shared_disable": True}
    r = org.client.patch("/v1/org", headers=org.headers(), json={"key_hygiene": own})
    assert r.status_code == 200, r.text
    assert r.json()["key_hygiene_in_force"]["shared_networks"] == 3
    key = org.create_key(["keys:read"])
    calm = org.create_key(["keys:read"])
    verifier = org.create_key(["keys:verify"])["key"]
    for ip in ("10.0.0.1", "10.0.1.1", "10.0.2.1"):
        verify(org, verifier, key["key"], ip)
    for ip in ("10.0.0.1", "10.0.1.1"):
        verify(org, verifier, calm["key"], ip)
    flush_all(org)
    sent = call(org, org.runtime.hygiene.run)
    assert sent["key.anomaly"] == 1
    assert call(org, org.runtime.hygiene.run).get("key.anomaly", 0) == 0  # once a day

    async def events() -> list[Any]:
        async with org.runtime.store.begin() as tx:
            page = await tx.list_audit(org.id, AuditFilter(), PageRequest(1, 100))
        return [e for e in page.items if e.type == "key.anomaly"]

    (event,) = call(org, events)
    assert event.target_id == key["id"]
    assert event.data["networks"] == 3 and event.data["day"] == "2026-12-01"
    assert event.data["disabled"] is True
    got = org.client.get(f"/v1/keys/{key['id']}", headers=org.headers()).json()
    assert got["disabled_at"] is not None
    r = org.client.get("/v1/keys", headers=org.headers(key["key"]))
    assert r.status_code == 401  # refused at once: the cache was invalidated


def test_a_flush_that_fails_keeps_its_counts_for_the_next(tmp_path: Path) -> None:
    clock = FakeClock()
    clock.current = datetime(2026, 1, 1, 23, 59, tzinfo=UTC)

    def principal(ip: str) -> Principal:
        return Principal(
            org_id="org_a",
            environment="live",
            space_id="spc_a",
            user_id="usr_a",
            scopes=ScopeSet(["*"]),
            credential_id="key_1",
            credential_kind=CredentialKind.API_KEY,
            context=RequestContext(ip=ip),
        )

    async def run() -> tuple[list[tuple[int, str, int]], int]:
        store = SqlStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'f.db'}")
        await upgrade(store.engine)
        tally = AddressTally(lambda: clock.now().timestamp())
        for i in range(EXACT_CAP + 5):
            tally.count(principal(f"10.0.{i}.1"))

        class Down:
            def begin(self) -> Any:
                raise ServiceUnavailable()

        with pytest.raises(ServiceUnavailable):
            await tally.flush(Down())  # type: ignore[arg-type]
        tally.count(principal("10.0.0.2"))
        assert await tally.flush(store) == EXACT_CAP + 1  # the rows and one overflow
        assert await tally.flush(store) == 0
        async with store.begin() as tx:
            rows = await tx.address_uses("org_a", "live", "key_1", 0, 10**6)
            (over,) = await tx.address_overflows("org_a", "live", "key_1", 0, 10**6)
        await store.close()
        return [(u.day, u.prefix, u.count) for u in rows[:2]], over.requests

    day = day_of(datetime(2026, 1, 1, tzinfo=UTC))
    rows, overflowed = asyncio.run(run())
    assert rows == [(day, "10.0.0.0/24", 2), (day, "10.0.1.0/24", 1)]
    assert overflowed == 5


def test_counts_past_the_daily_retention_are_pruned(org: Org, clock: FakeClock) -> None:
    key = org.create_key(["keys:read"])
    verifier = org.create_key(["keys:verify"])["key"]
    for i in range(EXACT_CAP + 1):  # a row per network, and an overflow
        verify(org, verifier, key["key"], f"10.0.{i}.1")
    flush_all(org)

    async def kept() -> tuple[int, int]:
        async with org.runtime.store.begin() as tx:
            rows = await tx.address_uses(org.id, "live", key["id"], 0, 10**6)
            over = await tx.address_overflows(org.id, "live", key["id"], 0, 10**6)
        return len(rows), len(over)

    assert call(org, kept) == (EXACT_CAP, 1)
    later = clock.now() + org.runtime.settings.analytics_retention["day"] + timedelta(days=1)
    call(org, org.runtime.analytics.prune, later)
    assert call(org, kept) == (0, 0)


def test_every_door_reads_the_client_and_its_country_alike(
    database_url: str, clock: FakeClock
) -> None:
    """A request through a trusted proxy is counted under the end client's network and
    the country the proxy's header names, whichever door it came through: forward auth
    on its fast path and through its route, and a protected route. The verify API counts
    the address its caller names, never the caller's own country."""
    settings = fast_settings(
        database_url=database_url, trusted_proxies=["10.0.0.0/8"], country_header="CF-IPCountry"
    )
    app = create_app(settings, clock=clock)
    with TestClient(app, client=("10.0.0.2", 40000), raise_server_exceptions=False) as client:
        org = bootstrap(client)
        key = org.create_key(["things:read", "keys:read"])
        verifier = org.create_key(["keys:verify"])["key"]

        def sent(address: str, country: str) -> dict[str, str]:
            return {
                **org.headers(key["key"]),
                "X-Forwarded-For": address,
                "CF-IPCountry": country,
                "X-Original-URI": "/v1/things",
            }

        fast = client.get("/v1/auth/check", headers=sent("203.0.113.7", "GH"))
        routed = client.get(
            "/v1/auth/check", params={"scope": "things:read"}, headers=sent("198.51.100.7", "SL")
        )
        guarded = client.get("/v1/keys", headers=sent("192.0.2.7", "DE"))
        assert [r.status_code for r in (fast, routed, guarded)] == [200, 200, 200]
        asked = client.post(
            "/v1/keys/verify",
            headers={**org.headers(verifier), "CF-IPCountry": "FR"},
            json={"key": key["key"], "ip": "100.64.0.7"},
        )
        assert asked.json()["valid"] is True, asked.text
        flush_all(org)
        (day,) = addresses(org, f"/v1/keys/{key['id']}")["days"]
    assert sorted((n["prefix"], n["country"]) for n in day["top"]) == [
        ("100.64.0.0/24", None),
        ("192.0.2.0/24", "DE"),
        ("198.51.100.0/24", "SL"),
        ("203.0.113.0/24", "GH"),
    ]
