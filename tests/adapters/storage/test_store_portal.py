"""The store contract of the developer portal: accounts, their projects, emailed links,
account sessions. Each test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from apiward.core.ids import new_id
from apiward.core.models import (
    Account,
    DashboardSession,
    EmailLink,
    LinkPurpose,
    Organisation,
    PageRequest,
    User,
)
from apiward.services.ports import Store, Transaction

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def _account(email: str = "ada@example.test") -> Account:
    return Account(new_id("acc"), email, "Ada", "hash", NOW, confirmed_at=NOW)


def _link(purpose: LinkPurpose, **fields: object) -> EmailLink:
    values: dict[str, object] = {
        "id": new_id("lnk"),
        "purpose": purpose,
        "digest": new_id("d"),
        "email": "ada@example.test",
        "created_at": NOW,
        "expires_at": NOW + timedelta(hours=1),
    }
    values.update(fields)
    return EmailLink(**values)  # type: ignore[arg-type]


async def _project(
    store: Store[Transaction], account: Account, name: str, at: datetime
) -> Organisation:
    org = Organisation(new_id("org"), name, at)
    async with store.begin() as tx:
        await tx.insert_org(org)
        await tx.insert_user(
            User(new_id("usr"), org.id, account.email, "Ada", None, at, account_id=account.id)
        )
    return org


async def test_accounts_are_found_updated_and_listed(store: Store[Transaction]) -> None:
    ada, bob = _account(), _account("bob@example.test")
    async with store.begin() as tx:
        await tx.insert_account(ada)
        await tx.insert_account(replace(bob, created_at=NOW + timedelta(seconds=1)))
        assert await tx.get_account(ada.id) == ada
        assert await tx.find_account_by_email("ada@example.test") == ada
        assert await tx.find_account_by_email("nobody@example.test") is None
        changed = replace(ada, password_hash="new", password_changed_at=NOW, disabled_at=NOW)
        await tx.update_account(changed)
        assert await tx.get_account(ada.id) == changed
        page = await tx.list_accounts(PageRequest(1, 10))
    assert [a.email for a in page.items] == ["ada@example.test", "bob@example.test"]


async def test_an_address_has_one_account(store: Store[Transaction]) -> None:
    from apiward.core.errors import Conflict

    async with store.begin() as tx:
        await tx.insert_account(_account())
    with pytest.raises(Conflict):
        async with store.begin() as tx:
            await tx.insert_account(_account())


async def test_an_accounts_projects_are_its_users_orgs_oldest_first(
    store: Store[Transaction],
) -> None:
    ada = _account()
    async with store.begin() as tx:
        await tx.insert_account(ada)
        assert await tx.account_projects(ada.id) == []
    second = await _project(store, ada, "Second", NOW + timedelta(minutes=1))
    first = await _project(store, ada, "First", NOW)
    async with store.begin() as tx:
        projects = await tx.account_projects(ada.id)
    assert [(org.id, user.org_id) for org, user in projects] == [
        (first.id, first.id),
        (second.id, second.id),
    ]


async def test_a_link_is_used_once_even_by_concurrent_uses(store: Store[Transaction]) -> None:
    link = _link(LinkPurpose.RESET)
    async with store.begin() as tx:
        await tx.insert_link(link)
        assert await tx.find_link(link.digest) == link
        assert await tx.get_link(link.id) == link

    async def use() -> bool:
        async with store.begin() as tx:
            return await tx.use_link(link.id, NOW + timedelta(seconds=1))

    results = await asyncio.gather(*(use() for _ in range(6)))
    assert sorted(results) == [False] * 5 + [True]
    async with store.begin() as tx:
        found = await tx.find_link(link.digest)
    assert found is not None and found.used_at == NOW + timedelta(seconds=1)


async def test_an_expired_or_revoked_link_is_not_used(store: Store[Transaction]) -> None:
    expired, revoked = _link(LinkPurpose.CONFIRM), _link(LinkPurpose.CONFIRM)
    async with store.begin() as tx:
        await tx.insert_link(expired)
        await tx.insert_link(revoked)
        assert await tx.revoke_links(LinkPurpose.CONFIRM, NOW, link_id=revoked.id) == 1
        assert not await tx.use_link(revoked.id, NOW)
        assert not await tx.use_link(expired.id, expired.expires_at)


async def test_links_are_revoked_by_purpose_address_and_org(store: Store[Transaction]) -> None:
    org = Organisation(new_id("org"), "P", NOW)
    async with store.begin() as tx:
        await tx.insert_org(org)
    invite = _link(LinkPurpose.INVITE, org_id=org.id, role="viewer")
    other_address = _link(LinkPurpose.INVITE, org_id=org.id, email="bob@example.test")
    reset = _link(LinkPurpose.RESET)
    async with store.begin() as tx:
        for link in (invite, other_address, reset):
            await tx.insert_link(link)
        pending = await tx.pending_links(LinkPurpose.INVITE, org.id, NOW)
        assert {link.id for link in pending} == {invite.id, other_address.id}
        revoked = await tx.revoke_links(
            LinkPurpose.INVITE, NOW, email="ada@example.test", org_id=org.id
        )
        assert revoked == 1
        pending = await tx.pending_links(LinkPurpose.INVITE, org.id, NOW)
        assert [link.id for link in pending] == [other_address.id]
        assert await tx.pending_links(LinkPurpose.INVITE, org.id, NOW + timedelta(hours=2)) == []
        found = await tx.find_link(reset.digest)
        assert found is not None and found.revoked_at is None
        assert await tx.prune_links(NOW + timedelta(hours=2)) == 3
        assert await tx.find_link(reset.digest) is None


async def test_an_accounts_sessions_move_between_projects_and_end_together(
    store: Store[Transaction],
) -> None:
    ada = _account()
    async with store.begin() as tx:
        await tx.insert_account(ada)
    first = await _project(store, ada, "First", NOW)
    async with store.begin() as tx:
        ((_, user),) = await tx.account_projects(ada.id)
    sessions = [
        DashboardSession(
            new_id("ses"),
            new_id("d"),
            None,
            None,
            NOW,
            NOW + timedelta(hours=1),
            account_id=ada.id,
        )
        for _ in range(2)
    ]
    async with store.begin() as tx:
        for session in sessions:
            await tx.insert_session(session)
        await tx.move_session(sessions[0].id, first.id, user.id)
        moved = await tx.find_session(sessions[0].digest)
        assert moved is not None and (moved.org_id, moved.user_id) == (first.id, user.id)
        assert await tx.revoke_sessions(account_id=ada.id, user_id=None, at=NOW) == 2
        assert await tx.revoke_sessions(account_id=ada.id, user_id=None, at=NOW) == 0
        for session in sessions:
            found = await tx.find_session(session.digest)
            assert found is not None and found.revoked_at == NOW
