"""Delegation never amplifies, for every sequence of management operations.

A hypothesis state machine drives random sequences of operations by random principals
(each user of one organisation acts through a key of its own): create users with a role
in a space or everywhere, grant and remove roles, disable and enable users, create keys
and OAuth clients for themselves or for others (optionally restricted to a space),
exchange client credentials for other users' tokens, invite (and accept invitations,
whose senders may have lost their role or been disabled since, as users or through their
portal accounts), rename, archive and bring back spaces, and act on a portal account's
projects. The test keeps its own model of the memberships, updated only when an operation
succeeds, and after every step checks, through the real hot path (``Authenticator``), that

- every credential ever made holds, in every space, no more than its creator held there
  when it was made (a key or client: its creator's role there; an exchanged token: the
  client's authority at the exchange);
- the store's memberships and disabled users are exactly the model's (a refused
  operation changed nothing);
- an owner never lost a membership or was disabled except by an owner's act;
- a space changed only by someone holding ``spaces:manage`` in it, and came back from
  the archive only by its archiver or someone covering the archiver (an owner always);
- an invitation was accepted exactly when its sender, active, still held its role in
  every space;
- a portal account's projects were reached exactly by credentials its person made.

It runs on SQLite and on PostgreSQL: 50 sequences of up to 35 steps, each sequence from a
fresh organisation (a portal project) with an owner, an org-wide admin, an admin of one
space only, a developer and a viewer, each with a portal account. One run on SQLite
made about 800 operations (the test prints them with ``-s``), every kind both done and
refused; the shortest sequence that breaks the rule is three steps (make a user, give it
a role, make a key for it), so a few hundred operations reach it many times over, and
hypothesis shrinks any failure to its shortest sequence.
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
from apiward.core.ids import new_id
from apiward.core.models import Account, Membership, Principal, RequestContext, User
from apiward.core.roles import BUILTIN_ROLES
from apiward.core.scopes import ScopeSet
from tests.conftest import fast_settings
from tests.mailbox import Mailbox, link_in, smtp_server

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
    maker: str | None = None
    """The person recorded as its maker (a key's or client's ``created_by``)."""
    acting: str | None = None
    """The user it acts as."""


@dataclass
class Invitation:
    token: str
    sender: str
    role: str


class Delegation(RuleBasedStateMachine):
    portal: Any
    runtime: Runtime
    mailbox: Mailbox
    counter = 0
    seen: ClassVar[Counter[tuple[str, str]]] = Counter()
    """Operations done and refused, over every sequence (what the run explored)."""

    def call(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any, **kw: Any) -> T:
        result: T = self.portal.call(lambda: fn(*args, **kw))
        return result

    async def as_token(self, token: str, context: RequestContext) -> Principal:
        """Who an access token acts as, as a protected request sees it, spending nothing
        (no scopes required, limits exempt)."""
        principal: Principal = await self.runtime.auth.authenticate(
            f"Bearer {token}", context, exempt=True
        )
        return principal

    @initialize()
    def found(self) -> None:
        Delegation.counter += 1
        n = Delegation.counter
        self.accounts: dict[str, str] = {}
        """The address of each user's portal account."""
        self.accounts_off: set[str] = set()
        """Users whose portal account is disabled."""
        owner_email = f"owner{n}@acme.test"
        boot = self.call(
            self.runtime.tenancy.create_project,
            f"Org {n}",
            self.call(self._account, owner_email),
            RequestContext(),
        )
        self.org = boot.org.id
        self.accounts[boot.owner.id] = owner_email
        self.operator = self.call(self.runtime.operators.principal, self.org)
        extra = self.call(self.runtime.tenancy.create_space, self.operator, "Second")
        self.spaces = [boot.space.id, extra.id]
        self.members: dict[str, dict[str | None, str]] = {boot.owner.id: {None: "owner"}}
        self.disabled: set[str] = set()
        self.keys: dict[str, str] = {}
        self.key_maker: dict[str, str] = {}
        """Who each user's own key records as its maker."""
        self.credentials: list[Credential] = []
        self.clients: list[tuple[str, str, str, str]] = []
        """Each client's id, secret, the user it acts as, and its maker."""
        self.archived_by: dict[str, str] = {}
        self.invitations: list[Invitation] = []
        self._own_key(boot.owner.id)
        # A cast to start from: an admin everywhere, an admin of the second space only, a
        # developer and a viewer, each with a portal account (later users come from the
        # rules).
        for i, (role, space) in enumerate(
            [("admin", None), ("admin", extra.id), ("developer", None), ("viewer", None)]
        ):
            email = f"cast{i}-{n}@acme.test"
            user_id = self.call(self._member, email, role, space)
            self.members[user_id] = {space: role}
            self.accounts[user_id] = email
            self._own_key(user_id)

    async def _account(self, email: str) -> Account:
        now = self.runtime.clock.now()
        account = Account(new_id("acc"), email, email.split("@")[0], "x", now, confirmed_at=now)
        async with self.runtime.store.begin() as tx:
            await tx.insert_account(account)
        return account

    async def _member(self, email: str, role: str, space: str | None) -> str:
        """A user of the org with a role and a portal account of its own."""
        account = await self._account(email)
        now = account.created_at
        user = User(new_id("usr"), self.org, email, account.name, None, now, account_id=account.id)
        async with self.runtime.store.begin() as tx:
            await tx.insert_user(user)
            await tx.put_membership(Membership(self.org, user.id, space, role, now))
        return user.id

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
        self.key_maker[user_id] = made.key.created_by

    def active(self, user_id: str) -> bool:
        return user_id not in self.disabled and user_id not in self.accounts_off

    def role_scopes(self, user_id: str, space: str) -> ScopeSet:
        return self.roles(user_id, space) if self.active(user_id) else EMPTY

    def roles(self, user_id: str, space: str | None) -> ScopeSet:
        """The scopes of the user's role in a space (None: its org-wide role), whether or
        not the user is active."""
        mine = self.members.get(user_id, {})
        role = (mine.get(space) or mine.get(None)) if space else mine.get(None)
        return ScopeSet(BUILTIN_ROLES[role].scopes) if role else EMPTY

    def covers(self, user_id: str, other: str) -> bool:
        """Whether the user's roles hold, in every space and everywhere, all the other's."""
        return all(
            self.roles(user_id, s).includes(self.roles(other, s)) for s in (*self.spaces, None)
        )

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

    @rule(
        actor=users,
        subject=users,
        disable=st.booleans(),
        at=st.integers(0, 1),
        account=st.booleans(),
    )
    def set_disabled(self, actor: int, subject: int, disable: bool, at: int, account: bool) -> None:
        """A user disabled or enabled by a principal, or (``account``) a person's portal
        account by the deployment's operator."""
        if account:
            self.set_account_disabled(subject, disable)
            return
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
            acting_user = who if acting is None else self.user(acting)
            maker = self.key_maker[who]
            assert (made.key.created_by, made.key.acting_user_id) == (maker, acting_user)
            self.credentials.append(Credential("key", made.plaintext, held, maker, acting_user))

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
            maker = self.key_maker[who]
            assert made.client.created_by == maker
            self.clients.append((made.client.id, made.secret, acting_user, maker))
            answer = self.attempt(
                self.runtime.tokens.client_credentials,
                made.client.id,
                made.secret,
                scope=None,
                context=RequestContext(),
            )
            if answer is not None:
                token = Credential("token", answer.access_token, held, maker, acting_user)
                self.credentials.append(token)

    @rule(client=st.integers(0, 20), subject=st.one_of(st.none(), users), space=st.integers(0, 1))
    def exchange(self, client: int, subject: int | None, space: int) -> None:
        """A client's token for a user (None: the user the client acts as)."""
        if not self.clients:
            return
        client_id, secret, acting, maker = self.clients[client % len(self.clients)]
        subject_id = acting if subject is None else self.user(subject)
        declared = ScopeSet(self.call(self.runtime.clients.get, self.operator, client_id).scopes)
        held = self.held_by(acting, declared)
        answer = self.attempt(
            self.runtime.tokens.exchange,
            client_id,
            secret,
            subject_token=subject_id,
            subject_token_type="urn:apiward:params:oauth:token-type:user-id",
            space_id=self.spaces[space],
            scope=None,
            context=RequestContext(),
        )
        if answer is not None:
            token = Credential("token", answer.access_token, held, maker, subject_id)
            self.credentials.append(token)

    @rule(actor=users, role=st.sampled_from(ROLES), at=st.integers(0, 1))
    def invite(self, actor: int, role: str, at: int) -> None:
        who = self.user(actor)
        principal = self.principal(who, at)
        if principal is None:
            return
        Delegation.counter += 1
        email = f"i{Delegation.counter}@acme.test"
        sent = self.attempt(self.runtime.portal.invite, principal, email, role)
        if sent is not None:
            # An accepted invitation gives its role in every space: only that much is offered.
            offered = ScopeSet(BUILTIN_ROLES[role].scopes)
            for space in self.spaces:
                assert self.role_scopes(who, space).grants_all(offered), (who, role, space)
            token = link_in(self.mailbox.next(email)).split("token=")[1]
            self.invitations.append(Invitation(token, who, role))

    @rule(which=st.integers(0, 20))
    def accept(self, which: int) -> None:
        """Accept an invitation: granted exactly when its sender, active, still holds its
        role in every space (a sender demoted or disabled since hands out nothing)."""
        if not self.invitations or len(self.members) >= 10:
            return
        invitation = self.invitations[which % len(self.invitations)]
        offered = ScopeSet(BUILTIN_ROLES[invitation.role].scopes)
        sender = invitation.sender
        expected = self.active(sender) and all(
            self.roles(sender, s).includes(offered) for s in (*self.spaces, None)
        )
        joined = self.attempt(
            self.runtime.portal.accept,
            invitation.token,
            RequestContext(),
            name="Invited",
            password=PASSWORD,
        )
        assert (joined is not None) == expected, (invitation, self.members.get(sender))
        if joined is not None:
            account, project = joined
            self.invitations.remove(invitation)
            self.members[project.user.id] = {None: invitation.role}
            self.accounts[project.user.id] = account.email
            self._own_key(project.user.id)

    def set_account_disabled(self, subject: int, disable: bool) -> None:
        """The deployment's operator disables or enables a person's portal account (one
        enabled, or one disabled, as asked)."""
        candidates = [u for u in sorted(self.accounts) if (u in self.accounts_off) != disable]
        if not candidates:
            return
        whom = candidates[subject % len(candidates)]
        self.call(self.runtime.portal.set_disabled, self.accounts[whom], disable, RequestContext())
        self.runtime.cache.clear()  # as every process's poller does within its interval
        Delegation.seen["account_disabled" if disable else "account_enabled", "done"] += 1
        (self.accounts_off.add if disable else self.accounts_off.discard)(whom)

    @rule(
        actor=users,
        space=st.integers(0, 1),
        archive=st.one_of(st.none(), st.booleans()),
        rename=st.booleans(),
        at=st.integers(0, 1),
    )
    def change_space(
        self, actor: int, space: int, archive: bool | None, rename: bool, at: int
    ) -> None:
        """Rename, archive or bring back a space: done exactly when the actor holds
        ``spaces:manage`` there and, bringing it back, is its archiver or covers them."""
        who = self.user(actor)
        principal = self.principal(who, at)
        if principal is None:
            return
        target = self.spaces[space]
        toggled = archive is not None and archive != (target in self.archived_by)
        archiver = self.archived_by.get(target)
        expected = self.role_scopes(who, target).grants("spaces:manage")
        if toggled and archive and space == 0:
            expected = False  # the default space stays
        if toggled and not archive and archiver not in (None, who):
            owner = all(self.roles(who, s).grants("owner:*") for s in (*self.spaces, None))
            expected = expected and (owner or self.covers(who, archiver or ""))
        Delegation.counter += 1
        done = self.attempt(
            self.runtime.tenancy.update_space,
            principal,
            target,
            name=f"S{Delegation.counter}" if rename else None,
            archived=archive,
        )
        assert (done is not None) == expected, (who, target, archive, archiver, self.members)
        if done is not None and toggled:
            if archive:
                self.archived_by[target] = who
            else:
                del self.archived_by[target]

    @rule(which=st.integers(0, 40))
    def reach_account(self, which: int) -> None:
        """Act on a portal account's projects: only through a credential its person made."""
        if not self.credentials:
            return
        credential = self.credentials[which % len(self.credentials)]
        context = RequestContext(space_id=self.spaces[0])
        try:
            if credential.kind == "key":
                principal = self.call(
                    self.runtime.auth.authenticate_key, credential.secret, context
                )
            else:
                principal = self.call(self.as_token, credential.secret, context)
        except ApiwardError:
            return
        acting = principal.user_id
        expected = (
            credential.maker == acting
            and acting in self.accounts
            and acting not in self.accounts_off
        )
        found = self.attempt(self.runtime.portal.account_of, principal)
        assert (found is not None) == expected, (credential, acting)
        if found is not None:
            assert found.email == self.accounts[acting]

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
                        got = self.call(self.as_token, credential.secret, context)
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

        async def spaces() -> dict[str, str | None]:
            async with self.runtime.store.begin() as tx:
                out = {}
                for space_id in self.spaces:
                    space = await tx.get_space(self.org, space_id)
                    assert space is not None
                    assert (space.archived_at is None) == (space.archived_by is None)
                    out[space_id] = space.archived_by
                return out

        assert self.call(spaces) == {s: self.archived_by.get(s) for s in self.spaces}


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_delegation_never_amplifies(
    database: str, sqlite_url: str, request: pytest.FixtureRequest
) -> None:
    from tests.conftest import require_postgres

    url = sqlite_url if database == "sqlite" else require_postgres()
    operations = {"create_user", "grant", "revoke_membership", "update_user", "create", "exchange"}
    wanted = {(o, "refused") for o in operations | {"invite"}} | {(o, "done") for o in operations}
    Delegation.seen = Counter()
    # Each batch checks the rule on every step; a batch whose random sequences happened
    # to leave an operation never done (or never refused) is followed by another, so
    # that the assertion below is about the model's reach, not one draw's luck.
    for _ in range(3):
        with smtp_server() as mailbox:
            app_settings = fast_settings(
                database_url=url,
                smtp_host="127.0.0.1",
                smtp_port=mailbox.port,
                smtp_security="none",
                portal_ip_limit="1000000/hour",
                portal_email_limit="1000000/hour",
            )
            _run(app_settings, mailbox)
        if all(Delegation.seen[outcome] > 0 for outcome in wanted):
            break
    seen = Delegation.seen
    print(f"\n{database}: {sum(seen.values())} operations", dict(sorted(seen.items())))
    for outcome in sorted(wanted):
        assert seen[outcome] > 0, (outcome, seen)


def _run(app_settings: Any, mailbox: Mailbox) -> None:
    with TestClient(create_app(app_settings)) as client:
        Delegation.portal = client.portal
        Delegation.runtime = client.app.state.runtime  # type: ignore[attr-defined]
        Delegation.mailbox = mailbox
        run_state_machine_as_test(
            Delegation,
            settings=settings(
                # the whole budget at every depth: the assertions below need each
                # operation both done and refused
                max_examples=50,
                stateful_step_count=35,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
