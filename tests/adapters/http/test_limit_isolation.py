"""No tenant spends, poisons or resets a limiter bucket another tenant depends on: a key's
own limits count in that key's buckets, values the verify API's caller asserts count
within the caller's organisation, and periods are bounded (docs/authority.md)."""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from apiward.adapters.http.app import create_app
from apiward.adapters.settings import ConfigError
from tests.adapters.limiter.conftest import start_private_redis
from tests.conftest import Org, bootstrap, examples, fast_settings, require_postgres

IP = "203.0.113.77"
ROUTE = "/v1/things"
PLAN: dict[str, Any] = {
    "rate_limits": [
        {"name": "per-ip", "rate": "100/minute", "key": "ip"},
        {"name": "per-route", "rate": "1000/minute", "key": "route"},
    ],
    "trusted_proxies": ["127.0.0.1/32"],
}
FROM_PROXY = {"X-Forwarded-For": IP, "X-Original-URI": ROUTE}


def tenants(tmp_path: Path, **settings: Any) -> Iterator[tuple[Org, Org]]:
    merged = {**PLAN, **settings}
    app = create_app(
        fast_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'i.db'}", **merged)
    )
    # The peer is a trusted proxy, so forward auth believes X-Forwarded-For.
    with TestClient(app, client=("127.0.0.1", 50000)) as client:
        a = bootstrap(client, "Tenant A", "a@a.test", another=True)
        b = bootstrap(client, "Tenant B", "b@b.test", another=True)
        yield a, b


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[Org, Org]]:
    yield from tenants(tmp_path)


def verify(org: Org, verifier: str, key: str, **asked: str) -> dict[str, Any]:
    r = org.client.post(
        "/v1/keys/verify", headers=org.headers(verifier), json={"key": key, **asked}
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def own_limits(rate: str) -> list[dict[str, str]]:
    return [
        {"name": "per-ip", "rate": rate, "key": "ip"},
        {"name": "per-route", "rate": rate, "key": "route"},
    ]


def test_a_tenants_own_limit_of_a_plans_name_never_locks_out_another_tenant(
    two: tuple[Org, Org],
) -> None:
    a, b = two
    strict = a.create_key(["things:read"], rate_limits=own_limits("1/day"))["key"]
    verifier_a = a.create_key(["keys:verify"])["key"]
    assert verify(a, verifier_a, strict, ip=IP, route=ROUTE)["valid"] is True
    again = verify(a, verifier_a, strict, ip=IP, route=ROUTE)
    assert again["code"] == "RATE_LIMITED"  # the tenant's own limit holds for its key
    # Through forward auth too: the key's own limits count its own traffic.
    r = a.client.get("/v1/auth/check", headers={**a.headers(strict), **FROM_PROXY})
    assert r.status_code == 429

    b_key = b.create_key(["things:read"])["key"]
    verifier_b = b.create_key(["keys:verify"])["key"]
    answer = verify(b, verifier_b, b_key, ip=IP, route=ROUTE)
    assert answer["valid"] is True and answer["ratelimit"]["remaining"] >= 98
    r = b.client.get("/v1/auth/check", headers={**b.headers(b_key), **FROM_PROXY})
    assert r.status_code == 200 and int(r.headers["x-ratelimit-remaining"]) >= 98


def test_a_period_past_the_maximum_is_refused_naming_the_field(two: tuple[Org, Org]) -> None:
    a, _ = two
    for method, path in (("POST", "/v1/keys"), ("PATCH", None)):
        if path is None:
            path = f"/v1/keys/{a.create_key(['things:read'])['id']}"
        body = {"name": "k", "scopes": ["things:read"], "rate_limits": own_limits("1/99999day")}
        r = a.client.request(method, path, headers=a.headers(), json=body)
        assert r.status_code == 400, r.text
        message = r.json()["message"]
        assert "rate_limits" in message and "'1/99999day'" in message and "1 day" in message


def test_ips_and_routes_the_verify_api_names_count_within_the_callers_org(
    tmp_path: Path,
) -> None:
    plan = [
        {"name": "per-ip", "rate": "3/minute", "key": "ip"},
        {"name": "per-route", "rate": "5/minute", "key": "route"},
    ]
    # The management calls are exempt, so only the keys verified are counted.
    exempt = [{"route": "/v1/keys*", "exempt": True}]
    for a, b in tenants(tmp_path, rate_limits=plan, rate_limit_routes=exempt):
        a_key = a.create_key(["things:read"])["key"]
        verifier_a = a.create_key(["keys:verify"])["key"]
        answers = [verify(a, verifier_a, a_key, ip=IP, route=ROUTE)["code"] for _ in range(4)]
        assert answers == ["VALID", "VALID", "VALID", "RATE_LIMITED"]

        b_key = b.create_key(["things:read"])["key"]
        verifier_b = b.create_key(["keys:verify"])["key"]
        answer = verify(b, verifier_b, b_key, ip=IP, route=ROUTE)
        assert answer["valid"] is True and answer["ratelimit"]["remaining"] == 2
        # Real traffic from that address, through the proxy: the deployment-wide bucket,
        # which tenant A's assertions never touched.
        r = b.client.get("/v1/auth/check", headers={**b.headers(b_key), **FROM_PROXY})
        assert r.status_code == 200 and r.headers["x-ratelimit-remaining"] == "2"
        # ... and which every tenant's real traffic shares, as the operator meant.
        for _ in range(2):
            r = a.client.get("/v1/auth/check", headers={**a.headers(a_key), **FROM_PROXY})
            assert r.status_code == 200
        r = b.client.get("/v1/auth/check", headers={**b.headers(b_key), **FROM_PROXY})
        assert r.status_code == 429


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("rate_limits", [{"name": "per-ip", "rate": "1/2days", "key": "ip"}]),
        ("rate_limit_tiers", {"pro": {"limits": [{"name": "org", "rate": "9/99999day"}]}}),
        ("rate_limit_routes", [{"route": "/v1/x", "limits": [{"name": "x", "rate": "1/25h"}]}]),
        ("auth_failure_limit", "100/2days"),
        ("portal_ip_limit", "10/2days"),
        ("login_failure_window_seconds", 86401),
    ],
)
def test_a_setting_with_a_period_past_the_maximum_fails_validation(
    setting: str, value: object
) -> None:
    with pytest.raises(ConfigError) as raised:
        fast_settings(**{setting: value})
    text = str(raised.value)
    assert setting in text and ("at most 1 day" in text or "86400" in text)


# --- the property: nothing tenant A does moves tenant B's decisions ------------------

ISOLATION_PLAN: dict[str, Any] = {
    "rate_limits": [
        {"name": "per-ip", "rate": "4/hour", "key": "ip"},
        {"name": "per-route", "rate": "6/hour", "key": "route"},
        {"name": "per-org", "rate": "50/hour", "key": "org"},
        {"name": "per-key", "rate": "5/hour", "key": "credential"},
    ],
    # The management calls themselves (made from one address) are not counted.
    "rate_limit_routes": [{"route": "/v1/keys*", "exempt": True}],
    "trusted_proxies": ["127.0.0.1/32"],
}
NAMES = ["per-ip", "per-route", "per-org", "per-key", "mine"]
RATES = ["1/day", "1/second", "3/hour", "1000/minute", "2/15minutes"]
KINDS = ["org", "credential", "ip", "user", "route"]

limits_st = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.sampled_from(NAMES),
            "rate": st.sampled_from(RATES),
            "key": st.sampled_from(KINDS),
        }
    ),
    max_size=3,
    unique_by=lambda limit: limit["name"],
)
# What tenant A may name: tenant B's address and route, its own, long ones, none.
asserted_st = st.sampled_from(["b", "a", "long", None])
a_ops = st.one_of(
    st.tuples(st.just("key"), limits_st),
    st.tuples(st.just("patch"), st.integers(0, 5), limits_st),
    st.tuples(st.just("verify"), st.integers(0, 5), asserted_st, asserted_st),
    st.tuples(st.just("verify-unknown"), asserted_st, asserted_st),
    st.tuples(st.just("check"), st.integers(0, 5)),
)
b_ops = st.sampled_from([("b-verify",), ("b-check",)])
ops_st = st.lists(st.one_of(a_ops, b_ops), min_size=1, max_size=14)


class World:
    """One run: tenant B's key and verifier, B's client address and route, and
    (when present) tenant A with its keys, its own address and route."""

    def __init__(self, client: TestClient, n: int, *, with_a: bool) -> None:
        self.client = client
        self.b = bootstrap(client, f"B{n}", f"b{n}@b.test", another=True)
        self.b_key = self.b.create_key(["things:read"])["key"]
        self.b_verifier = self.b.create_key(["keys:verify"])["key"]
        self.values = {
            "b": (f"2001:db8:b::{n:x}", f"/v1/things/{n}"),
            "a": (f"2001:db8:a::{n:x}", f"/v1/a/{n}"),
            "long": ("x" * 64, "/" + "r" * 500),
        }
        self.a = bootstrap(client, f"A{n}", f"a{n}@a.test", another=True) if with_a else None
        self.a_keys: list[dict[str, Any]] = []
        self.a_verifier = self.a.create_key(["keys:verify"])["key"] if self.a else ""

    def a_key(self, i: int) -> dict[str, Any]:
        assert self.a is not None
        if not self.a_keys:
            self.a_keys.append(self.a.create_key(["things:read"]))
        return self.a_keys[i % len(self.a_keys)]

    def asserted(self, ip: str | None, route: str | None) -> dict[str, str]:
        out = {}
        if ip is not None:
            out["ip"] = self.values[ip][0]
        if route is not None:
            out["route"] = self.values[route][1]
        return out

    def check(self, key: str, where: str) -> tuple[object, ...]:
        ip, route = self.values[where]
        headers = {"Authorization": f"Bearer {key}", "X-Forwarded-For": ip, "X-Original-URI": route}
        r = self.client.get("/v1/auth/check", headers=headers)
        return (
            r.status_code,
            r.headers.get("x-ratelimit-limit"),
            r.headers.get("x-ratelimit-remaining"),
        )

    def run(self, op: tuple[Any, ...]) -> tuple[object, ...] | None:
        """Do one operation; tenant B's decision, or None for tenant A's."""
        kind = op[0]
        if kind == "b-verify":
            answer = verify(self.b, self.b_verifier, self.b_key, **self.asserted("b", "b"))
            limit = answer["ratelimit"] or {}
            return (answer["code"], limit.get("limit"), limit.get("remaining"))
        if kind == "b-check":
            return self.check(self.b_key, "b")
        a = self.a
        assert a is not None
        if kind == "key":
            r = a.client.post(
                "/v1/keys",
                headers=a.headers(),
                json={"name": "a", "scopes": ["things:read"], "rate_limits": op[1]},
            )
            assert r.status_code == 201, r.text
            self.a_keys.append(r.json())
        elif kind == "patch":
            path = f"/v1/keys/{self.a_key(op[1])['id']}"
            r = a.client.patch(path, headers=a.headers(), json={"rate_limits": op[2]})
            assert r.status_code == 200, r.text
        elif kind == "verify":
            verify(a, self.a_verifier, self.a_key(op[1])["key"], **self.asserted(op[2], op[3]))
        elif kind == "verify-unknown":
            verify(a, self.a_verifier, "aw_live_" + "0" * 38, **self.asserted(op[1], op[2]))
        else:  # real traffic of A's own clients, from A's address to A's route
            self.check(self.a_key(op[1])["key"], "a")
        return None


@pytest.fixture(
    params=[
        "sqlite-memory",
        pytest.param("postgres-redis", marks=[pytest.mark.postgres, pytest.mark.redis]),
    ]
)
def isolation_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    """The property on SQLite with the in-process limiter, and on PostgreSQL with Redis."""
    with ExitStack() as stack:
        redis_url = None
        database_url = f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"
        if request.param == "postgres-redis":
            server = start_private_redis(tmp_path)
            stack.callback(server.kill)
            redis_url = server.url
            database_url = require_postgres()
        settings = fast_settings(
            database_url=database_url,
            redis_url=redis_url,
            rate_limit_failure_mode="closed",  # a Redis fault fails loudly, never falls back
            **ISOLATION_PLAN,
        )
        app = create_app(settings)
        yield stack.enter_context(TestClient(app, client=("127.0.0.1", 50000)))


def test_property_tenant_b_decides_alike_whatever_tenant_a_does(
    isolation_app: TestClient,
) -> None:
    """For any sequence of tenant A's operations (keys with any own limits, changes to
    them, verify calls naming any address and route, real traffic), tenant B's decisions
    are those of a run without A: each run has its own tenants and B's values are fresh
    in each, so the run without A sees buckets nobody else touched."""
    runs = itertools.count()

    @settings(max_examples=examples(8), deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(ops_st)
    def check(ops: list[tuple[Any, ...]]) -> None:
        with_a = World(isolation_app, next(runs), with_a=True)
        decided = [with_a.run(op) for op in ops]
        alone = World(isolation_app, next(runs), with_a=False)
        expected = [alone.run(op) for op in ops if op[0].startswith("b-")]
        assert [d for d in decided if d is not None] == expected

    check()


# --- the same with a small in-process table that tenant A fills ----------------------

TABLE = 300
"""Small enough for tenant A to fill in a few requests; big enough that tenant B's six
buckets stay within its fair share (270 divided among the owners of every run of the
test so far: at most 26 here)."""
FLOOD_PLAN: dict[str, Any] = {
    **ISOLATION_PLAN,
    "rate_limits": [
        {"name": "per-ip", "rate": "4/hour", "key": "ip"},
        {"name": "per-route", "rate": "6/hour", "key": "route"},
        # Generous, so that tenant A's many requests are admitted and make buckets.
        {"name": "per-org", "rate": "100000/hour", "key": "org"},
        {"name": "per-key", "rate": "10000/hour", "key": "credential"},
    ],
}
# Many buckets at once: verify calls naming new addresses and routes, new keys verified
# once each, real traffic from new addresses to new routes.
floods = st.tuples(
    st.just("flood"), st.sampled_from(["asserted", "keys", "traffic"]), st.integers(10, 40)
)
flood_ops_st = st.lists(st.one_of(a_ops, floods, b_ops), min_size=1, max_size=10)


class Flooding(World):
    """A run in which tenant A may also make many buckets at once."""

    def __init__(self, client: TestClient, n: int, *, with_a: bool) -> None:
        super().__init__(client, n, with_a=with_a)
        self.n = n
        self.made = itertools.count()
        self.flooder = self.a.create_key(["things:read"])["key"] if self.a else ""
        """A key of A's without limits of its own, which its other operations leave alone."""

    def fresh(self) -> tuple[str, str]:
        """An address and a route no run has used."""
        j = next(self.made)
        return f"2001:db8:f:{self.n:x}::{j:x}", f"/v1/flood/{self.n}/{j}"

    def run(self, op: tuple[Any, ...]) -> tuple[object, ...] | None:
        if op[0] != "flood":
            return super().run(op)
        a, (_, how, count) = self.a, op
        assert a is not None
        for _ in range(count if how != "keys" else count // 4):
            ip, route = self.fresh()
            if how == "asserted":
                verify(a, self.a_verifier, self.flooder, ip=ip, route=route)
            elif how == "keys":
                self.a_keys.append(a.create_key(["things:read"]))
                verify(a, self.a_verifier, self.a_keys[-1]["key"])
            else:
                headers = {
                    "Authorization": f"Bearer {self.flooder}",
                    "X-Forwarded-For": ip,
                    "X-Original-URI": route,
                }
                assert self.client.get("/v1/auth/check", headers=headers).status_code == 200
        return None


@pytest.fixture
def small_table_app(tmp_path: Path) -> Iterator[TestClient]:
    settings = fast_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 't.db'}",
        rate_limit_max_keys=TABLE,
        **FLOOD_PLAN,
    )
    with TestClient(create_app(settings), client=("127.0.0.1", 50000)) as client:
        yield client


def test_property_tenant_a_filling_the_limiter_table_never_evicts_tenant_bs_buckets(
    small_table_app: TestClient,
) -> None:
    """However many buckets tenant A makes in a small in-process table (verify calls
    naming new addresses and routes, new keys, traffic from new addresses to new
    routes), tenant B's decisions are those of a run without A: the table gives up A's
    buckets, never B's, which are within B's fair share."""
    runs = itertools.count()
    limiter = small_table_app.app.state.runtime.limiter  # type: ignore[attr-defined]

    @settings(max_examples=examples(5), deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(flood_ops_st)
    @example(
        [
            ("b-verify",),
            ("b-check",),
            ("b-verify",),
            ("flood", "asserted", 60),
            ("flood", "traffic", 60),
            ("b-verify",),
            ("flood", "keys", 60),
            ("flood", "asserted", 60),
            ("b-verify",),
            ("b-check",),
        ]
    )
    def check(ops: list[tuple[Any, ...]]) -> None:
        with_a = Flooding(small_table_app, next(runs), with_a=True)
        decided = [with_a.run(op) for op in ops]
        assert len(limiter) <= TABLE
        alone = Flooding(small_table_app, next(runs), with_a=False)
        expected = [alone.run(op) for op in ops if op[0].startswith("b-")]
        assert [d for d in decided if d is not None] == expected

    check()


def test_a_rate_stored_before_periods_were_bounded_is_read_within_the_bound(
    tmp_path: Path,
) -> None:
    for a, _ in tenants(tmp_path):
        key = a.create_key(["things:read"], rate_limits=[{"name": "mine", "rate": "1/day"}])
        with sqlite3.connect(tmp_path / "i.db") as db:  # as a release without the bound wrote it
            stored = json.dumps([{"name": "mine", "rate": "1/99999day", "key": "ip"}])
            db.execute("UPDATE api_keys SET rate_limits = ? WHERE id = ?", (stored, key["id"]))
        a.runtime.cache.clear()
        headers = {**a.headers(key["key"]), **FROM_PROXY}
        assert a.client.get("/v1/auth/check", headers=headers).status_code == 200
        again = a.client.get("/v1/auth/check", headers=headers)
        assert again.status_code == 429 and 0 < int(again.headers["retry-after"]) <= 86400
