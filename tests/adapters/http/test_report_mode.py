"""Rules in report mode over HTTP: limits (plan, route, a key's own) and scope
requirements (forward auth, ``require()``) that refuse nothing, announce nothing, and are
counted as ``WOULD_REFUSE`` beside the real outcome, on the in-process limiter and on
Redis."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from apiward.adapters.http.app import create_app
from apiward.adapters.runtime import Runtime
from apiward.adapters.settings import ConfigError
from apiward.core import analytics
from apiward.services.limiting import MAX_RULES_COUNTED, OTHER_RULES
from tests.adapters.dashboard.conftest import BASE_URL, Browser
from tests.adapters.http.test_metrics import scrape, value
from tests.adapters.limiter.conftest import REDIS_URL, _probe, _unavailable
from tests.conftest import Org, bootstrap, embedded_key, fast_settings

PER_KEY = {"name": "per-key", "rate": "100/hour", "key": "credential"}
TRIAL = {"name": "trial", "rate": "2/hour", "key": "credential", "mode": "report"}
KINDS = ["memory", pytest.param("redis", marks=pytest.mark.redis)]


def app_for(tmp_path: Path, kind: str, **settings: Any) -> Iterator[Org]:
    """An app and an organisation; the management API is exempt from the limits, so only
    the checks the test makes are counted."""
    extra: dict[str, Any] = {}
    if kind == "redis":
        problem = asyncio.run(_probe(REDIS_URL))
        if problem:
            _unavailable(f"Redis is not reachable at {REDIS_URL} ({problem}).")
        extra["redis_url"] = REDIS_URL
    config = fast_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'r.db'}",
        rate_limit_routes=[{"route": "/v1/keys*", "exempt": True}],
        **extra,
        **settings,
    )
    # At a loopback URL, where the dashboard's session cookie is not Secure.
    with TestClient(create_app(config), base_url=BASE_URL) as client:
        yield bootstrap(client)


@pytest.fixture(params=KINDS)
def org(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Org]:
    yield from app_for(tmp_path, request.param, rate_limits=[PER_KEY, TRIAL])


def counted(org: Org, key_id: str) -> Counter[str]:
    """The outcomes analytics hold for one key, after a flush."""
    org.client.portal.call(org.runtime.flush_analytics)  # type: ignore[union-attr]
    r = org.client.get(
        "/v1/analytics/verifications",
        headers=org.headers(),
        params={"group_by": "outcome", "key_id": key_id},
    )
    assert r.status_code == 200, r.text
    seen: Counter[str] = Counter()
    for item in r.json()["items"]:
        seen[item["outcome"]] += item["count"]
    return seen


def test_a_limit_in_report_mode_is_counted_never_enforced_nor_announced(org: Org) -> None:
    made = org.create_key(["things:read"])
    answers = [org.client.get("/v1/auth/check", headers=org.headers(made["key"])) for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 200, 200]
    assert [r.headers["x-ratelimit-remaining"] for r in answers] == ["99", "98", "97", "96"]
    for r in answers:
        assert r.headers["ratelimit-policy"] == '"per-key";q=100;w=3600'
        assert "trial" not in r.headers["ratelimit"] and "retry-after" not in r.headers
    # A request another rule refuses is refused, and counted for that alone.
    lacking = org.client.get("/v1/analytics/verifications", headers=org.headers(made["key"]))
    assert lacking.status_code == 403
    assert counted(org, made["id"]) == {
        "VALID": 4,
        "WOULD_REFUSE": 2,
        "INSUFFICIENT_PERMISSIONS": 1,
    }
    metrics = scrape(org.client)
    assert value(metrics, "apiward_would_refuse_total", rule="trial") >= 2


@pytest.mark.parametrize("kind", KINDS)
def test_switching_the_rule_to_enforce_refuses_what_it_counted(tmp_path: Path, kind: str) -> None:
    enforced = {k: v for k, v in TRIAL.items() if k != "mode"}  # the one-line change
    for org in app_for(tmp_path, kind, rate_limits=[PER_KEY, enforced]):
        made = org.create_key(["things:read"])
        statuses = [
            org.client.get("/v1/auth/check", headers=org.headers(made["key"])).status_code
            for _ in range(4)
        ]
        assert statuses == [200, 200, 429, 429]
        assert counted(org, made["id"]) == {"VALID": 2, "RATE_LIMITED": 2}


def test_a_scope_required_in_report_mode_by_the_proxy_is_counted_not_refused(org: Org) -> None:
    made = org.create_key(["things:read"])
    report = {"X-Apiward-Require-Report": "things:write things:read"}
    raw = org.client.get("/v1/auth/check", headers=org.headers(made["key"], **report))
    routed = org.client.get(
        "/v1/auth/check?scope=things:read", headers=org.headers(made["key"], **report)
    )
    assert raw.status_code == 200 and routed.status_code == 200
    enforced = {"X-Apiward-Require": "things:write"}  # the same rule, enforced
    refused = org.client.get("/v1/auth/check", headers=org.headers(made["key"], **enforced))
    assert refused.status_code == 403
    assert counted(org, made["id"]) == {
        "VALID": 2,
        "WOULD_REFUSE": 2,
        "INSUFFICIENT_PERMISSIONS": 1,
    }
    metrics = scrape(org.client)
    assert value(metrics, "apiward_would_refuse_total", rule="scope:things:write") == 2


def test_a_scope_named_twice_counts_once_and_a_flood_of_them_is_refused(org: Org) -> None:
    """One header counts each scope once, whatever its repetitions, and names at most 64:
    a request cannot inflate the counts of what report mode would refuse."""
    made = org.create_key(["things:read"])
    twice = {"X-Apiward-Require-Report": "things:write, things:write things:write"}
    assert (
        org.client.get("/v1/auth/check", headers=org.headers(made["key"], **twice)).status_code
        == 200
    )
    assert counted(org, made["id"]) == {"VALID": 1, "WOULD_REFUSE": 1}
    flood = {"X-Apiward-Require-Report": " ".join(f"made:up{n}" for n in range(65))}
    r = org.client.get("/v1/auth/check", headers=org.headers(made["key"], **flood))
    assert r.status_code == 400 and "at most 64" in r.json()["message"]
    required = {"X-Apiward-Require": " ".join(f"made:up{n}" for n in range(65))}
    r = org.client.get("/v1/auth/check", headers=org.headers(made["key"], **required))
    assert r.status_code == 400
    assert counted(org, made["id"]) == {"VALID": 1, "WOULD_REFUSE": 1}


def test_a_bad_scope_in_report_mode_is_a_clear_400(org: Org) -> None:
    made = org.create_key(["things:read"])
    bad = {"X-Apiward-Require-Report": "not a:scope:"}
    r = org.client.get("/v1/auth/check", headers=org.headers(made["key"], **bad))
    assert r.status_code == 400, r.text


def test_a_keys_own_limit_in_report_mode_follows_the_authority_rule(tmp_path: Path) -> None:
    plan = [{"name": "per-key", "rate": "3/hour", "key": "credential"}]
    for org in app_for(tmp_path, "memory", rate_limits=plan):
        # A tenant's limit of the plan's name only adds beside it: the plan's still bites.
        mine = [{"name": "per-key", "rate": "1/hour", "mode": "report"}]
        made = org.create_key(["things:read"], rate_limits=mine)
        assert made["rate_limits"] == [
            {"name": "per-key", "rate": "1/hour", "key": "credential", "mode": "report"}
            | {"replaces_plan": False}
        ]
        statuses = [
            org.client.get("/v1/auth/check", headers=org.headers(made["key"])).status_code
            for _ in range(4)
        ]
        assert statuses == [200, 200, 200, 429]
        assert counted(org, made["id"]) == {"VALID": 3, "WOULD_REFUSE": 2, "RATE_LIMITED": 1}

        # The operator's replaces the plan's limit: in report mode, it no longer bites.
        operator = org.operator_key()
        tried = org.create_key(["things:read"], by=operator, rate_limits=mine)
        statuses = [
            org.client.get("/v1/auth/check", headers=org.headers(tried["key"])).status_code
            for _ in range(4)
        ]
        assert statuses == [200, 200, 200, 200]
        assert counted(org, tried["id"]) == {"VALID": 4, "WOULD_REFUSE": 3}
        # ...and a tenant may not switch the operator's rule, either way.
        enforce = [{"name": "per-key", "rate": "1/minute", "mode": "enforce"}]
        r = org.client.patch(
            f"/v1/keys/{tried['id']}", headers=org.headers(), json={"rate_limits": enforce}
        )
        assert r.status_code == 403, r.text

        wrong = [{"name": "trial", "rate": "1/minute", "mode": "sometimes"}]
        r = org.client.post(
            "/v1/keys",
            headers=org.headers(),
            json={"name": "k", "scopes": ["things:read"], "rate_limits": wrong},
        )
        assert r.status_code == 400 and "mode" in r.json()["message"], r.text


def test_a_mode_in_the_configuration_must_be_enforce_or_report() -> None:
    bad = {**TRIAL, "mode": "sometimes"}
    with pytest.raises(ConfigError, match="mode"):
        fast_settings(rate_limits=[bad])
    with pytest.raises(ConfigError, match="mode"):
        fast_settings(rate_limit_routes=[{"route": "/v1/things", "limits": [bad]}])


def test_require_in_report_mode_counts_what_it_would_refuse(tmp_path: Path) -> None:
    from fastapi import FastAPI

    from apiward.server import Apiward, require

    aw = Apiward(fast_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'e.db'}"))
    app = FastAPI()
    aw.init_app(app)

    @app.get("/things", dependencies=[require("things:read", "things:write", mode="report")])
    async def things() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/enforced", dependencies=[require("things:write")])
    async def enforced() -> dict[str, bool]:
        return {"ok": True}

    with pytest.raises(ValueError, match="'enforce'"):
        require("things:write", mode="sometimes")  # type: ignore[arg-type]

    with TestClient(app) as client:
        runtime = aw.runtime
        org_id, plaintext = embedded_key(client, runtime, ["things:read"])
        auth = {"Authorization": f"Bearer {plaintext}"}
        assert [client.get("/things", headers=auth).status_code for _ in range(2)] == [200, 200]
        assert client.get("/enforced", headers=auth).status_code == 403
        client.portal.call(runtime.flush_analytics)  # type: ignore[union-attr]
        assert runtime.limits.would_refuse == {"scope:things:write": 2}
        outcomes = client.portal.call(outcomes_of, runtime, org_id)  # type: ignore[union-attr]
        assert outcomes == {"VALID": 2, "WOULD_REFUSE": 2, "INSUFFICIENT_PERMISSIONS": 1}


async def outcomes_of(runtime: Runtime, org_id: str) -> Counter[str]:
    """What analytics hold for the organisation's live environment, by outcome."""
    principal = await runtime.operators.principal(org_id)
    q = analytics.query(
        since="24h", until=None, granularity="hour", group_by="outcome", now=runtime.clock.now()
    )
    seen: Counter[str] = Counter()
    for row in await runtime.analytics.verifications(principal, q):
        seen[row.outcome] += row.count
    return seen


def test_the_dashboard_charts_what_report_mode_would_refuse_on_its_own(tmp_path: Path) -> None:
    for org in app_for(tmp_path, "memory", rate_limits=[PER_KEY, TRIAL]):
        made = org.create_key(["things:read"])
        for _ in range(3):
            assert org.client.get("/v1/auth/check", headers=org.headers(made["key"])).status_code
        org.client.portal.call(org.runtime.flush_analytics)  # type: ignore[union-attr]
        owner = Browser(org.client)
        assert owner.sign_in("owner@acme.test", "correct horse battery").status_code == 303
        page = owner.get("/dashboard/analytics").text
        assert 'data-testid="would-refuse"' in page
        assert 'data-testid="would-refuse-total">1<' in page
        assert "1 WOULD_REFUSE</title>" in page
        # The plan's limits say which are in report mode, in the dashboard and the API.
        assert page.count("report only") == 0
        assert "report only" in owner.get("/dashboard/usage").text
        shown = org.client.get("/v1/org", headers=org.headers()).json()["rate_limits"]
        assert [(x["name"], x["mode"]) for x in shown] == [
            ("per-key", "enforce"),
            ("trial", "report"),
        ]
        # A request counted twice is one verification: the total leaves it out.
        outcomes = org.client.portal.call(outcomes_of, org.runtime, org.id)  # type: ignore[union-attr]
        assert outcomes["WOULD_REFUSE"] == 1
        total = page.split('data-testid="total">')[1].split("<")[0]
        assert int(total.replace(",", "")) == outcomes.total() - 1


def test_the_readmes_report_mode_example_loads_and_holds(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    blocks = (b.split("```")[0] for b in readme.split("```toml\n")[1:])
    block = next(b for b in blocks if 'mode = "report"' in b)
    (tmp_path / "apiward.toml").write_text(block.replace("\n  ", "\n"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("APIWARD_CONFIG_FILE", str(tmp_path / "apiward.toml"))
        plan = fast_settings().rate_plans()[None]
    assert [(p.name, p.mode) for p in plan.policies] == [
        ("per-key", "enforce"),
        ("per-key-next", "report"),
    ]


def test_the_rules_counted_apart_are_bounded(org: Org) -> None:
    """A proxy passing on a client's ``X-Apiward-Require-Report`` names no new metric
    label past the bound: the rest are counted together."""
    limits = org.runtime.limits
    for i in range(MAX_RULES_COUNTED + 50):
        limits.count_would_refuse(f"scope:made-up:{i}")
    assert len(limits.would_refuse) <= MAX_RULES_COUNTED + 1
    assert limits.would_refuse[OTHER_RULES] >= 50


def test_the_verify_api_counts_what_a_limit_in_report_mode_would_refuse(org: Org) -> None:
    made = org.create_key(["things:read"])
    verifier = org.create_key(["keys:verify"])["key"]
    answers = [
        org.client.post(
            "/v1/keys/verify", headers=org.headers(verifier), json={"key": made["key"]}
        ).json()
        for _ in range(3)
    ]
    assert [a["code"] for a in answers] == ["VALID", "VALID", "VALID"]
    assert [a["ratelimit"]["remaining"] for a in answers] == [99, 98, 97]
    assert all(a["ratelimit"]["policy"] == '"per-key";q=100;w=3600' for a in answers)
    assert counted(org, made["id"]) == {"VALID": 3, "WOULD_REFUSE": 1}
