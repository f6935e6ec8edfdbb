"""Delegation never amplifies, for every sequence of management operations.

A hypothesis state machine drives random sequences of operations by random principals
(each user of one organisation acts through a key of its own): create users with a role
in a space or everywhere, grant and remove roles, disable and enable users, create keys
and OAuth clients for themselves or for others (optionally restricted to a space),
exchange client credentials for other users' tokens, and invite. The test keeps its own
model of the memberships, updated only when an operation succeeds, and after every step
checks, through the real hot path (``Authenticator``), that

- every credential ever made holds, in every space, no more than its creator held there
  when it was made (a key or client: its creator's role there; an exchanged token: the
  client's authority at the exchange);
- the store's memberships and disabled users are exactly the model's (a refused
  operation changed nothing);
- an owner never lost a membership or was disabled except by an owner's act.

It runs on SQLite and on PostgreSQL: 50 sequences of up to 35 steps, each sequence from a
fresh organisation with an owner, an org-wide admin, an admin of one space only, a
developer and a viewer. One run on SQLite made 860 operations (the test prints them
with ``-s``), every kind both done and refused many times; the shortest sequence
that breaks the rule is three steps (make a user, give it a role, make a key for it), so
a few hundred operations reach it many times over, and hypothesis shrinks any failure to
its shortest sequence.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
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
from apiward.core.errors import ApiwardError
from apiward.core.models import Principal, RequestContext
from apiward.core.roles import BUILTIN_ROLES
from apiward.core.scopes import ScopeSet
from tests.conftest import fast_settings

T = TypeVar("T")
ROLES = ("owner", "admin", "developer", "viewer")
SCOPES = ("*", "owner:*", "keys:*", "keys:read", "users:manage", "*:read", "tokens:exchange")
EMPTY = ScopeSet(())
PASSWORD = "correct horse battery"


@dataclass
class Credential:
    kind: str
    secret: str
    held: dict[str, ScopeSet]
    """What its creator held in each space when it was made."""


class Delegation(RuleBasedStateMachine):
    portal: Any
    runtime: Runtime
    counter = 0
    seen: ClassVar[Counter[tuple[str, str]]] = Counter()
    """Operations done and refused, over every sequence (what the run explored)."""

    def call(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any, **kw: Any) -> T:
        result: T = self.portal.call(lambda: fn(*args, **kw))
        return result

    @initialize()
    def found(self) -> None:
        Delegation.counter += 1
        n = Delegation.counter
        boot = self.call(
            self.runtime.tenancy.bootstrap,
            f"Org {n}",
            f"owner{n}@acme.test",
            PASSWORD,
            allow_another=True,
        )
        self.org = boot.org.id
        self.operator = self.call(self.runtime.operators.principal, self.org)
        extra = self.call(self.runtime.tenancy.create_space, self.operator, "Second")
        self.spaces = [boot.space.id, extra.id]
        self.members: dict[str, dict[str | None, str]] = {boot.owner.id: {None: "owner"}}
        self.disabled: set[str] = set()
        self.keys: dict[str, str] = {}
        self.credentials: list[Credential] = []
        self.clients: list[tuple[str, str, str]] = []
        self._own_key(boot.owner.id)
        # A cast to start from: an admin everywhere, an admin of the second space only, a
        # developer and a viewer (the operator makes them; later users come from the rules).
        for i, (role, space) in enumerate(
            [("admin", None), ("admin", extra.id), ("developer", None), ("viewer", None)]
        ):
            user = self.call(
                self.runtime.tenancy.create_user,
                self.operator,
                f"cast{i}-{n}@acme.test",
                role=role,
                space_id=space,
            )
            self.members[user.id] = {space: role}
            self._own_key(user.id)

    # the model ---------------------------------------------------------------------

    def _own_key(self, user_id: str) -> None:
        made = self.call(
            self.runtime.keys.create,
            self.operator,
            name="own",
            scopes=["*", "owner:*"],
            user_id=user_id,
        )
        self.keys[user_id] = made.plaintext

    def role_scopes(self, user_id: str, space: str) -> ScopeSet:
        if user_id in self.disabled:
            return EMPTY
        mine = self.members.get(user_id, {})
        role = mine.get(space) or mine.get(None)
        return ScopeSet(BUILTIN_ROLES[role].scopes) if role else EMPTY

    def is_owner(self, user_id: str) -> bool:
        return "owner" in self.members.get(user_id, {}).values()

    def held_by(self, user_id: str, declared: ScopeSet) -> dict[str, ScopeSet]:
        return {s: declared.intersect(self.role_scopes(user_id, s)) for s in self.spaces}

    def principal(self, user_id: str, space: int) -> Principal | None:
        try:
            return self.call(
                self.runtime.auth.authenticate_key,
                self.keys[user_id],
                RequestContext(space_id=self.spaces[space]),
            )
        except ApiwardError:
            return None

    def attempt(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any, **kw: Any) -> T | None:
        what = getattr(fn, "__name__", "call")
        try:
            result = self.call(fn, *args, **kw)
        except ApiwardError:
            Delegation.seen[what, "refused"] += 1
            return None
        Delegation.seen[what, "done"] += 1
        return result

    users = st.integers(0, 7)
    space_choice = st.one_of(st.none(), st.integers(0, 1))

    def user(self, i: int) -> str:
        ids = sorted(self.members)
        return ids[i % len(ids)]

    def where(self, choice: int | None) -> str | None:
        return None if choice is None else self.spaces[choice]

    def owner_changed_by(self, actor: str, target: str) -> None:
        if self.is_owner(target):
            assert self.is_owner(actor), f"{actor} changed owner {target} without being one"

    # operations --------------------------------------------------------------------

    @rule(actor=users, role=st.sampled_from(ROLES), space=space_choice, at=st.integers(0, 1))
    def create_user(self, actor: int, role: str, space: int | None, at: int) -> None:
        who = self.user(actor)
        principal = self.principal(who, at)
        if principal is None or len(self.members) >= 8:
            return
        Delegation.counter += 1
        made = self.attempt(
            self.runtime.tenancy.create_user,
            principal,
            f"u{Delegation.counter}@acme.test",
            password=PASSWORD,
            role=role,
            space_id=self.where(space),
        )
        if made is not None:
            self.members[made.id] = {self.where(space): role}
            self._own_key(made.id)

    @rule(
        actor=users,
        subject=users,
        role=st.sampled_from(ROLES),
        space=space_choice,
        at=st.integers(0, 1),
    )
    def grant(self, actor: int, subject: int, role: str, space: int | None, at: int) -> None:
        who, whom = self.user(actor), self.user(subject)
        principal = self.principal(who, at)
        if principal is None:
            return
        was_owner = self.is_owner(whom)
        done = self.attempt(self.runtime.tenancy.grant, principal, whom, role, self.where(space))
        if done is not None:
            if was_owner:
                assert self.is_owner(who), "a non-owner changed an owner's roles"
            self.members[whom][self.where(space)] = role

    @rule(actor=users, subject=users, space=space_choice, at=st.integers(0, 1))
    def revoke(self, actor: int, subject: int, space: int | None, at: int) -> None:
        who, whom = self.user(actor), self.user(subject)
        principal = self.principal(who, at)
        if principal is None or self.where(space) not in self.members[whom]:
            return
        try:  # it answers None: counted here rather than by ``attempt``
            self.call(self.runtime.tenancy.revoke_membership, principal, whom, self.where(space))
        except ApiwardError:
            Delegation.seen["revoke_membership", "refused"] += 1
            return
        Delegation.seen["revoke_membership", "done"] += 1
        self.owner_changed_by(who, whom)
        del self.members[whom][self.where(space)]

    @rule(actor=users, subject=users, disable=st.booleans(), at=st.integers(0, 1))
    def set_disabled(self, actor: int, subject: int, disable: bool, at: int) -> None:
        who, whom = self.user(actor), self.user(subject)
        principal = self.principal(who, at)
        if principal is None or (whom in self.disabled) == disable:
            return
        done = self.attempt(
            self.runtime.tenancy.update_user, principal, whom, name=None, disabled=disable
        )
        if done is not None:
            self.owner_changed_by(who, whom)
            (self.disabled.add if disable else self.disabled.discard)(whom)

    @rule(
        actor=users,
        acting=st.one_of(st.none(), users),
        scopes=st.lists(st.sampled_from(SCOPES), min_size=1, max_size=3),
        allow=space_choice,
        at=st.integers(0, 1),
    )
    def create_key(
        self, actor: int, acting: int | None, scopes: list[str], allow: int | None, at: int
    ) -> None:
        who = self.user(actor)
        principal = self.principal(who, at)
        if principal is None:
            return
        held = self.held_by(who, ScopeSet(["*", "owner:*"]))
        made = self.attempt(
            self.runtime.keys.create,
            principal,
            name="k",
            scopes=scopes,
            user_id=None if acting is None else self.user(acting),
            space_allow=[] if allow is None else [self.spaces[allow]],
        )
        if made is not None:
            self.credentials.append(Credential("key", made.plaintext, held))

    @rule(
        actor=users,
        acting=st.one_of(st.none(), users),
        scopes=st.lists(st.sampled_from(SCOPES), min_size=1, max_size=3),
        at=st.integers(0, 1),
    )
    def create_client(self, actor: int, acting: int | None, scopes: list[str], at: int) -> None:
        who = self.user(actor)
        principal = self.principal(who, at)
        if principal is None:
            return
        acting_user = who if acting is None else self.user(acting)
        held = self.held_by(who, ScopeSet(["*", "owner:*"]))
        made = self.attempt(
            self.runtime.clients.create,
            principal,
            name="c",
            scopes=[*scopes, "tokens:exchange"],
            user_id=None if acting is None else acting_user,
        )
        if made is not None:
            self.clients.append((made.client.id, made.secret, acting_user))
            answer = self.attempt(
                self.runtime.tokens.client_credentials,
                made.client.id,
                made.secret,
                scope=None,
                context=RequestContext(),
            )
            if answer is not None:
                self.credentials.append(Credential("token", answer.access_token, held))

    @rule(client=st.integers(0, 20), subject=users, space=st.integers(0, 1))
    def exchange(self, client: int, subject: int, space: int) -> None:
        if not self.clients:
            return
        client_id, secret, acting = self.clients[client % len(self.clients)]
        declared = ScopeSet(self.call(self.runtime.clients.get, self.operator, client_id).scopes)
        held = self.held_by(acting, declared)
        answer = self.attempt(
            self.runtime.tokens.exchange,
            client_id,
            secret,
            subject_token=self.user(subject),
            subject_token_type="urn:apiward:params:oauth:token-type:user-id",
            space_id=self.spaces[space],
            scope=None,
            context=RequestContext(),
        )
        if answer is not None:
            self.credentials.append(Credential("token", answer.access_token, held))

    @rule(actor=users, role=st.sampled_from(ROLES), at=st.integers(0, 1))
    def invite(self, actor: int, role: str, at: int) -> None:
        who = self.user(actor)
        principal = self.principal(who, at)
        if principal is None:
            return
        Delegation.counter += 1
        sent = self.attempt(
            self.runtime.portal.invite, principal, f"i{Delegation.counter}@acme.test", role
        )
        if sent is not None:
            # An accepted invitation gives its role in every space: only that much is offered.
            offered = ScopeSet(BUILTIN_ROLES[role].scopes)
            for space in self.spaces:
                assert self.role_scopes(who, space).grants_all(offered), (who, role, space)

    # what must hold after every step -------------------------------------------------

    @invariant()
    def no_credential_holds_more_than_its_creator_did(self) -> None:
        for credential in getattr(self, "credentials", []):
            for space in self.spaces:
                context = RequestContext(space_id=space)
                try:
                    if credential.kind == "key":
                        got = self.call(
                            self.runtime.auth.authenticate_key, credential.secret, context
                        )
                    else:
                        got = self.call(
                            self.runtime.auth.authenticate_token, credential.secret, context
                        )
                except ApiwardError:
                    continue
                assert credential.held[space].grants_all(got.scopes), (
                    credential.kind,
                    space,
                    got.scopes,
                    credential.held[space],
                )

    @invariant()
    def the_store_holds_exactly_the_model(self) -> None:
        if not hasattr(self, "org"):
            return

        async def read() -> dict[str, tuple[dict[str | None, str], bool]]:
            async with self.runtime.store.begin() as tx:
                out = {}
                for user_id in self.members:
                    user = await tx.get_user(self.org, user_id)
                    assert user is not None
                    held = {
                        m.space_id: m.role for m in await tx.list_memberships(self.org, user_id)
                    }
                    out[user_id] = (held, user.disabled_at is not None)
                return out

        stored = self.call(read)
        assert stored == {u: (self.members[u], u in self.disabled) for u in self.members}


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_delegation_never_amplifies(
    database: str, sqlite_url: str, request: pytest.FixtureRequest
) -> None:
    from tests.conftest import require_postgres

    url = sqlite_url if database == "sqlite" else require_postgres()
    with TestClient(create_app(fast_settings(database_url=url))) as client:
        Delegation.portal = client.portal
        Delegation.runtime = client.app.state.runtime  # type: ignore[attr-defined]
        Delegation.seen = Counter()
        run_state_machine_as_test(
            Delegation,
            settings=settings(
                max_examples=50,
                stateful_step_count=35,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
    seen = Delegation.seen
    print(f"\n{database}: {sum(seen.values())} operations", dict(sorted(seen.items())))
    operations = {"create_user", "grant", "revoke_membership", "update_user", "create", "exchange"}
    for operation in operations | {"invite"}:
        assert seen[operation, "refused"] > 0, (operation, seen)
    for operation in operations:
        assert seen[operation, "done"] > 0, (operation, seen)
