"""The store contract: every ``Transaction`` method, through the SQLAlchemy adapter.

Each test runs once on SQLite and once on the real PostgreSQL (the ``database_url``
fixture of ``tests/conftest.py``), on a schema built by the migrations, so the two
back-ends are held to the same behaviour. The tests speak only the ``Store[Transaction]`` and
``Transaction`` protocols of ``apiward.services.ports``.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from apiward.adapters.storage.sql import SqlStore, create_engine
from apiward.core.errors import Conflict, InvalidInput, ServiceUnavailable
from apiward.core.ids import new_id
from apiward.core.models import (
    ApiKey,
    AuditEvent,
    AuditFilter,
    Environment,
    KeyFilter,
    KeyState,
    Membership,
    OAuthClient,
    Organisation,
    PageRequest,
    RefreshToken,
    Role,
    Space,
    User,
)
from apiward.services.ports import Store, Transaction

pytestmark = pytest.mark.anyio

UNREACHABLE_URL = "postgresql+asyncpg://postgres@127.0.0.1:1/test"


# --- builders -----------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _org(at: datetime | None = None) -> Organisation:
    org_id = new_id("org")
    return Organisation(id=org_id, name=f"Org {org_id}", created_at=at or _now())


def _space(org_id: str, at: datetime, *, name: str = "Space", **fields: Any) -> Space:
    return Space(
        id=new_id("spc"), org_id=org_id, name=name, is_default=False, created_at=at, **fields
    )


def _user(org_id: str, at: datetime, *, email: str | None = None, **fields: Any) -> User:
    user_id = new_id("usr")
    values: dict[str, Any] = {
        "id": user_id,
        "org_id": org_id,
        "email": email or f"{user_id.lower()}@example.test",
        "name": "Someone",
        "password_hash": None,
        "created_at": at,
    }
    values.update(fields)
    return User(**values)


def _key(org_id: str, created_by: str, at: datetime, **fields: Any) -> ApiKey:
    values: dict[str, Any] = {
        "id": new_id("key"),
        "org_id": org_id,
        "environment": "live",
        "name": "key",
        "digest": secrets.token_hex(32),
        "prefix": "aw_live_",
        "last4": "wxyz",
        "scopes": ("keys:read",),
        "created_by": created_by,
        "created_at": at,
        "updated_at": at,
    }
    values.update(fields)
    return ApiKey(**values)


def _event(org_id: str, at: datetime, **fields: Any) -> AuditEvent:
    values: dict[str, Any] = {
        "id": new_id("evt"),
        "org_id": org_id,
        "environment": "live",
        "type": "key.created",
        "created_at": at,
    }
    values.update(fields)
    return AuditEvent(**values)


async def _add_org(store: Store[Transaction], at: datetime | None = None) -> Organisation:
    org = _org(at)
    async with store.begin() as tx:
        await tx.insert_org(org)
    return org


async def _add_user(store: Store[Transaction], org_id: str, at: datetime | None = None) -> User:
    user = _user(org_id, at or _now())
    async with store.begin() as tx:
        await tx.insert_user(user)
    return user


async def _tenant(store: Store[Transaction]) -> tuple[Organisation, User]:
    """An organisation with one user, in separate committed transactions."""
    org = await _add_org(store)
    return org, await _add_user(store, org.id)


# --- organisations and environments -------------------------------------------------


async def test_org_round_trips_and_orgs_are_listed_oldest_first(store: Store[Transaction]) -> None:
    t0 = _now()
    newer, older = _org(t0 + timedelta(seconds=1)), _org(t0)
    async with store.begin() as tx:
        await tx.insert_org(newer)
        await tx.insert_org(older)
    async with store.begin() as tx:
        assert await tx.get_org(older.id) == older
        assert await tx.get_org(new_id("org")) is None
        assert await tx.list_orgs() == [older, newer]


async def test_environments_are_listed_by_name_within_their_org(store: Store[Transaction]) -> None:
    org, other = await _add_org(store), await _add_org(store)
    t0 = _now()
    test_env = Environment(new_id("env"), org.id, "test", t0)
    live_env = Environment(new_id("env"), org.id, "live", t0)
    async with store.begin() as tx:
        await tx.insert_environment(test_env)
        await tx.insert_environment(live_env)
        await tx.insert_environment(Environment(new_id("env"), other.id, "live", t0))
    async with store.begin() as tx:
        assert await tx.list_environments(org.id) == [live_env, test_env]
        assert await tx.list_environments(new_id("org")) == []


# --- spaces ---------------------------------------------------------------------------


async def test_space_round_trips_and_the_default_space_is_found(store: Store[Transaction]) -> None:
    org, empty = await _add_org(store), await _add_org(store)
    t0 = _now()
    default = replace(_space(org.id, t0, name="Default"), is_default=True)
    extra = _space(org.id, t0 + timedelta(seconds=1), name="Extra")
    async with store.begin() as tx:
        await tx.insert_space(extra)
        await tx.insert_space(default)
    async with store.begin() as tx:
        assert await tx.get_space(org.id, extra.id) == extra
        assert await tx.get_space(org.id, new_id("spc")) is None
        assert await tx.default_space(org.id) == default
        assert await tx.default_space(empty.id) is None


async def test_list_spaces_paginates_oldest_first_and_hides_archived_unless_asked(
    store: Store[Transaction],
) -> None:
    org, other = await _add_org(store), await _add_org(store)
    t0 = _now()
    spaces = [_space(org.id, t0 + timedelta(seconds=i), name=f"S{i}") for i in range(5)]
    spaces[1] = replace(spaces[1], archived_at=t0 + timedelta(minutes=1))
    async with store.begin() as tx:
        for space in reversed(spaces):
            await tx.insert_space(space)
        await tx.insert_space(_space(other.id, t0))
    active = [s for s in spaces if s.archived_at is None]
    async with store.begin() as tx:
        everything = await tx.list_spaces(org.id, PageRequest(1, 10), include_archived=True)
        first = await tx.list_spaces(org.id, PageRequest(1, 2), include_archived=False)
        last = await tx.list_spaces(org.id, PageRequest(2, 3), include_archived=False)
        beyond = await tx.list_spaces(org.id, PageRequest(5, 2), include_archived=True)
    assert (everything.items, everything.total) == (spaces, 5)
    assert (first.items, first.total, first.page, first.page_size) == (active[:2], 4, 1, 2)
    assert (last.items, last.total, last.page, last.page_size) == (active[3:], 4, 2, 3)
    assert (beyond.items, beyond.total) == ([], 5)


async def test_active_space_ids_exclude_archived_spaces_and_other_orgs(
    store: Store[Transaction],
) -> None:
    org, other = await _add_org(store), await _add_org(store)
    t0 = _now()
    live = _space(org.id, t0)
    archived = _space(org.id, t0, archived_at=t0)
    foreign = _space(other.id, t0)
    async with store.begin() as tx:
        for space in (live, archived, foreign):
            await tx.insert_space(space)
    async with store.begin() as tx:
        assert await tx.active_space_ids(org.id) == [live.id]
        assert await tx.active_space_ids(new_id("org")) == []


async def test_update_space_renames_archives_and_unarchives(store: Store[Transaction]) -> None:
    org = await _add_org(store)
    t0 = _now()
    space = _space(org.id, t0, name="Before")
    async with store.begin() as tx:
        await tx.insert_space(space)
    archived = replace(
        space, name="After", archived_at=t0 + timedelta(hours=1), archived_by=new_id("usr")
    )
    async with store.begin() as tx:
        await tx.update_space(archived)
    async with store.begin() as tx:
        stored = await tx.get_space(org.id, space.id)
        assert stored == archived
        assert stored.archived_at is not None
        assert stored.archived_at.tzinfo is not None
        await tx.update_space(replace(archived, archived_at=None, archived_by=None))
    async with store.begin() as tx:
        back = await tx.get_space(org.id, space.id)
        assert back == replace(archived, archived_at=None, archived_by=None)


# --- users ----------------------------------------------------------------------------


async def test_user_round_trips_and_is_found_by_email_within_its_org(
    store: Store[Transaction],
) -> None:
    org, other = await _add_org(store), await _add_org(store)
    user = _user(org.id, _now(), email="ada@example.test", password_hash="$argon2id$v=19$x")
    async with store.begin() as tx:
        await tx.insert_user(user)
    async with store.begin() as tx:
        assert await tx.get_user(org.id, user.id) == user
        assert await tx.get_user(org.id, new_id("usr")) is None
        assert await tx.find_user_by_email(org.id, "ada@example.test") == user
        assert await tx.find_user_by_email(org.id, "bob@example.test") is None
        assert await tx.find_user_by_email(other.id, "ada@example.test") is None


async def test_list_users_paginates_oldest_first_with_total_page_and_page_size(
    store: Store[Transaction],
) -> None:
    org, other = await _add_org(store), await _add_org(store)
    t0 = _now()
    users = [_user(org.id, t0 + timedelta(seconds=i)) for i in range(5)]
    async with store.begin() as tx:
        for user in reversed(users):
            await tx.insert_user(user)
        await tx.insert_user(_user(other.id, t0))
    async with store.begin() as tx:
        middle = await tx.list_users(org.id, PageRequest(page=2, page_size=2))
        last = await tx.list_users(org.id, PageRequest(page=3, page_size=2))
        beyond = await tx.list_users(org.id, PageRequest(page=4, page_size=2))
    assert (middle.items, middle.total, middle.page, middle.page_size) == (users[2:4], 5, 2, 2)
    assert (last.items, last.total, last.page) == (users[4:], 5, 3)
    assert (beyond.items, beyond.total) == ([], 5)


async def test_update_user_changes_name_password_hash_and_disabled_at(
    store: Store[Transaction],
) -> None:
    org, user = await _tenant(store)
    changed = replace(user, name="Renamed", password_hash="$argon2id$new", disabled_at=_now())
    async with store.begin() as tx:
        await tx.update_user(changed)
    async with store.begin() as tx:
        assert await tx.get_user(org.id, user.id) == changed
        await tx.update_user(replace(changed, disabled_at=None, password_hash=None))
    async with store.begin() as tx:
        assert await tx.get_user(org.id, user.id) == replace(
            changed, disabled_at=None, password_hash=None
        )


async def test_duplicate_email_in_one_org_raises_conflict_and_rolls_back(
    store: Store[Transaction],
) -> None:
    org, user = await _tenant(store)
    other = await _add_org(store)
    bystander = _user(org.id, _now())

    async def insert_duplicate() -> None:
        async with store.begin() as tx:
            await tx.insert_user(bystander)
            await tx.insert_user(_user(org.id, _now(), email=user.email))

    with pytest.raises(Conflict):
        await insert_duplicate()
    same_email_elsewhere = _user(other.id, _now(), email=user.email)
    async with store.begin() as tx:
        assert await tx.get_user(org.id, bystander.id) is None
        await tx.insert_user(same_email_elsewhere)
    async with store.begin() as tx:
        assert await tx.get_user(other.id, same_email_elsewhere.id) == same_email_elsewhere


async def test_insert_referencing_an_unknown_org_raises_conflict(store: Store[Transaction]) -> None:
    """Foreign keys are enforced on both back-ends (SQLite needs PRAGMA foreign_keys)."""

    async def insert_orphan() -> None:
        async with store.begin() as tx:
            await tx.insert_user(_user(new_id("org"), _now()))

    with pytest.raises(Conflict):
        await insert_orphan()


# --- roles and memberships ------------------------------------------------------------


async def test_roles_are_inserted_listed_by_name_updated_and_deleted(
    store: Store[Transaction],
) -> None:
    org, other = await _add_org(store), await _add_org(store)
    t0 = _now()
    support = Role("support", ("users:read", "keys:read"), "Support desk", False, org.id, t0)
    auditor = Role("auditor", ("audit:read",), "", False, org.id, t0)
    async with store.begin() as tx:
        await tx.insert_role(support)
        await tx.insert_role(auditor)
        await tx.insert_role(replace(support, org_id=other.id, scopes=("*",)))
    async with store.begin() as tx:
        stored = await tx.get_role(org.id, "support")
        assert stored == support
        assert stored is not None
        assert isinstance(stored.scopes, tuple)
        assert await tx.get_role(org.id, "missing") is None
        assert await tx.list_roles(org.id) == [auditor, support]
    updated = replace(support, scopes=("users:write",), description="Escalations")
    async with store.begin() as tx:
        await tx.update_role(updated)
    async with store.begin() as tx:
        assert await tx.get_role(org.id, "support") == updated
        assert await tx.get_role(other.id, "support") == replace(
            support, org_id=other.id, scopes=("*",)
        )
        await tx.delete_role(org.id, "support")
    async with store.begin() as tx:
        assert await tx.get_role(org.id, "support") is None
        assert await tx.list_roles(org.id) == [auditor]
        assert await tx.get_role(other.id, "support") is not None


async def test_role_in_use_follows_memberships_within_the_org(store: Store[Transaction]) -> None:
    org, user = await _tenant(store)
    other = await _add_org(store)
    async with store.begin() as tx:
        assert await tx.role_in_use(org.id, "support") is False
        await tx.put_membership(Membership(org.id, user.id, None, "support", _now()))
    async with store.begin() as tx:
        assert await tx.role_in_use(org.id, "support") is True
        assert await tx.role_in_use(other.id, "support") is False
        assert await tx.delete_membership(org.id, user.id, None) is True
    async with store.begin() as tx:
        assert await tx.role_in_use(org.id, "support") is False


async def test_put_membership_replaces_the_users_role_in_that_space_only(
    store: Store[Transaction],
) -> None:
    org, user = await _tenant(store)
    t0 = _now()
    first, second = _space(org.id, t0), _space(org.id, t0)
    async with store.begin() as tx:
        await tx.insert_space(first)
        await tx.insert_space(second)
        await tx.put_membership(Membership(org.id, user.id, first.id, "viewer", t0))
        await tx.put_membership(Membership(org.id, user.id, second.id, "viewer", t0))
    promoted = Membership(org.id, user.id, first.id, "admin", t0 + timedelta(seconds=1))
    async with store.begin() as tx:
        await tx.put_membership(promoted)
    async with store.begin() as tx:
        memberships = await tx.list_memberships(org.id, user.id)
    assert sorted(memberships, key=lambda m: m.role) == [
        promoted,
        Membership(org.id, user.id, second.id, "viewer", t0),
    ]


async def test_org_wide_membership_round_trips_with_space_id_none(
    store: Store[Transaction],
) -> None:
    org, user = await _tenant(store)
    t0 = _now()
    space = _space(org.id, t0)
    org_wide = Membership(org.id, user.id, None, "viewer", t0)
    in_space = Membership(org.id, user.id, space.id, "admin", t0)
    async with store.begin() as tx:
        await tx.insert_space(space)
        await tx.put_membership(org_wide)
        await tx.put_membership(in_space)
        await tx.put_membership(replace(org_wide, role="owner"))
    async with store.begin() as tx:
        memberships = await tx.list_memberships(org.id, user.id)
    assert len(memberships) == 2
    assert {m.space_id: m for m in memberships} == {
        None: replace(org_wide, role="owner"),
        space.id: in_space,
    }


async def test_delete_membership_reports_whether_a_membership_was_removed(
    store: Store[Transaction],
) -> None:
    org, user = await _tenant(store)
    other, stranger = await _tenant(store)
    t0 = _now()
    space = _space(org.id, t0)
    async with store.begin() as tx:
        await tx.insert_space(space)
        await tx.put_membership(Membership(org.id, user.id, None, "viewer", t0))
        await tx.put_membership(Membership(org.id, user.id, space.id, "admin", t0))
        await tx.put_membership(Membership(other.id, stranger.id, None, "viewer", t0))
    async with store.begin() as tx:
        assert await tx.delete_membership(other.id, user.id, None) is False
        assert await tx.delete_membership(org.id, user.id, None) is True
        assert await tx.delete_membership(org.id, user.id, None) is False
        assert await tx.delete_membership(org.id, user.id, new_id("spc")) is False
    async with store.begin() as tx:
        assert await tx.list_memberships(org.id, user.id) == [
            Membership(org.id, user.id, space.id, "admin", t0)
        ]
        assert await tx.list_memberships(other.id, user.id) == []
        assert len(await tx.list_memberships(other.id, stranger.id)) == 1


# --- API keys -------------------------------------------------------------------------


async def test_key_round_trips_by_id_and_by_digest(store: Store[Transaction]) -> None:
    org, owner = await _tenant(store)
    member = await _add_user(store, org.id)
    t0 = _now()
    key = _key(
        org.id,
        owner.id,
        t0,
        user_id=member.id,
        scopes=("keys:read", "users:write"),
        expires_at=t0 + timedelta(days=30),
        ip_allow=("10.0.0.0/8", "2001:db8::/32"),
        space_allow=(new_id("spc"),),
        last_used_at=t0,
        last_used_ip="10.1.2.3",
        rolled_to=new_id("key"),
        operator_expires_at=t0 + timedelta(days=60),
        operator_ip_allow=("10.0.0.0/8", "2001:db8::/32"),
        operator_space_allow=(),
    )
    async with store.begin() as tx:
        await tx.insert_key(key)
    async with store.begin() as tx:
        by_id = await tx.get_key(org.id, key.id)
        by_digest = await tx.find_key_by_digest(key.digest)
        assert await tx.get_key(org.id, new_id("key")) is None
        assert await tx.find_key_by_digest(secrets.token_hex(32)) is None
    assert by_id == key
    assert by_digest == key
    assert isinstance(by_id.scopes, tuple)
    assert isinstance(by_id.ip_allow, tuple)
    assert isinstance(by_id.space_allow, tuple)
    assert by_id.bounds.ip_allow == ("10.0.0.0/8", "2001:db8::/32")
    assert by_id.bounds.space_allow == ()


async def test_duplicate_key_digest_raises_conflict(store: Store[Transaction]) -> None:
    org, owner = await _tenant(store)
    key = _key(org.id, owner.id, _now())
    async with store.begin() as tx:
        await tx.insert_key(key)

    async def insert_same_digest() -> None:
        async with store.begin() as tx:
            await tx.insert_key(_key(org.id, owner.id, _now(), digest=key.digest))

    with pytest.raises(Conflict):
        await insert_same_digest()


async def test_list_keys_filters_by_environment_newest_first_and_paginates(
    store: Store[Transaction],
) -> None:
    org, owner = await _tenant(store)
    other, stranger = await _tenant(store)
    t0 = _now()
    live = [_key(org.id, owner.id, t0 + timedelta(seconds=i)) for i in range(3)]
    test = _key(org.id, owner.id, t0, environment="test", prefix="aw_test_")
    async with store.begin() as tx:
        for key in [*live, test, _key(other.id, stranger.id, t0)]:
            await tx.insert_key(key)
    async with store.begin() as tx:
        everything = await tx.list_keys(org.id, KeyFilter("live"), PageRequest(1, 10))
        first = await tx.list_keys(org.id, KeyFilter("live"), PageRequest(1, 2))
        second = await tx.list_keys(org.id, KeyFilter("live"), PageRequest(2, 2))
        tests = await tx.list_keys(org.id, KeyFilter("test"), PageRequest())
    newest_first = live[::-1]
    assert (everything.items, everything.total) == (newest_first, 3)
    assert (first.items, first.total, first.page, first.page_size) == (newest_first[:2], 3, 1, 2)
    assert (second.items, second.total, second.page) == (newest_first[2:], 3, 2)
    assert (tests.items, tests.total) == ([test], 1)


async def test_list_keys_user_filter_matches_owned_keys_and_unowned_keys_they_created(
    store: Store[Transaction],
) -> None:
    """``user_id`` matches ``user_id``, or ``created_by`` when the key has no ``user_id``."""
    org, admin = await _tenant(store)
    user = await _add_user(store, org.id)
    t0 = _now()
    owned = _key(org.id, admin.id, t0, user_id=user.id)
    created_unowned = _key(org.id, user.id, t0 + timedelta(seconds=1))
    created_for_admin = _key(org.id, user.id, t0 + timedelta(seconds=2), user_id=admin.id)
    admins_own = _key(org.id, admin.id, t0 + timedelta(seconds=3))
    async with store.begin() as tx:
        for key in (owned, created_unowned, created_for_admin, admins_own):
            await tx.insert_key(key)
    async with store.begin() as tx:
        users = await tx.list_keys(org.id, KeyFilter("live", user_id=user.id), PageRequest())
        admins = await tx.list_keys(org.id, KeyFilter("live", user_id=admin.id), PageRequest())
    assert (users.items, users.total) == ([created_unowned, owned], 2)
    assert (admins.items, admins.total) == ([admins_own, created_for_admin], 2)


async def test_list_keys_excludes_revoked_keys_when_asked(store: Store[Transaction]) -> None:
    org, owner = await _tenant(store)
    t0 = _now()
    active = _key(org.id, owner.id, t0)
    revoked = _key(org.id, owner.id, t0 + timedelta(seconds=1), revoked_at=t0)
    async with store.begin() as tx:
        await tx.insert_key(active)
        await tx.insert_key(revoked)
    async with store.begin() as tx:
        with_revoked = await tx.list_keys(org.id, KeyFilter("live"), PageRequest())
        without = await tx.list_keys(
            org.id, KeyFilter("live", include_revoked=False), PageRequest()
        )
    assert (with_revoked.items, with_revoked.total) == ([revoked, active], 2)
    assert (without.items, without.total) == ([active], 1)


async def test_update_key_round_trips_every_mutable_field(store: Store[Transaction]) -> None:
    org, owner = await _tenant(store)
    member = await _add_user(store, org.id)
    t0 = _now()
    key = _key(org.id, owner.id, t0)
    async with store.begin() as tx:
        await tx.insert_key(key)
    changed = replace(
        key,
        name="renamed",
        scopes=("users:read", "audit:read"),
        user_id=member.id,
        updated_at=t0 + timedelta(minutes=1),
        expires_at=t0 + timedelta(days=7),
        ip_allow=("192.0.2.0/24",),
        space_allow=(new_id("spc"), new_id("spc")),
        disabled_at=t0 + timedelta(minutes=2),
        revoked_at=t0 + timedelta(minutes=3),
        rolled_to=new_id("key"),
        operator_expires_at=t0 + timedelta(days=8),
        operator_ip_allow=("192.0.2.0/24",),
        operator_space_allow=(new_id("spc"),),
        external_id="cus_4QFJ",
        meta={"plan": "pro", "seats": 12, "ratio": 0.5, "trial": False, "note": None},
    )
    async with store.begin() as tx:
        await tx.update_key(changed)
    async with store.begin() as tx:
        stored = await tx.get_key(org.id, key.id)
    assert stored == changed
    assert isinstance(stored.scopes, tuple)
    assert isinstance(stored.ip_allow, tuple)
    assert isinstance(stored.space_allow, tuple)
    for moment in (stored.expires_at, stored.disabled_at, stored.revoked_at, stored.updated_at):
        assert moment is not None
        assert moment.tzinfo is not None
        assert moment.utcoffset() == timedelta(0)
    cleared = replace(
        changed,
        disabled_at=None,
        revoked_at=None,
        expires_at=None,
        ip_allow=(),
        operator_expires_at=None,
        operator_ip_allow=None,
        operator_space_allow=None,
        external_id=None,
        meta={},
    )
    async with store.begin() as tx:
        await tx.update_key(cleared)
    async with store.begin() as tx:
        assert await tx.get_key(org.id, key.id) == cleared


async def test_list_keys_by_external_id_stays_in_the_org_and_the_environment(
    store: Store[Transaction],
) -> None:
    """An ``external_id`` filter matches exactly, within the organisation and environment
    asked: another organisation's keys of the same id, and the test ones, are not listed."""
    org, owner = await _tenant(store)
    other, stranger = await _tenant(store)
    t0 = _now()
    mine = [_key(org.id, owner.id, t0 + timedelta(seconds=i), external_id="cus_1") for i in (0, 1)]
    test = _key(org.id, owner.id, t0, environment="test", prefix="aw_test_", external_id="cus_1")
    unowned = _key(org.id, owner.id, t0)
    near = _key(org.id, owner.id, t0, external_id="CUS_1")
    theirs = _key(other.id, stranger.id, t0, external_id="cus_1")
    async with store.begin() as tx:
        for key in (*mine, test, unowned, near, theirs):
            await tx.insert_key(key)
    async with store.begin() as tx:
        live = await tx.list_keys(org.id, KeyFilter("live", external_id="cus_1"), PageRequest())
        tests = await tx.list_keys(org.id, KeyFilter("test", external_id="cus_1"), PageRequest())
        every = await tx.list_keys(org.id, KeyFilter(None, external_id="cus_1"), PageRequest())
        none = await tx.list_keys(org.id, KeyFilter("live", external_id="cus_2"), PageRequest())
        others = await tx.list_keys(other.id, KeyFilter("live", external_id="cus_1"), PageRequest())
    assert (live.items, live.total) == (mine[::-1], 2)
    assert (tests.items, tests.total) == ([test], 1)
    assert {k.id for k in every.items} == {mine[0].id, mine[1].id, test.id}
    assert none.total == 0
    assert others.items == [theirs]


async def test_list_keys_by_state_agrees_with_the_state_of_each_key(
    store: Store[Transaction],
) -> None:
    """The state filter is ``ApiKey.state`` in SQL: for every combination of revoked,
    expiry (none, past, now, future) and disabled, a key is listed under its own state and
    no other; an expiry at the very instant asked counts as expired, as ``state`` says."""
    org, owner = await _tenant(store)
    now = _now()
    past, future = now - timedelta(hours=1), now + timedelta(hours=1)
    keys = [
        _key(org.id, owner.id, now, revoked_at=revoked, expires_at=expires, disabled_at=disabled)
        for revoked in (None, past)
        for expires in (None, past, now, future)
        for disabled in (None, past)
    ]
    async with store.begin() as tx:
        for key in keys:
            await tx.insert_key(key)
        for state in KeyState:
            listed = await tx.list_keys(
                org.id, KeyFilter("live", state=state, now=now), PageRequest(page_size=100)
            )
            expected = {k.id for k in keys if k.state(now) is state}
            assert {k.id for k in listed.items} == expected, state
            assert listed.total == len(expected)


async def test_list_keys_search_matches_name_id_last_four_and_hint_only(
    store: Store[Transaction],
) -> None:
    """A search matches a name containing it in any case, an id, the last four characters
    or the hint shown for a key (``prefix…last4``); ``%`` and ``_`` are plain characters;
    another organisation's keys never match."""
    org, owner = await _tenant(store)
    other, stranger = await _tenant(store)
    t0 = _now()
    billing = _key(org.id, owner.id, t0, name="Billing backend", last4="ab12")
    percent = _key(org.id, owner.id, t0, name="100% cover_all", last4="cd34")
    test = _key(
        org.id, owner.id, t0, environment="test", prefix="aw_test_", name="Billing", last4="ef56"
    )
    theirs = _key(other.id, stranger.id, t0, name="Billing", last4="ab12")
    async with store.begin() as tx:
        for key in (billing, percent, test, theirs):
            await tx.insert_key(key)

    async def found(search: str, env: str | None = "live") -> set[str]:
        async with store.begin() as tx:
            page = await tx.list_keys(org.id, KeyFilter(env, search=search), PageRequest())
        return {k.id for k in page.items}

    assert await found("billing") == {billing.id}
    assert await found("BILLING", None) == {billing.id, test.id}
    assert await found(billing.id) == {billing.id}
    assert await found("cd34") == {percent.id}
    assert await found("aw_live_…ab12") == {billing.id}
    assert await found("aw_live_...ab12") == {billing.id}
    assert await found("aw_test_…ab12") == set()
    assert await found("100%") == {percent.id}
    assert await found("%") == {percent.id}
    assert await found("r_a") == {percent.id}
    assert await found("_") == {percent.id}
    assert await found("nothing like it") == set()


async def test_key_meta_keeps_any_text_and_its_order(store: Store[Transaction]) -> None:
    """Whatever Unicode a vendor puts in ``meta`` (controls, NUL, line breaks, emoji) comes
    back as it was, its properties in their order, on both back-ends."""
    org, owner = await _tenant(store)
    meta: dict[str, Any] = {
        "z": "last-first",
        "line": "a\r\nb",
        "nul": "x\x00y",
        "ünï": "日本 🙂",
        "big": 2**53 - 1,
        "small": -1.5e-300,
    }
    key = _key(org.id, owner.id, _now(), meta=meta, external_id="acct/42@eu")
    async with store.begin() as tx:
        await tx.insert_key(key)
    async with store.begin() as tx:
        stored = await tx.get_key(org.id, key.id)
        found = await tx.find_key_by_digest(key.digest)
    assert stored == key and found == key
    assert stored is not None and list(stored.meta) == list(meta)


def _client(org_id: str, created_by: str, at: datetime, **fields: Any) -> OAuthClient:
    values: dict[str, Any] = {
        "id": new_id("client"),
        "org_id": org_id,
        "environment": "live",
        "name": "c",
        "secret_digest": secrets.token_hex(32),
        "secret_last4": "wxyz",
        "scopes": ("keys:read",),
        "created_by": created_by,
        "created_at": at,
        "updated_at": at,
    }
    values.update(fields)
    return OAuthClient(**values)


async def test_clients_keep_external_id_and_meta_and_list_by_external_id(
    store: Store[Transaction],
) -> None:
    org, owner = await _tenant(store)
    other, stranger = await _tenant(store)
    t0 = _now()
    client = _client(org.id, owner.id, t0, external_id="cus_1", meta={"plan": "pro"})
    bare = _client(org.id, owner.id, t0 + timedelta(seconds=1))
    test = _client(org.id, owner.id, t0, environment="test", external_id="cus_1")
    theirs = _client(other.id, stranger.id, t0, external_id="cus_1")
    async with store.begin() as tx:
        for c in (client, bare, test, theirs):
            await tx.insert_client(c)
    async with store.begin() as tx:
        assert await tx.get_client(org.id, client.id) == client
        assert await tx.find_client(bare.id) == replace(bare, meta={})
        listed = await tx.list_clients(org.id, "live", PageRequest(), external_id="cus_1")
        assert (listed.items, listed.total) == ([client], 1)
        assert (await tx.list_clients(org.id, "live", PageRequest())).total == 2
        tests = await tx.list_clients(org.id, "test", PageRequest(), external_id="cus_1")
        assert tests.items == [test]
    changed = replace(bare, external_id="cus_2", meta={"seats": 3}, updated_at=t0)
    async with store.begin() as tx:
        await tx.update_client(changed)
        await tx.update_client(replace(client, external_id=None, meta={}))
    async with store.begin() as tx:
        assert await tx.get_client(org.id, bare.id) == changed
        assert await tx.get_client(org.id, client.id) == replace(client, external_id=None, meta={})
        gone = await tx.list_clients(org.id, "live", PageRequest(), external_id="cus_1")
        assert gone.total == 0


async def test_update_key_never_changes_identity_fields(store: Store[Transaction]) -> None:
    """``id``, ``org_id``, ``digest``, ``environment``, ``created_*`` are fixed."""
    org, owner = await _tenant(store)
    other_user = await _add_user(store, org.id)
    t0 = _now()
    key = _key(org.id, owner.id, t0)
    async with store.begin() as tx:
        await tx.insert_key(key)
    forged = replace(
        key,
        name="renamed",
        digest=secrets.token_hex(32),
        environment="test",
        created_by=other_user.id,
        created_at=t0 + timedelta(days=1),
    )
    async with store.begin() as tx:
        await tx.update_key(forged)
    async with store.begin() as tx:
        assert await tx.get_key(org.id, key.id) == replace(key, name="renamed")
        assert await tx.find_key_by_digest(forged.digest) is None


async def test_touch_keys_records_last_use_of_many_keys_in_one_batch(
    store: Store[Transaction],
) -> None:
    org, owner = await _tenant(store)
    t0 = _now()
    first, second, idle = (_key(org.id, owner.id, t0) for _ in range(3))
    async with store.begin() as tx:
        for key in (first, second, idle):
            await tx.insert_key(key)
    used_at = t0 + timedelta(minutes=5)
    async with store.begin() as tx:
        await tx.touch_keys(
            [
                (first.id, used_at, "203.0.113.7"),
                (second.id, used_at + timedelta(seconds=1), None),
                (new_id("key"), used_at, "198.51.100.1"),
            ]
        )
    async with store.begin() as tx:
        assert await tx.get_key(org.id, first.id) == replace(
            first, last_used_at=used_at, last_used_ip="203.0.113.7"
        )
        assert await tx.get_key(org.id, second.id) == replace(
            second, last_used_at=used_at + timedelta(seconds=1), last_used_ip=None
        )
        assert await tx.get_key(org.id, idle.id) == idle


# --- audit log ------------------------------------------------------------------------


async def test_audit_event_round_trips_with_every_field(store: Store[Transaction]) -> None:
    org = await _add_org(store)
    event = _event(
        org.id,
        _now(),
        actor_user_id=new_id("usr"),
        actor_credential_id=new_id("key"),
        target_type="api_key",
        target_id=new_id("key"),
        space_id=new_id("spc"),
        ip="2001:db8::1",
        user_agent="curl/8.5",
        request_id="req-1",
        data={"scopes": ["keys:read"], "nested": {"n": 1, "ok": True}, "note": None},
    )
    async with store.begin() as tx:
        await tx.insert_audit(event)
    async with store.begin() as tx:
        page = await tx.list_audit(org.id, AuditFilter(), PageRequest())
    assert (page.items, page.total) == ([event], 1)


async def test_list_audit_is_newest_first_and_paginates(store: Store[Transaction]) -> None:
    org, other = await _add_org(store), await _add_org(store)
    t0 = _now()
    events = [_event(org.id, t0 + timedelta(seconds=i)) for i in range(5)]
    async with store.begin() as tx:
        for event in events:
            await tx.insert_audit(event)
        await tx.insert_audit(_event(other.id, t0))
    newest_first = events[::-1]
    async with store.begin() as tx:
        first = await tx.list_audit(org.id, AuditFilter(), PageRequest(1, 2))
        last = await tx.list_audit(org.id, AuditFilter(), PageRequest(3, 2))
    assert (first.items, first.total, first.page, first.page_size) == (newest_first[:2], 5, 1, 2)
    assert (last.items, last.total, last.page) == (newest_first[4:], 5, 3)


# Four events a minute apart (t0 + 0..3 min): (label, type, actor, target, environment).
AUDIT_EVENTS = [
    ("a", "key.created", "usr_alice", "key_1", "live"),
    ("b", "key.revoked", "usr_bob", "key_1", "test"),
    ("c", "user.created", "usr_alice", "usr_carol", None),
    ("d", "key.created", None, "key_2", "live"),
]
MINUTE = timedelta(minutes=1)
AUDIT_FILTERS: list[tuple[str, Callable[[datetime], AuditFilter], str]] = [
    ("none", lambda t0: AuditFilter(), "dcba"),
    ("type", lambda t0: AuditFilter(type="key.created"), "da"),
    ("actor", lambda t0: AuditFilter(actor_user_id="usr_alice"), "ca"),
    ("target", lambda t0: AuditFilter(target_id="key_1"), "ba"),
    ("since-inclusive", lambda t0: AuditFilter(since=t0 + MINUTE), "dcb"),
    ("until-exclusive", lambda t0: AuditFilter(until=t0 + 2 * MINUTE), "ba"),
    ("window", lambda t0: AuditFilter(since=t0 + MINUTE, until=t0 + 3 * MINUTE), "cb"),
    ("env-live-and-org-wide", lambda t0: AuditFilter(environment="live"), "dca"),
    ("env-test-and-org-wide", lambda t0: AuditFilter(environment="test"), "cb"),
    ("combined", lambda t0: AuditFilter(type="key.created", environment="live", since=t0), "da"),
    ("no-match", lambda t0: AuditFilter(type="key.created", actor_user_id="usr_bob"), ""),
]


@pytest.mark.parametrize(
    ("make_filter", "expected"),
    [pytest.param(make, expected, id=name) for name, make, expected in AUDIT_FILTERS],
)
async def test_list_audit_applies_each_filter_field(
    store: Store[Transaction], make_filter: Callable[[datetime], AuditFilter], expected: str
) -> None:
    """Each ``AuditFilter`` field narrows the list; events without an environment are
    org-wide and show in every environment; ``since`` is inclusive, ``until`` exclusive."""
    org, other = await _add_org(store), await _add_org(store)
    t0 = _now()
    ids: dict[str, str] = {}
    async with store.begin() as tx:
        for i, (label, type_, actor, target, env) in enumerate(AUDIT_EVENTS):
            event = _event(
                org.id,
                t0 + i * MINUTE,
                type=type_,
                actor_user_id=actor,
                target_id=target,
                environment=env,
            )
            ids[label] = event.id
            await tx.insert_audit(event)
            await tx.insert_audit(replace(event, id=new_id("evt"), org_id=other.id))
    async with store.begin() as tx:
        page = await tx.list_audit(org.id, make_filter(t0), PageRequest(1, 50))
    assert [e.id for e in page.items] == [ids[label] for label in expected]
    assert page.total == len(expected)


# --- invalidations --------------------------------------------------------------------


async def test_invalidations_since_returns_the_window_in_sequence_order(
    store: Store[Transaction],
) -> None:
    t0 = _now()
    async with store.begin() as tx:
        await tx.insert_invalidation("key", "old-digest", t0 - timedelta(minutes=10))
        await tx.insert_invalidation("key", "digest-1", t0 - timedelta(minutes=5))
        await tx.insert_invalidation("org", "org_1", t0)
    async with store.begin() as tx:
        recent = await tx.invalidations_since(t0 - timedelta(minutes=5))
        none = await tx.invalidations_since(t0 + timedelta(seconds=1))
    assert [(i.kind, i.target) for i in recent] == [("key", "digest-1"), ("org", "org_1")]
    assert recent[0].seq < recent[1].seq
    assert all(isinstance(i.seq, int) for i in recent)
    assert none == []


async def test_prune_invalidations_deletes_only_rows_older_than_the_cutoff(
    store: Store[Transaction],
) -> None:
    t0 = _now()
    async with store.begin() as tx:
        await tx.insert_invalidation("key", "ancient", t0 - timedelta(hours=2))
        await tx.insert_invalidation("key", "at-cutoff", t0 - timedelta(hours=1))
        await tx.insert_invalidation("key", "fresh", t0)
    async with store.begin() as tx:
        await tx.prune_invalidations(t0 - timedelta(hours=1))
    async with store.begin() as tx:
        left = await tx.invalidations_since(t0 - timedelta(days=1))
    assert [i.target for i in left] == ["at-cutoff", "fresh"]


# --- tenant isolation -----------------------------------------------------------------


async def test_records_are_not_found_with_another_orgs_id(store: Store[Transaction]) -> None:
    org, owner = await _tenant(store)
    other = await _add_org(store)
    space = _space(org.id, _now())
    key = _key(org.id, owner.id, _now())
    async with store.begin() as tx:
        await tx.insert_space(space)
        await tx.insert_key(key)
    async with store.begin() as tx:
        assert await tx.get_space(other.id, space.id) is None
        assert await tx.get_user(other.id, owner.id) is None
        assert await tx.get_key(other.id, key.id) is None
        assert await tx.list_memberships(other.id, owner.id) == []
        assert (await tx.list_users(other.id, PageRequest())).total == 0
        assert (await tx.list_keys(other.id, KeyFilter("live"), PageRequest())).total == 0


async def test_updates_addressed_to_another_org_change_nothing(store: Store[Transaction]) -> None:
    org, owner = await _tenant(store)
    other = await _add_org(store)
    space = _space(org.id, _now())
    key = _key(org.id, owner.id, _now())
    role = Role("support", ("a:b",), "", False, org.id, _now())
    async with store.begin() as tx:
        await tx.insert_space(space)
        await tx.insert_key(key)
        await tx.insert_role(role)
    async with store.begin() as tx:
        await tx.update_space(replace(space, org_id=other.id, name="stolen"))
        await tx.update_user(replace(owner, org_id=other.id, name="stolen"))
        await tx.update_key(replace(key, org_id=other.id, name="stolen"))
        await tx.update_role(replace(role, org_id=other.id, scopes=("*",), description="x"))
        await tx.delete_role(other.id, "support")
    async with store.begin() as tx:
        assert await tx.get_space(org.id, space.id) == space
        assert await tx.get_user(org.id, owner.id) == owner
        assert await tx.get_key(org.id, key.id) == key
        assert await tx.get_role(org.id, "support") == role


# --- transactions and health ----------------------------------------------------------


class _Boom(Exception):
    """Raised on purpose inside a transaction."""


async def test_an_exception_inside_a_transaction_rolls_back_its_writes(
    store: Store[Transaction],
) -> None:
    org, owner = await _tenant(store)
    newcomer = _user(org.id, _now())

    async def write_then_fail() -> None:
        async with store.begin() as tx:
            await tx.insert_user(newcomer)
            await tx.update_user(replace(owner, name="changed"))
            await tx.insert_invalidation("key", "digest", _now())
            raise _Boom

    with pytest.raises(_Boom):
        await write_then_fail()
    async with store.begin() as tx:
        assert await tx.get_user(org.id, newcomer.id) is None
        assert await tx.get_user(org.id, owner.id) == owner
        assert await tx.invalidations_since(_now() - timedelta(days=1)) == []


async def test_ping_succeeds_on_a_reachable_store(store: Store[Transaction]) -> None:
    await store.ping()


async def test_ping_raises_service_unavailable_when_the_database_is_unreachable() -> None:
    store = SqlStore(create_engine(UNREACHABLE_URL))
    try:
        with pytest.raises(ServiceUnavailable):
            await store.ping()
    finally:
        await store.close()


# --- refresh-token families ---------------------------------------------------------


def _refresh(org: Organisation, user: User, family: str, at: datetime) -> RefreshToken:
    return RefreshToken(
        id=new_id("rt"),
        family_id=family,
        digest=secrets.token_hex(32),
        org_id=org.id,
        environment="live",
        user_id=user.id,
        scope="things:read",
        created_at=at,
        expires_at=at + timedelta(days=30),
    )


async def test_revoking_a_family_during_a_rotation_revokes_the_successor_too(
    store: Store[Transaction],
) -> None:
    """A revocation that waits on a rotation in progress (the rotated token's row lock on
    PostgreSQL, the write lock on SQLite) ends the successor that rotation committed: a
    revoked session never goes on rotating."""
    org, user = await _tenant(store)
    at = _now()
    first = _refresh(org, user, new_id("fam"), at)
    async with store.begin() as tx:
        await tx.insert_refresh(first)
    successor = _refresh(org, user, first.family_id, at)
    rotating = asyncio.Event()
    release = asyncio.Event()

    async def rotate() -> None:
        async with store.begin() as tx:
            found = await tx.find_refresh_for_update(first.digest)
            assert found is not None
            await tx.update_refresh(replace(found, used_at=at, successor_id=successor.id))
            await tx.insert_refresh(successor)
            rotating.set()
            await release.wait()

    async def revoke() -> int:
        await rotating.wait()
        async with store.begin() as tx:
            return await tx.revoke_family(first.family_id, at)

    rotation = asyncio.create_task(rotate())
    revocation = asyncio.create_task(revoke())
    await rotating.wait()
    await asyncio.sleep(0.3)  # the revocation is now waiting on the rotation's lock
    release.set()
    await rotation
    assert await revocation == 2
    async with store.begin() as tx:
        after = await tx.find_refresh_for_update(successor.digest)
    assert after is not None
    assert after.revoked_at is not None


async def test_a_value_the_database_cannot_store_is_a_bad_input(
    store: Store[Transaction],
) -> None:
    """PostgreSQL refuses a NUL character in text (SQLite keeps it): the store answers
    ``InvalidInput``, never a driver error that would be a 500."""

    async def lookup() -> object:
        async with store.begin() as tx:
            return await tx.find_account_by_email("a\x00b@example.test")

    assert isinstance(store, SqlStore)
    if store.engine.dialect.name == "postgresql":
        with pytest.raises(InvalidInput, match="NUL"):
            await lookup()
    else:
        assert await lookup() is None
