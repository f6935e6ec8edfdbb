"""What the operator set on a key stays the operator's, for every sequence of tenant changes.

A hypothesis state machine starts from a key the operator made (the CLI's principal) with
an expiry and IP and space allow-lists, then runs random sequences of changes by the
tenant's owner key and by the key itself: new expiries (none, earlier, later), new IP
allow-lists (inside, across and beyond the operator's blocks, empty), new space
allow-lists (subsets, others, empty), and rolls. After every step, through the store,

- the key's expiry is set and no later than the operator's, every block of its IP
  allow-list lies inside one of the operator's, its space allow-list is a non-empty
  subset of the operator's, and the recorded bounds are still the operator's;
- a refused change changed nothing.

It runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, ClassVar, TypeVar

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from apiward.adapters.http.app import create_app
from apiward.adapters.runtime import Runtime
from apiward.core.errors import ApiwardError, OperatorOnly
from apiward.core.models import ApiKey, Principal, RequestContext
from tests.conftest import fast_settings

T = TypeVar("T")
OPERATOR_IPS = ("10.0.0.0/8", "2001:db8::/32")
IPS = (
    "10.0.0.0/8",
    "10.1.0.0/16",
    "10.2.3.4/32",
    "2001:db8:1::/48",
    "0.0.0.0/0",
    "11.0.0.0/8",
    "192.0.2.0/24",
    "::/0",
)
OPERATOR_DAYS = 30


class TenantChanges(RuleBasedStateMachine):
    portal: Any
    runtime: Runtime
    counter = 0
    seen: ClassVar[Counter[tuple[str, str]]] = Counter()

    def call(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any, **kw: Any) -> T:
        result: T = self.portal.call(lambda: fn(*args, **kw))
        return result

    @initialize()
    def operator_makes_a_bounded_key(self) -> None:
        TenantChanges.counter += 1
        n = TenantChanges.counter
        rt = self.runtime
        boot = self.call(
            rt.tenancy.bootstrap,
            f"Org {n}",
            f"o{n}@acme.test",
            "correct horse battery",
            allow_another=True,
        )
        operator = self.call(rt.operators.principal, boot.org.id)
        self.org = boot.org.id
        self.spaces = [boot.space.id] + [
            self.call(rt.tenancy.create_space, operator, f"S{i}").id for i in range(2)
        ]
        owner = self.call(rt.keys.create, operator, name="owner", scopes=["*", "owner:*"])
        self.owner_secret = owner.plaintext
        self.limit = rt.clock.now() + timedelta(days=OPERATOR_DAYS)
        made = self.call(
            rt.keys.create,
            operator,
            name="bounded",
            scopes=["keys:read", "keys:write"],
            expires_at=self.limit,
            ip_allow=list(OPERATOR_IPS),
            space_allow=self.spaces[:2],
        )
        self.key_id, self.key_secret = made.key.id, made.plaintext
        self.bounds = made.key.bounds

    # the actors ----------------------------------------------------------------------

    def actor(self, own: bool) -> Principal:
        if not own:
            return self.call(
                self.runtime.auth.authenticate_key, self.owner_secret, RequestContext()
            )
        key = self.stored()
        ip = str(ipaddress.ip_network(key.ip_allow[0]).network_address)
        context = RequestContext(ip=ip, space_id=key.space_allow[0])
        return self.call(self.runtime.auth.authenticate_key, self.key_secret, context)

    def stored(self) -> ApiKey:
        return self.call(self.runtime.keys.get, self.actor_owner(), self.key_id)

    def actor_owner(self) -> Principal:
        return self.call(self.runtime.auth.authenticate_key, self.owner_secret, RequestContext())

    def attempt(self, name: str, own: bool, **change: Any) -> None:
        before = self.stored()
        try:
            self.call(self.runtime.keys.update, self.actor(own), self.key_id, **change)
        except ApiwardError as exc:
            TenantChanges.seen[name, type(exc).__name__] += 1
            assert self.stored() == before, "a refused change changed the key"
            return
        TenantChanges.seen[name, "done"] += 1

    # the changes ---------------------------------------------------------------------

    @rule(own=st.booleans(), days=st.none() | st.integers(1, 2 * OPERATOR_DAYS))
    def change_expiry(self, own: bool, days: int | None) -> None:
        if days is None:
            self.attempt("expiry", own, clear_expiry=True)
        else:
            at = self.runtime.clock.now() + timedelta(days=days)
            self.attempt("expiry", own, expires_at=at)

    @rule(own=st.booleans(), ips=st.lists(st.sampled_from(IPS), max_size=3))
    def change_ip_allow(self, own: bool, ips: list[str]) -> None:
        self.attempt("ip_allow", own, ip_allow=ips)

    @rule(own=st.booleans(), picks=st.lists(st.integers(0, 2), max_size=3))
    def change_space_allow(self, own: bool, picks: list[int]) -> None:
        self.attempt("space_allow", own, space_allow=[self.spaces[i] for i in picks])

    @rule(own=st.booleans())
    def roll(self, own: bool) -> None:
        rolled = self.call(self.runtime.keys.roll, self.actor(own), self.key_id)
        self.key_id, self.key_secret = rolled.key.id, rolled.plaintext
        TenantChanges.seen["roll", "done"] += 1

    # what always holds ---------------------------------------------------------------

    @invariant()
    def the_key_stays_within_what_the_operator_set(self) -> None:
        if not hasattr(self, "key_id"):
            return
        key = self.stored()
        assert key.bounds == self.bounds
        expires: datetime | None = key.expires_at
        assert expires is not None and expires <= self.limit
        outer = [ipaddress.ip_network(c) for c in OPERATOR_IPS]
        assert key.ip_allow
        for cidr in key.ip_allow:
            inner = ipaddress.ip_network(cidr)
            assert any(
                inner.version == o.version and inner.subnet_of(o)  # type: ignore[arg-type]
                for o in outer
            ), key.ip_allow
        assert key.space_allow and set(key.space_allow) <= set(self.spaces[:2])


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_tenant_changes_never_loosen_what_the_operator_set(database: str, sqlite_url: str) -> None:
    from tests.conftest import require_postgres

    url = sqlite_url if database == "sqlite" else require_postgres()
    with TestClient(create_app(fast_settings(database_url=url))) as client:
        TenantChanges.portal = client.portal
        TenantChanges.runtime = client.app.state.runtime  # type: ignore[attr-defined]
        TenantChanges.seen = Counter()
        run_state_machine_as_test(
            TenantChanges,
            settings=settings(
                # the whole budget at every depth: the assertions below need each
                # operation both done and refused
                max_examples=20,
                stateful_step_count=20,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    seen = TenantChanges.seen
    print(f"\n{database}:", dict(sorted(seen.items())))
    for change in ("expiry", "ip_allow", "space_allow"):
        assert seen[change, "done"] > 0 and seen[change, OperatorOnly.__name__] > 0, seen
    assert seen["roll", "done"] > 0
