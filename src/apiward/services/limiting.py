"""Rate limiting a request: which policies apply, on which keys, and the verdict.

A ``RatePlan`` holds the policies of a deployment or of a plan tier, and route rules
that exempt routes (a high-throughput ``/v1/events``), add route limits or declare a cost. The
``RateLimiting`` service turns a request's context into namespaced keys
(``rl:{policy}:{kind}:{value}``), asks the limiter about all of them in one call
(all or nothing: a request refused by one limit spends nothing from the others), and
reports the decision closest to exhaustion for the headers.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Protocol

from apiward.core.clock import Clock
from apiward.core.errors import RateLimited, UsageExceeded
from apiward.core.limits import (
    DEPLOYMENT,
    OWN_SUFFIX,
    Algorithm,
    Hit,
    Policy,
    PolicyDecision,
    RateLimitExceeded,
    Spent,
    headers,
    report,
    spend,
)
from apiward.core.models import CredentialKind, Principal, RateOverride
from apiward.core.readings import Reading
from apiward.services.audit import audit_event
from apiward.services.lockouts import Lockouts
from apiward.services.ports import AuditTx, CredentialsTx, Limiter, Store


class RequestLimitsTx(CredentialsTx, AuditTx, Protocol):
    """What spending a key's credits touches."""


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What a request is limited by. Absent values skip the policies keyed on them."""

    route: str
    method: str = "GET"
    org_id: str | None = None
    credential_id: str | None = None
    ip: str | None = None
    user_id: str | None = None
    asserted: bool = False
    """``ip`` and ``route`` are the caller's word (the verify API), not the connection's
    or the declared proxy's: limits keyed on them count within ``org_id`` only."""

    def value(self, kind: str) -> str | None:
        if kind == "org":
            return self.org_id
        if kind == "credential":
            return self.credential_id
        if kind == "ip":
            return self.ip
        if kind == "user":
            return self.user_id
        return self.route

    def key_for(self, policy: Policy) -> str | None:
        """The limiter key of ``policy`` for this request (None: the policy does not
        apply, its value is absent).

        A plan's limit counts ``rl:{policy}:{kind}:{value}``, one bucket for the whole
        deployment per value (an IP, a route): that is the operator's meaning. A
        credential's own limit set by its tenant counts in that credential's buckets,
        and a value the caller asserts in the organisation's: no tenant reaches a
        bucket another tenant's requests depend on (docs/authority.md).
        """
        value = self.value(policy.key)
        if value is None:
            return None
        if policy.own:
            return limit_key(policy, policy.key, value, within=f"c.{self.credential_id}")
        if self.asserted and policy.key in ASSERTED_KINDS:
            return limit_key(policy, policy.key, value, within=f"o.{self.org_id}")
        return limit_key(policy, policy.key, value)


ASSERTED_KINDS = ("ip", "route")
"""What the verify API's caller names for the key it verifies (``ip``, ``route``)."""


def metered_credential(principal: Principal) -> str:
    """What a per-credential limit counts: a key; the client behind a client's tokens
    (client credentials and exchange); the user behind password and refresh tokens. So
    asking for another token never opens a new budget."""
    if principal.credential_kind is CredentialKind.ACCESS_TOKEN:
        return principal.client_id or f"user:{principal.user_id}"
    return principal.credential_id


@dataclass(frozen=True, slots=True)
class RouteRule:
    """Limits for a route or a group of routes.

    ``route`` is a route template (``/v1/events``, which also matches ``/v1/events/``)
    or a prefix ending in ``*`` (``/v1/keys*``); ``methods`` narrows it (empty: every
    method; ``GET`` includes ``HEAD``, which upstreams answer with their ``GET`` route). A rule may
    ``exempt`` its routes from every limit, add ``policies`` (or ``replace`` the
    plan's with them) and set the ``cost`` each request spends. The first matching
    rule of a plan wins.
    """

    route: str
    methods: frozenset[str] = frozenset()
    exempt: bool = False
    policies: tuple[Policy, ...] = ()
    replace: bool = False
    cost: int | None = None

    def __post_init__(self) -> None:
        if not self.route.startswith("/"):
            raise ValueError(f"Route rule {self.route!r} must start with '/'.")
        if "*" in self.route[:-1]:
            raise ValueError(f"Route rule {self.route!r}: '*' is only allowed at the end.")
        if self.cost is not None and self.cost < 1:
            raise ValueError(f"Route rule {self.route!r}: cost must be at least 1.")
        methods = {m.upper() for m in self.methods}
        if "GET" in methods:  # served as GET without the body (RFC 9110 section 9.3.2)
            methods.add("HEAD")
        object.__setattr__(self, "methods", frozenset(methods))

    def matches(self, route: str, method: str) -> bool:
        if self.methods and method.upper() not in self.methods:
            return False
        if self.route.endswith("*"):
            return route.startswith(self.route[:-1])
        # A trailing slash names the same resource (docs/forward-auth.md).
        return route.rstrip("/") == self.route.rstrip("/")


@dataclass(frozen=True, slots=True)
class Applicable:
    """The policies a route is subject to, each with the cost one request spends:
    enforced, and in report mode (``Policy.mode``)."""

    policies: tuple[tuple[Policy, int], ...]
    report: tuple[tuple[Policy, int], ...] = ()

    @classmethod
    def of(cls, costs: Iterable[tuple[Policy, int]]) -> Applicable:
        both = tuple(costs)
        return cls(
            tuple(c for c in both if c[0].mode != "report"),
            tuple(c for c in both if c[0].mode == "report"),
        )


EXEMPT = Applicable(())
_MAX_CACHED_ROUTES = 10_000


@dataclass(frozen=True)
class RatePlan:
    """A set of policies and route rules: a deployment's default or a plan tier."""

    policies: tuple[Policy, ...] = ()
    routes: tuple[RouteRule, ...] = ()
    _cache: dict[tuple[str, str], Applicable] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        names = [p.name for p in self.policies]
        names += [p.name for rule in self.routes for p in rule.policies]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(
                f"Policy names must be unique within a plan; repeated: {', '.join(duplicates)}."
            )

    def applicable(self, route: str, method: str = "GET") -> Applicable:
        """The policies and costs for a route template and method (memoised)."""
        cached = self._cache.get((route, method))
        if cached is None:
            cached = self._resolve(route, method)
            # Bounded in case a caller passes raw paths rather than route templates.
            if len(self._cache) < _MAX_CACHED_ROUTES:
                self._cache[(route, method)] = cached
        return cached

    def rule_for(self, route: str, method: str = "GET") -> str:
        """The route rule a path falls under (its ``route``, ``/v1/keys*`` say), or
        ``*`` for none: a bounded name to count a raw path under."""
        rule = next((r for r in self.routes if r.matches(route, method)), None)
        return rule.route if rule else "*"

    def _resolve(self, route: str, method: str) -> Applicable:
        rule = next((r for r in self.routes if r.matches(route, method)), None)
        if rule is None:
            return Applicable.of((p, p.cost) for p in self.policies)
        if rule.exempt:
            return EXEMPT
        chosen = rule.policies if rule.replace else (*self.policies, *rule.policies)
        return Applicable.of((p, min(rule.cost or p.cost, p.limit)) for p in chosen)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Every decision taken for a request, and the one its headers report."""

    results: tuple[PolicyDecision, ...]
    reported: PolicyDecision | None
    hits: tuple[Hit, ...] = ()
    """What the limiter was asked (and, when allowed, spent): the enforced limits, and
    the limits in report mode that admitted the request."""
    reports: tuple[PolicyDecision, ...] = ()
    """The decisions of the limits in report mode: never in ``allowed`` or the headers."""

    @property
    def would_refuse(self) -> tuple[str, ...]:
        """The limits in report mode that would have refused this request, had they
        been enforced (none when the enforced limits refused it)."""
        if not self.reports or not self.allowed:
            return ()
        return tuple(r.policy.name for r in self.reports if not r.decision.allowed)

    @property
    def allowed(self) -> bool:
        return all(r.decision.allowed for r in self.results)

    @property
    def exempt(self) -> bool:
        return not self.results

    def headers(self, now: float, *, every_policy: bool = False) -> dict[str, str]:
        """The rate-limit response headers (none for an exempt route).

        ``now`` is the wall clock in unix seconds. ``every_policy`` lists all the
        policies in the IETF fields, not only the reported one.
        """
        if self.reported is None:
            return {}
        return headers(self.reported, now, also=self.results if every_policy else ())


_ALGORITHM_TAG = {"gcra": "", "fixed_window": ":fw", "sliding_window": ":sw"}
REPORT_TAG = "~report"
"""Ends the bucket name of a limit in report mode (a policy name holds no ``~``)."""


def limit_key(policy: Policy, kind: str, value: str, *, within: str | None = None) -> str:
    """The namespaced limiter key ``rl:{policy}:{kind}:{value}`` (a window limit's ends in
    ``:fw`` or ``:sw``: its state has another shape, so a policy changing algorithm starts
    afresh rather than misreading the old state).

    ``within`` confines it to an organisation or a credential: ``rl:{policy}@{within}:...``
    (a policy name holds no ``@``, so no such key is ever a plan's). A limit in report
    mode counts under ``{policy}~report``: never in a bucket an enforced limit of its name
    uses (another tier's, or the plan's beside an operator's override in report mode).
    The limiter bounds the length of every key (``apiward.core.limits.bounded_key``).
    """
    name = policy.name if policy.mode != "report" else f"{policy.name}{REPORT_TAG}"
    if within is not None:
        name = f"{name}@{within}"
    return f"rl:{name}:{kind}:{value}{_ALGORITHM_TAG[policy.algorithm]}"


def key_subject(key: str) -> str:
    """Whom a limiter key counts: of ``rl:{policy}:{kind}:{value}`` (``limit_key``),
    ``{kind}:{value}`` without an algorithm's ending; any other key (a login or portal
    throttle's) is a subject of its own. On a Redis Cluster the keys of one subject
    share a hash slot (``apiward.adapters.limiter.redis.RedisLimiter``), so that a
    decision on one subject's limits (a credential's second and day) is one script.
    Two subjects may share a slot; nothing but speed depends on which."""
    if not key.startswith("rl:"):
        return key
    _, _, rest = key[3:].partition(":")
    for tag in _ALGORITHM_TAG.values():
        if tag and rest.endswith(tag):
            return rest[: -len(tag)]
    return rest


class RateLimiting:
    """Check a request against the policies of a plan.

    ``plan`` is the default; ``check(plan=...)`` takes another (an org's tier or
    overrides, resolved by the caller), so changing a tier needs no restart.
    """

    def __init__(
        self,
        limiter: Limiter,
        plan: RatePlan,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limiter = limiter
        self.plan = plan
        self._clock = clock

    async def check(self, ctx: RequestContext, *, plan: RatePlan | None = None) -> Verdict:
        """Decide the request on every applicable policy, spending only if all admit it."""
        applicable = (plan or self.plan).applicable(ctx.route, ctx.method)
        keyed: list[tuple[Policy, str]] = []
        hits: list[Hit] = []
        # Every bucket this request counts in is charged to its organisation: a plan's
        # bucket too (a tenant's keys, routes or clients' addresses), so that a tenant
        # making many fills its own share of an in-process table, nobody else's.
        owner = ctx.org_id or DEPLOYMENT
        for policy, cost in applicable.policies:
            key = ctx.key_for(policy)
            if key is None:
                continue
            keyed.append((policy, key))
            hits.append(Hit(key, policy.limit, policy.period, cost, policy.algorithm, owner))
        if applicable.report:
            return await self._with_report(ctx, applicable, keyed, hits, owner)
        if not hits:
            return Verdict((), None)
        decisions = await self.limiter.hit_all(hits)
        results = tuple(
            PolicyDecision(policy, key, decision)
            for (policy, key), decision in zip(keyed, decisions, strict=True)
        )
        return Verdict(results, report(results), tuple(hits))

    async def _with_report(
        self,
        ctx: RequestContext,
        applicable: Applicable,
        keyed: list[tuple[Policy, str]],
        hits: list[Hit],
        owner: str,
    ) -> Verdict:
        """``check`` with limits in report mode: each decided in its own bucket, spent
        only where it and the enforced limits admit the request (one limiter call)."""
        watched: list[tuple[Policy, str]] = []
        watching: list[Hit] = []
        for policy, cost in applicable.report:
            key = ctx.key_for(policy)
            if key is not None:
                watched.append((policy, key))
                watching.append(
                    Hit(key, policy.limit, policy.period, cost, policy.algorithm, owner)
                )
        if not watching:
            if not hits:
                return Verdict((), None)
            decisions = await self.limiter.hit_all(hits)
        else:
            decisions = await self.limiter.hit_all(hits, watching)
        results = tuple(
            PolicyDecision(policy, key, decision)
            for (policy, key), decision in zip(keyed, decisions[: len(hits)], strict=True)
        )
        reports = tuple(
            PolicyDecision(policy, key, decision)
            for (policy, key), decision in zip(watched, decisions[len(hits) :], strict=True)
        )
        admitted = all(r.decision.allowed for r in results)
        spent = [*hits]
        if admitted:
            spent += (h for h, r in zip(watching, reports, strict=True) if r.decision.allowed)
        return Verdict(results, report(results), tuple(spent), reports)

    async def enforce(self, ctx: RequestContext, *, plan: RatePlan | None = None) -> Verdict:
        """``check``, raising ``RateLimitExceeded`` (with the headers) when denied."""
        verdict = await self.check(ctx, plan=plan)
        if not verdict.allowed and verdict.reported is not None:
            reported = verdict.reported
            raise RateLimitExceeded(
                reported.decision.retry_after,
                verdict.headers(self._clock()),
                reported.policy.name,
            )
        return verdict

    async def reset(self, policy: Policy, value: str) -> None:
        """Forget one key's usage under a policy (support: unblock a customer)."""
        await self.limiter.reset(limit_key(policy, policy.key, value))


def _with_overrides(
    policies: tuple[Policy, ...], overrides: tuple[RateOverride, ...]
) -> tuple[Policy, ...]:
    """A plan's policies with a credential's own limits.

    The operator's (``replaces_plan``) replace the plan's limits of the same name and
    count in their buckets. A tenant's may only restrict (``docs/authority.md``): each is
    applied beside the plan's limits, in buckets of the credential alone (``Policy.own``),
    under ``{name}.own`` when the plan has a limit of its name. So a tenant's limit never
    moves a bucket the plan shares (one IP, one route, for every tenant) and never frees
    its requests from the plan's.
    """
    plan = {p.name: p for p in policies}
    operators = {o.name: o for o in overrides if o.replaces_plan}
    result = [p for p in policies if p.name not in operators]
    for o in overrides:
        # A limit of a plan's name counts the way the plan's does (a window stays one); one
        # stored before periods were bounded is read within the bound.
        algorithm = _algorithm(plan, o.name)
        p = Policy.parse(
            o.name,
            o.rate,
            key=o.key,  # type: ignore[arg-type]
            algorithm=algorithm,
            stored=True,
            mode="report" if o.mode == "report" else "enforce",
        )
        if not o.replaces_plan:
            name = f"{p.name}{OWN_SUFFIX}" if p.name in plan else p.name
            p = replace(p, name=name, own=True)
        result.append(p)
    return tuple(result)


MAX_RULES_COUNTED = 1000
"""The most rules in report mode ``RequestLimits.would_refuse`` counts apart."""
OTHER_RULES = "(other)"
"""What the rules past ``MAX_RULES_COUNTED`` are counted under."""


def _algorithm(plan: dict[str, Policy], name: str) -> Algorithm:
    found = plan.get(name)
    return found.algorithm if found else "gcra"


class RequestLimits:
    """The rate limits and usage credits of one authenticated request.

    The plan is the organisation's tier (or the default) with the credential's own
    limits replacing those of the same name; merged plans are kept, so moving an org to
    another tier or changing a key's limits takes effect on its next request.
    """

    def __init__(
        self,
        limiter: Limiter,
        plans: dict[str | None, RatePlan],
        store: Store[RequestLimitsTx],
        clock: Clock,
        *,
        auth_failures: Policy,
        wall: Callable[[], float] = time.time,
        lockouts: Lockouts | None = None,
        credits_low: int = 0,
    ) -> None:
        self.limiter = limiter
        self._lockouts = lockouts
        self._credits_low = credits_low
        self.decisions: Counter[tuple[str, str]] = Counter()
        """Requests decided, by (``allowed`` or ``denied``, policy reported), for metrics."""
        self.would_refuse: Counter[str] = Counter()
        """Admitted requests a rule in report mode would have refused, by rule: a limit's
        name, or ``scope:{scope}`` (``Authenticator.scopes_in_report``), for metrics."""
        self.failures: Counter[str] = Counter()
        """Failed authentications, by credential (``key``: keys and access tokens;
        ``client``: OAuth clients; ``refresh``: refresh tokens never issued), for metrics."""
        self._plans = plans
        self._store = store
        self._clock = clock
        self._wall = wall
        self._auth_failures = auth_failures
        self._service = RateLimiting(limiter, plans[None], clock=wall)
        self._merged: dict[tuple[str | None, tuple[RateOverride, ...]], RatePlan] = {}

    def readings(self) -> list[Reading]:
        return [
            Reading.counts(
                "rate_limit_decisions",
                "Rate-limit decisions, by decision (allowed, denied) and reported policy.",
                ("decision", "policy"),
                self.decisions,
            ),
            Reading.counts(
                "would_refuse",
                "Admitted requests a rule in report mode would have refused, by rule (a "
                "limit's name, or scope:<scope> for a scope required in report mode).",
                ("rule",),
                self.would_refuse,
            ),
            Reading.counts(
                "failed_authentications",
                "Failed authentications, by credential (key: API keys and access tokens; "
                "client: OAuth clients; refresh: refresh tokens never issued). Each counts "
                "against its address's failure limit.",
                ("credential",),
                self.failures,
            ),
        ]

    def count_would_refuse(self, rule: str) -> None:
        """Count one admitted request ``rule`` (in report mode) would have refused. The
        rules counted apart are bounded (``MAX_RULES_COUNTED``): a scope a proxy passes
        on from the client could otherwise name new ones without end."""
        counts = self.would_refuse
        if rule not in counts and len(counts) >= MAX_RULES_COUNTED:
            rule = OTHER_RULES
        counts[rule] += 1

    @property
    def default_plan(self) -> RatePlan:
        return self._plans[None]

    def plan_for(self, tier: str | None, overrides: tuple[RateOverride, ...] = ()) -> RatePlan:
        key = (tier, overrides)
        plan = self._merged.get(key)
        if plan is None:
            base = self._plans.get(tier) or self._plans[None]
            if overrides:
                base = RatePlan(_with_overrides(base.policies, overrides), base.routes)
            plan = base
            if len(self._merged) < 10_000:
                self._merged[key] = plan
        return plan

    async def apply(
        self,
        principal: Principal,
        *,
        tier: str | None,
        overrides: tuple[RateOverride, ...] = (),
        credits_key: str | None = None,
        exempt: bool = False,
    ) -> Principal:
        """Spend this request's share of every applicable limit (and of its credits)."""
        if exempt:
            return principal
        ctx = principal.context
        route, method = ctx.route or "", ctx.method
        plan = self.plan_for(tier, overrides)
        applicable = plan.applicable(route, method)
        if applicable is EXEMPT or (
            not applicable.policies and not applicable.report and credits_key is None
        ):
            return principal  # nothing to count: the common case stays cheap
        try:
            verdict = await self._service.enforce(
                RequestContext(
                    route=route,
                    method=method,
                    org_id=principal.org_id,
                    credential_id=metered_credential(principal),
                    ip=ctx.ip,
                    user_id=principal.user_id,
                    asserted=ctx.asserted,
                ),
                plan=plan,
            )
        except RateLimited as exc:
            self.decisions["denied", exc.policy] += 1
            if self._lockouts is not None:
                await self._lockouts.credential_locked_out(principal, exc)
            raise
        if verdict.reported is not None:
            self.decisions["allowed", verdict.reported.policy.name] += 1
        remaining = None
        cost = 0
        if credits_key is not None:
            cost = next((r.cost for r in plan.routes if r.cost and r.matches(route, method)), 1)
            try:
                remaining = await self._spend(credits_key, cost, principal)
            except UsageExceeded:
                await self.limiter.refund(verdict.hits)  # refused: nothing spent
                raise
        spent = Spent(verdict.hits, credits_key if remaining is not None else None, cost)
        would_refuse = verdict.would_refuse
        for name in would_refuse:
            self.count_would_refuse(name)
        return replace(
            principal,
            rate_limit=verdict.headers(self._wall()),
            credits_remaining=remaining,
            spent=spent,
            would_refuse=would_refuse,
        )

    async def refund(self, spent: Spent) -> None:
        """Give back what a request spent, when it is refused after it was metered
        (its input is invalid): a refused request spends nothing."""
        if spent.hits:
            await self.limiter.refund(spent.hits)
        if spent.credits_key is not None and spent.cost:
            async with self._store.begin() as tx:
                credits = await tx.key_credits_for_update(spent.credits_key)
                if credits is not None:
                    back = replace(credits, remaining=credits.remaining + spent.cost)
                    await tx.set_key_credits(spent.credits_key, back)

    async def _spend(self, key_id: str, cost: int, principal: Principal) -> int | None:
        now = self._clock.now()
        async with self._store.begin() as tx:
            credits = await tx.key_credits_for_update(key_id)
            if credits is None:
                return None
            decision, after = spend(credits, cost, now)
            if after != credits:
                await tx.set_key_credits(key_id, after)
            low = self._credits_low
            if decision.allowed and after.remaining < low <= after.remaining + cost:
                # Once, as the balance crosses the threshold (a webhook event).
                await tx.insert_audit(
                    audit_event(
                        principal,
                        "credits.low",
                        now,
                        target_type="api_key",
                        target_id=key_id,
                        data={"remaining": after.remaining, "threshold": low},
                    )
                )
        if not decision.allowed:
            refill = credits.refill
            exc = UsageExceeded(
                decision.remaining, f"{refill.interval} to {refill.amount}" if refill else None
            )
            self.decisions["denied", exc.policy] += 1
            if self._lockouts is not None:
                await self._lockouts.credential_locked_out(principal, exc)
            raise exc
        return decision.remaining

    async def authentication_failed(self, ip: str | None, credential: str = "key") -> None:
        """Count a failed authentication from ``ip``; past the limit the answer is 429.

        Keys, access tokens, OAuth clients and refresh tokens (``credential``) share
        one budget per address: a guesser gains nothing by switching between them. Past
        it the answer is this 429 (with ``Retry-After``) in place of the refusal, and
        nothing is issued, recorded as use or metered.
        """
        self.failures[credential] += 1
        if ip is None:
            return
        policy = self._auth_failures
        decision = await self.limiter.hit(limit_key(policy, "ip", ip), policy.limit, policy.period)
        if not decision.allowed:
            result = PolicyDecision(policy, limit_key(policy, "ip", ip), decision)
            exc = RateLimited(
                decision.retry_after,
                headers(result, self._wall()),
                policy.name,
                message=f"Too many failed authentications from {ip}. Retry after "
                f"{max(1, math.ceil(decision.retry_after))} seconds.",
            )
            self.decisions["denied", policy.name] += 1
            if self._lockouts is not None:
                self._lockouts.address_locked_out(ip, exc)
            raise exc
