"""Verification analytics over HTTP: every path's decisions counted exactly, queried,
grouped, as CSV, and only ever for the caller's organisation and environment."""

from __future__ import annotations

import asyncio
import csv
import io
import tempfile
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apiward.adapters.http.app import create_app
from apiward.adapters.storage.migrate import upgrade
from apiward.adapters.storage.sql import SqlStore
from apiward.core import analytics
from apiward.core.analytics import OUTCOMES
from apiward.services.analytics import Verifications
from tests.conftest import Org, bootstrap, examples, fast_settings, migrated_sqlite

LIMITED = {
    "rate_limit_routes": [
        {
            "route": "/v1/keys",
            "methods": ["GET"],
            "limits": [{"name": "per-credential", "rate": "3/minute", "key": "credential"}],
        }
    ]
}


@pytest.fixture
def counted(tmp_path: Path) -> Iterator[Org]:
    settings = fast_settings(database_url=migrated_sqlite(tmp_path / "a.db"), **LIMITED)
    with TestClient(create_app(settings)) as c:
        yield bootstrap(c)


def made_key(org: Org, scopes: list[str]) -> dict[str, str]:
    """A key made by the operator in process: its creation is no request to count."""
    runtime = org.runtime

    async def run() -> dict[str, str]:
        principal = await runtime.operators.principal(org.id)
        created = await runtime.keys.create(principal, name="k", scopes=scopes)
        return {"id": created.key.id, "key": created.plaintext}

    made: dict[str, str] = org.client.portal.call(run)  # type: ignore[union-attr]
    return made


def flush(org: Org) -> None:
    org.client.portal.call(org.runtime.flush_analytics)  # type: ignore[union-attr]


def query(org: Org, key: str | None = None, **params: Any) -> Any:
    r = org.client.get("/v1/analytics/verifications", headers=org.headers(key), params=params)
    assert r.status_code == 200, r.text
    return r.json()


def totals(answer: dict[str, Any], field: str = "outcome") -> Counter[str]:
    seen: Counter[str] = Counter()
    for item in answer["items"]:
        seen[item[field]] += item["count"]
    return seen


def test_every_path_is_counted_by_key_route_and_outcome(counted: Org) -> None:
    org, c = counted, counted.client
    reader = org.create_key(["keys:read"], by=org.operator_key())
    revoked = org.create_key(["keys:read"], by=org.operator_key())
    c.post(f"/v1/keys/{revoked['id']}/revoke", headers=org.headers(org.operator_key()))
    flush(org)
    reader_key = org.headers(reader["key"])
    for _ in range(3):
        assert c.get("/v1/keys", headers=reader_key).status_code == 200  # require()
    assert c.get("/v1/clients", headers=reader_key).status_code == 403  # missing scope
    check = c.get("/v1/auth/check", headers={**reader_key, "X-Original-URI": "/v1/things?page=2"})
    assert check.status_code == 200  # forward auth, on the original path
    assert c.get("/v1/keys", headers=reader_key).status_code == 429  # its 3 a minute spent
    assert c.get("/v1/keys", headers=org.headers(revoked["key"])).status_code == 401
    assert c.get("/v1/keys", headers=org.headers("aw_live_" + "x" * 38)).status_code == 401
    flush(org)
    by_key = query(org, org.operator_key(), group_by="key,outcome,route", key_id=reader["id"])
    seen = {(i["route"], i["outcome"]): i["count"] for i in by_key["items"]}
    assert seen == {
        ("/v1/keys", "VALID"): 3,
        ("/v1/clients", "INSUFFICIENT_PERMISSIONS"): 1,
        ("*", "VALID"): 1,  # forward auth: under its route rule, here none
        ("/v1/keys", "RATE_LIMITED"): 1,
    }
    revoked_counts = query(org, org.operator_key(), key_id=revoked["id"])
    assert totals(revoked_counts) == {"REVOKED": 1}


def test_the_verify_api_and_client_grants_are_counted(counted: Org) -> None:
    org, c = counted, counted.client
    operator = org.operator_key()
    target = org.create_key(["things:read"], by=operator)
    verifier = org.create_key(["keys:verify"], by=operator)
    client = c.post(
        "/v1/clients", headers=org.headers(operator), json={"name": "c", "scopes": ["keys:read"]}
    ).json()
    flush(org)
    verify = org.headers(verifier["key"])
    c.post("/v1/keys/verify", headers=verify, json={"key": target["key"]})
    c.post("/v1/keys/verify", headers=verify, json={"key": target["key"], "scopes": ["x:y"]})
    grant = {
        "grant_type": "client_credentials",
        "client_id": client["client_id"],
        "client_secret": client["client_secret"],
    }
    assert c.post("/v1/auth/token", json=grant).status_code == 200
    flush(org)
    target_counts = query(org, operator, key_id=target["id"], group_by="outcome,route")
    assert {(i["route"], i["outcome"]): i["count"] for i in target_counts["items"]} == {
        ("/v1/keys/verify", "VALID"): 1,
        ("/v1/keys/verify", "INSUFFICIENT_PERMISSIONS"): 1,
    }
    grants = query(org, operator, client_id=client["client_id"], group_by="client,route")
    assert [(i["client_id"], i["route"], i["count"]) for i in grants["items"]] == [
        (client["client_id"], "/v1/auth/token", 1)
    ]


def test_top_consumers_csv_and_granularities(counted: Org) -> None:
    org, c = counted, counted.client
    operator = org.operator_key()
    keys = [made_key(org, ["keys:read"]) for _ in range(3)]
    flush(org)
    for n, made in enumerate(keys):
        for _ in range(n + 1):
            c.get("/v1/keys", headers=org.headers(made["key"]))
    flush(org)
    top = query(org, operator, group_by="key", limit=2, outcome="VALID", route="/v1/keys")
    assert [(i["key_id"], i["count"]) for i in top["items"]] == [
        (keys[2]["id"], 3),
        (keys[1]["id"], 2),
    ]
    for granularity in ("minute", "hour", "day"):
        answer = query(org, operator, granularity=granularity, since="2d", route="/v1/keys")
        assert answer["granularity"] == granularity
        assert totals(answer)["VALID"] == 6
    r = c.get(
        "/v1/analytics/verifications",
        headers={**org.headers(operator), "Accept": "text/csv"},
        params={"group_by": "key", "route": "/v1/keys", "outcome": "VALID"},
    )
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert {row["key_id"]: int(row["count"]) for row in rows} == {
        keys[0]["id"]: 1,
        keys[1]["id"]: 2,
        keys[2]["id"]: 3,
    }


def test_bad_queries_are_clear_400s(counted: Org) -> None:
    org = counted
    cases = [
        ({"since": "yesterday"}, "ISO time"),
        ({"granularity": "week"}, "granularity"),
        ({"group_by": "colour"}, "group_by"),
        ({"outcome": "MAYBE"}, "outcome"),
        ({"since": "1h", "until": "2h"}, "before"),
        ({"since": "60d", "granularity": "minute"}, "too many"),
        ({"limit": "0"}, "limit"),
    ]
    for params, words in cases:
        r = org.client.get("/v1/analytics/verifications", headers=org.headers(), params=params)
        assert r.status_code == 400, (params, r.text)
        assert words in r.json()["message"], (params, r.text)


def test_nobody_sees_another_orgs_or_environments_counts(counted: Org) -> None:
    org, c = counted, counted.client
    other = bootstrap(c, "Globex", "owner@globex.test", another=True)
    mine = org.create_key(["keys:read"], by=org.operator_key())
    for _ in range(2):
        c.get("/v1/keys", headers=org.headers(mine["key"]))
    flush(org)
    assert query(other, other.operator_key(), key_id=mine["id"])["items"] == []
    assert set(totals(query(other, other.operator_key(), since="1h"))) <= {"VALID"}
    test_view = query(org, org.operator_key("test"), key_id=mine["id"])
    assert test_view["items"] == []  # a test credential sees no live traffic
    assert totals(query(org, org.operator_key(), key_id=mine["id"]))["VALID"] == 2
    no_scope = c.get(
        "/v1/analytics/verifications", headers=org.headers(org.create_key(["keys:read"])["key"])
    )
    assert no_scope.status_code == 403


# --- exact for any sequence -------------------------------------------------------------

DECISION = st.tuples(
    st.integers(0, 180),  # seconds from the start: three minutes
    st.sampled_from(["org_a", "org_b", ""]),
    st.sampled_from(["key_1", "key_2", ""]),
    st.sampled_from(["/v1/keys", "/v1/things"]),
    st.sampled_from(OUTCOMES[:4]),
)


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(DECISION, max_size=60), st.integers(1, 4))
def test_property_the_stored_totals_equal_the_decisions_made(
    decisions: list[tuple[int, str, str, str, str]], flushes: int
) -> None:
    """Counted in any order, flushed any number of times, the query totals are exact in
    every granularity."""
    start = 1_767_225_600  # a day's start, so the hour and day buckets hold all of it
    now = [float(start)]

    async def run() -> None:
        with tempfile.TemporaryDirectory() as folder:
            store = SqlStore.from_url(f"sqlite+aiosqlite:///{folder}/p.db")
            await upgrade(store.engine)
            recorder = Verifications(lambda: now[0])
            chunk = max(1, len(decisions) // flushes)
            for i, (at, org, key, route, outcome) in enumerate(decisions):
                now[0] = start + at
                recorder.count(org, "live", outcome, key_id=key, route=route)
                if (i + 1) % chunk == 0:
                    await recorder.flush(store)
            await recorder.flush(store)
            expected = Counter(
                (org, key, route, outcome) for _, org, key, route, outcome in decisions
            )
            for granularity in ("minute", "hour", "day"):
                q = analytics.query(
                    since=datetime.fromtimestamp(start, UTC).isoformat(),
                    until=(datetime.fromtimestamp(start, UTC) + timedelta(hours=1)).isoformat(),
                    granularity=granularity,
                    group_by="key,route,outcome",
                    now=datetime.fromtimestamp(start, UTC),
                )
                for org in ("org_a", "org_b", ""):
                    async with store.begin() as tx:
                        rows = await tx.verification_counts(org, "live", q)
                    got: Counter[tuple[str, str, str, str]] = Counter()
                    for row in rows:
                        got[(org, row.key_id, row.route, row.outcome)] += row.count
                    wanted = Counter({k: n for k, n in expected.items() if k[0] == org})
                    assert got == wanted, (granularity, org)
            await store.close()

    asyncio.run(run())


def test_forward_auth_counts_under_route_rules_so_paths_mint_no_rows(counted: Org) -> None:
    """A client choosing paths (or an unknown one sending garbage) cannot grow the
    counts: forward auth is counted under the route rule the path falls under."""
    org, c = counted, counted.client
    key = made_key(org, ["keys:read"])
    for i in range(20):
        for credential in (key["key"], "aw_live_" + "z" * 38):
            c.get(
                "/v1/auth/check",
                headers={**org.headers(credential), "X-Original-URI": f"/v1/keys/x{i}/y"},
            )
        c.get("/v1/auth/check", headers={**org.headers(key["key"]), "X-Original-URI": "/v1/keys"})
    flush(org)

    async def rows() -> list[tuple[str, str, int]]:
        async with org.runtime.store.begin() as tx:
            q = analytics.query(
                since="1h",
                until=None,
                granularity="minute",
                group_by="route,outcome",
                now=datetime.now(UTC),
            )
            found = await tx.verification_counts(org.id, "live", q)
            unknown = await tx.verification_counts("", "", q)
        return [(r.route, r.outcome, r.count) for r in [*found, *unknown]]

    seen = org.client.portal.call(rows)  # type: ignore[union-attr]
    assert sorted(seen) == [
        ("*", "NOT_FOUND", 20),
        ("*", "VALID", 20),
        ("/v1/keys", "RATE_LIMITED", 17),  # the rule's 3 a minute hold on forward auth too
        ("/v1/keys", "VALID", 3),
    ]


def test_a_flush_that_fails_keeps_its_counts_for_the_next(tmp_path: Path) -> None:
    from apiward.core.errors import ServiceUnavailable

    async def run() -> int:
        store = SqlStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'f.db'}")
        await upgrade(store.engine)
        recorder = Verifications(lambda: 1_767_225_600.0)
        for _ in range(3):
            recorder.count("org_a", "live", "VALID", key_id="key_1", route="/v1/keys")

        class Down:
            def begin(self) -> Any:
                raise ServiceUnavailable()

        with pytest.raises(ServiceUnavailable):
            await recorder.flush(Down())  # type: ignore[arg-type]
        recorder.count("org_a", "live", "VALID", key_id="key_1", route="/v1/keys")
        await recorder.flush(store)
        q = analytics.query(
            since="2026-01-01T00:00:00Z",
            until="2026-01-01T01:00:00Z",
            granularity="minute",
            group_by="outcome",
            now=datetime(2026, 1, 1, 1, tzinfo=UTC),
        )
        async with store.begin() as tx:
            rows = await tx.verification_counts("org_a", "live", q)
        await store.close()
        return sum(r.count for r in rows)

    assert asyncio.run(run()) == 4


@pytest.mark.parametrize("granularity", ["minute", "hour", "day"])
def test_a_query_in_a_buckets_first_second_counts_that_bucket(
    tmp_path: Path, granularity: str
) -> None:
    """Asked "until now" within the first second of a bucket, the query includes the
    bucket's decisions (an until of 00:00:00.5 is after a bucket that starts at 00:00:00)."""
    start = 1_767_225_600  # a day's start: the first second of a minute, an hour and a day

    async def run() -> int:
        store = SqlStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'b.db'}")
        await upgrade(store.engine)
        recorder = Verifications(lambda: start + 0.2)
        recorder.count("org_a", "live", "VALID", key_id="key_1", route="/v1/keys")
        await recorder.flush(store)
        now = datetime.fromtimestamp(start + 0.5, UTC)
        q = analytics.query(
            since="2d", until=None, granularity=granularity, group_by="outcome", now=now
        )
        async with store.begin() as tx:
            rows = await tx.verification_counts("org_a", "live", q)
        await store.close()
        return sum(r.count for r in rows)

    assert asyncio.run(run()) == 1
