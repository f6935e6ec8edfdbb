"""The rate-limiting service on the in-memory limiter with a frozen clock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from apiward.adapters.limiter.memory import MemoryLimiter
from apiward.core.limits import NS, Decision, Hit, Policy, RateLimitExceeded
from apiward.services.limiting import (
    RateLimiting,
    RatePlan,
    RequestContext,
    RouteRule,
    limit_key,
)
from apiward.services.ports import Limiter

pytestmark = pytest.mark.anyio

START = 1_000 * NS
ORG_HOURLY = Policy.parse("org-hourly", "1000/hour", key="org")  # Monaco
IP_MINUTE = Policy.parse("ip-minute", "100/minute", key="ip")  # Monk
MONK_AND_MONACO = RatePlan(
    policies=(ORG_HOURLY, IP_MINUTE),
    routes=(RouteRule("/v1/events", exempt=True),),
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    """A monotonic nanosecond clock that moves only when told."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += round(seconds * NS)


class Recording:
    """A limiter that records the hits it is asked about."""

    def __init__(self, inner: Limiter) -> None:
        self.inner = inner
        self.calls: list[list[Hit]] = []

    async def hit(self, key: str, limit: int, period: float, cost: int = 1) -> Decision:
        return (await self.hit_all([Hit(key, limit, period, cost)]))[0]

    async def hit_all(self, hits: Sequence[Hit], report: Sequence[Hit] = ()) -> list[Decision]:
        self.calls.append(list(hits))
        return await self.inner.hit_all(hits, report)

    async def peek(self, key: str, limit: int, period: float, cost: int = 1) -> Decision:
        return await self.inner.peek(key, limit, period, cost)

    async def reset(self, key: str) -> None:
        await self.inner.reset(key)

    async def refund(self, hits: Sequence[Hit]) -> None:
        await self.inner.refund(hits)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def limiter(clock: Clock) -> Recording:
    return Recording(MemoryLimiter(timer=clock))


@pytest.fixture
def service(limiter: Recording) -> RateLimiting:
    return RateLimiting(limiter, MONK_AND_MONACO, clock=lambda: 1_700_000_000.0)


def ctx(route: str = "/v1/keys", **fields: str | bool) -> RequestContext:
    values: dict[str, Any] = {"org_id": "org_1", "ip": "203.0.113.9"}
    values.update(fields)
    return RequestContext(route, **values)


async def test_every_applicable_policy_is_checked_on_namespaced_keys(
    service: RateLimiting, limiter: Recording
) -> None:
    verdict = await service.check(ctx())
    assert verdict.allowed
    assert [h.key for h in limiter.calls[0]] == [
        "rl:org-hourly:org:org_1",
        "rl:ip-minute:ip:203.0.113.9",
    ]
    assert [r.decision.remaining for r in verdict.results] == [999, 99]


async def test_own_limits_and_asserted_values_count_in_buckets_of_their_own(
    service: RateLimiting, limiter: Recording
) -> None:
    own_ip = replace(Policy.parse("ip-minute.own", "1/day", key="ip"), own=True)
    route = Policy.parse("route-minute", "50/minute", key="route")
    plan = RatePlan((ORG_HOURLY, IP_MINUTE, route, own_ip))
    await service.check(ctx(credential_id="key_1"), plan=plan)
    await service.check(ctx(credential_id="key_1", asserted=True), plan=plan)
    assert [[h.key for h in call] for call in limiter.calls] == [
        [
            "rl:org-hourly:org:org_1",
            "rl:ip-minute:ip:203.0.113.9",  # real traffic: the deployment's bucket
            "rl:route-minute:route:/v1/keys",
            "rl:ip-minute.own@c.key_1:ip:203.0.113.9",  # the key's own: the key's bucket
        ],
        [
            "rl:org-hourly:org:org_1",
            "rl:ip-minute@o.org_1:ip:203.0.113.9",  # asserted: the organisation's bucket
            "rl:route-minute@o.org_1:route:/v1/keys",
            "rl:ip-minute.own@c.key_1:ip:203.0.113.9",
        ],
    ]


async def test_policies_keyed_on_values_the_request_lacks_are_skipped(
    service: RateLimiting, limiter: Recording
) -> None:
    verdict = await service.check(RequestContext("/v1/keys", ip="203.0.113.9"))
    assert [r.policy.name for r in verdict.results] == ["ip-minute"]


async def test_a_request_with_nothing_to_key_on_is_not_limited(service: RateLimiting) -> None:
    verdict = await service.check(RequestContext("/v1/keys"))
    assert verdict.allowed and verdict.exempt and verdict.headers(0.0) == {}


async def test_an_exempt_route_never_touches_the_limiter(
    service: RateLimiting, limiter: Recording
) -> None:
    for _ in range(200):
        verdict = await service.check(ctx("/v1/events"))
        assert verdict.allowed and verdict.exempt
    assert limiter.calls == []
    assert verdict.headers(0.0) == {}


async def test_monk_ip_limit_denies_the_101st_request_in_a_minute(service: RateLimiting) -> None:
    for _ in range(100):
        assert (await service.check(ctx())).allowed
    verdict = await service.check(ctx())
    assert not verdict.allowed
    assert verdict.reported is not None and verdict.reported.policy.name == "ip-minute"
    assert verdict.headers(1_700_000_000.0)["Retry-After"] == "1"  # 60 s / 100 = 0.6 s


async def test_a_denial_by_one_policy_spends_nothing_from_the_others(
    service: RateLimiting, limiter: Recording
) -> None:
    for _ in range(100):
        await service.check(ctx())
    for _ in range(5):
        assert not (await service.check(ctx())).allowed
    org = await limiter.peek("rl:org-hourly:org:org_1", 1000, 3600.0, 0)
    assert org.remaining == 900


async def test_other_ips_of_the_same_org_are_limited_separately(service: RateLimiting) -> None:
    for _ in range(100):
        await service.check(ctx(ip="198.51.100.1"))
    assert not (await service.check(ctx(ip="198.51.100.1"))).allowed
    assert (await service.check(ctx(ip="198.51.100.2"))).allowed


async def test_the_headers_describe_the_policy_closest_to_exhaustion(
    service: RateLimiting,
) -> None:
    for _ in range(40):
        verdict = await service.check(ctx())
    fields = verdict.headers(1_700_000_000.0)
    assert fields["X-RateLimit-Limit"] == "100"
    assert fields["X-RateLimit-Remaining"] == "60"
    assert fields["RateLimit-Policy"] == '"ip-minute";q=100;w=60'
    every = verdict.headers(1_700_000_000.0, every_policy=True)
    assert every["RateLimit-Policy"] == '"ip-minute";q=100;w=60, "org-hourly";q=1000;w=3600'


async def test_the_limit_refills_with_time(service: RateLimiting, clock: Clock) -> None:
    for _ in range(100):
        await service.check(ctx())
    assert not (await service.check(ctx())).allowed
    clock.advance(0.6)
    assert (await service.check(ctx())).allowed


async def test_enforce_raises_rate_limit_exceeded_with_headers_and_message(
    service: RateLimiting,
) -> None:
    for _ in range(100):
        await service.enforce(ctx())
    with pytest.raises(RateLimitExceeded, match="'ip-minute' rate limit") as caught:
        await service.enforce(ctx())
    assert caught.value.headers["Retry-After"] == "1"
    assert caught.value.headers["X-RateLimit-Reset"] == "1700000060"


async def test_a_route_rule_adds_its_own_limit_and_cost(limiter: Recording) -> None:
    expensive = Policy.parse("exports", "10/hour", key="credential")
    plan = RatePlan(
        policies=(ORG_HOURLY,),
        routes=(
            RouteRule("/v1/exports*", methods=frozenset({"post"}), policies=(expensive,), cost=5),
        ),
    )
    service = RateLimiting(limiter, plan)
    request = RequestContext("/v1/exports/csv", "POST", org_id="o", credential_id="key_1")
    verdict = await service.check(request)
    assert [(r.policy.name, r.decision.remaining) for r in verdict.results] == [
        ("org-hourly", 995),
        ("exports", 5),
    ]
    assert (await service.check(request)).allowed  # 5 more units: exactly the rest
    assert not (await service.check(request)).allowed
    get = await service.check(RequestContext("/v1/exports/csv", "GET", org_id="o"))
    assert [r.policy.name for r in get.results] == ["org-hourly"]


async def test_a_route_rule_may_replace_the_plan_policies(limiter: Recording) -> None:
    login = Policy.parse("login-ip", "5/minute", key="ip")
    plan = RatePlan((ORG_HOURLY,), (RouteRule("/v1/auth/token", policies=(login,), replace=True),))
    verdict = await RateLimiting(limiter, plan).check(ctx("/v1/auth/token"))
    assert [r.policy.name for r in verdict.results] == ["login-ip"]


async def test_a_route_policy_keyed_on_the_route_is_shared_by_every_caller(
    limiter: Recording,
) -> None:
    plan = RatePlan((Policy("search", 2, 60.0, "route"),))
    service = RateLimiting(limiter, plan)
    assert (await service.check(ctx("/v1/search", org_id="a"))).allowed
    assert (await service.check(ctx("/v1/search", org_id="b"))).allowed
    assert not (await service.check(ctx("/v1/search", org_id="c"))).allowed
    assert limiter.calls[0][0].key == "rl:search:route:/v1/search"


async def test_a_plan_passed_per_call_switches_tier_without_a_new_service(
    service: RateLimiting,
) -> None:
    gold = RatePlan((Policy.parse("org-hourly", "5000/hour", key="org"),))
    verdict = await service.check(ctx(), plan=gold)
    assert verdict.results[0].decision.limit == 5000


async def test_reset_forgets_a_key_usage(service: RateLimiting) -> None:
    for _ in range(101):
        await service.check(ctx())
    await service.reset(IP_MINUTE, "203.0.113.9")
    assert (await service.check(ctx())).allowed


def test_policy_names_must_be_unique_within_a_plan() -> None:
    with pytest.raises(ValueError, match="repeated: org-hourly"):
        RatePlan((ORG_HOURLY,), (RouteRule("/x", policies=(ORG_HOURLY,)),))


@pytest.mark.parametrize(
    ("route", "cost", "message"),
    [
        ("v1/events", None, "must start with '/'"),
        ("/v1/*/x", None, "only allowed at the end"),
        ("/v1", 0, "cost must be"),
    ],
)
def test_route_rules_reject_bad_patterns(route: str, cost: int | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RouteRule(route, cost=cost)


@pytest.mark.parametrize(
    ("rule", "route", "method", "matches"),
    [
        (RouteRule("/v1/events"), "/v1/events", "GET", True),
        (RouteRule("/v1/events"), "/v1/events/1", "GET", False),
        (RouteRule("/v1/keys*"), "/v1/keys/{key_id}", "GET", True),
        (RouteRule("/v1/keys*", methods=frozenset({"POST"})), "/v1/keys", "get", False),
    ],
)
def test_route_rules_match_templates_prefixes_and_methods(
    rule: RouteRule, route: str, method: str, matches: bool
) -> None:
    assert rule.matches(route, method) is matches


def test_the_key_namespace_is_policy_kind_value() -> None:
    assert limit_key(IP_MINUTE, "ip", "::1") == "rl:ip-minute:ip:::1"


@pytest.mark.parametrize("rule", ["/v1/things", "/v1/things/"])
@pytest.mark.parametrize("route", ["/v1/things", "/v1/things/", "/v1/things//"])
def test_an_exact_route_rule_ignores_a_trailing_slash(rule: str, route: str) -> None:
    """A trailing slash names the same resource (docs/forward-auth.md), on either side."""
    assert RouteRule(rule).matches(route, "GET")
    assert not RouteRule(rule).matches("/v1/things/x", "GET")
    assert RouteRule("/").matches("/", "GET") and not RouteRule("/").matches("/x", "GET")


def test_a_rule_for_get_covers_head() -> None:
    """Upstreams answer HEAD with their GET route: a GET limit or exemption is HEAD's too."""
    rule = RouteRule("/v1/things", methods=frozenset({"get"}))
    assert rule.matches("/v1/things", "HEAD") and rule.matches("/v1/things", "GET")
    assert not rule.matches("/v1/things", "POST")
    assert not RouteRule("/v1/things", methods=frozenset({"POST"})).matches("/v1/things", "HEAD")
