"""Dashboard sessions, portal accounts and the links emailed to them, in SQL."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

import sqlalchemy as sa

from apiward.adapters.storage import tables as t
from apiward.adapters.storage.sql.base import SqlBase
from apiward.adapters.storage.sql.rows import link_record, record
from apiward.core.models import (
    Account,
    DashboardSession,
    EmailLink,
    LinkPurpose,
    Organisation,
    Page,
    PageRequest,
    User,
)


class SqlPortal(SqlBase):
    """Dashboard sessions, portal accounts and the links emailed to them."""

    # dashboard sessions
    async def insert_session(self, session: DashboardSession) -> None:
        await self._c.execute(t.dashboard_sessions.insert().values(asdict(session)))

    async def find_session(self, digest: str) -> DashboardSession | None:
        r = await self._one(
            t.dashboard_sessions.select().where(t.dashboard_sessions.c.digest == digest)
        )
        return record(r, DashboardSession) if r else None

    async def revoke_session(self, session_id: str, at: datetime) -> None:
        c = t.dashboard_sessions.c
        await self._c.execute(
            t.dashboard_sessions.update()
            .where(c.id == session_id, c.revoked_at.is_(None))
            .values(revoked_at=at)
        )

    async def prune_sessions(self, expired_before: datetime) -> int:
        result = await self._c.execute(
            t.dashboard_sessions.delete().where(t.dashboard_sessions.c.expires_at < expired_before)
        )
        return int(result.rowcount or 0)

    async def revoke_sessions(
        self, *, account_id: str | None, user_id: str | None, at: datetime
    ) -> int:
        c = t.dashboard_sessions.c
        if account_id is not None:
            owner = c.account_id == account_id
        elif user_id is not None:
            owner = sa.and_(c.user_id == user_id, c.account_id.is_(None))
        else:
            return 0
        result = await self._c.execute(
            t.dashboard_sessions.update().where(owner, c.revoked_at.is_(None)).values(revoked_at=at)
        )
        return int(result.rowcount or 0)

    async def move_session(self, session_id: str, org_id: str, user_id: str) -> None:
        await self._c.execute(
            t.dashboard_sessions.update()
            .where(t.dashboard_sessions.c.id == session_id)
            .values(org_id=org_id, user_id=user_id)
        )

    # portal accounts
    async def insert_account(self, account: Account) -> None:
        await self._c.execute(t.accounts.insert().values(asdict(account)))

    async def get_account(self, account_id: str) -> Account | None:
        r = await self._one(t.accounts.select().where(t.accounts.c.id == account_id))
        return record(r, Account) if r else None

    async def find_account_by_email(self, email: str) -> Account | None:
        r = await self._one(t.accounts.select().where(t.accounts.c.email == email))
        return record(r, Account) if r else None

    async def update_account(self, account: Account) -> None:
        values = asdict(account)
        del values["id"], values["created_at"]
        await self._c.execute(
            t.accounts.update().where(t.accounts.c.id == account.id).values(**values)
        )

    async def list_accounts(self, page: PageRequest) -> Page[Account]:
        c = t.accounts.c
        return await self._page(
            t.accounts.select(), [c.created_at, c.id], page, lambda r: record(r, Account)
        )

    async def account_projects(self, account_id: str) -> list[tuple[Organisation, User]]:
        u = t.users.c
        rows = await self._all(
            t.users.select().where(u.account_id == account_id).order_by(u.created_at, u.id)
        )
        users = [record(r, User) for r in rows]
        if not users:
            return []
        orgs = {
            r.id: record(r, Organisation)
            for r in await self._all(
                t.orgs.select().where(t.orgs.c.id.in_([user.org_id for user in users]))
            )
        }
        return [(orgs[user.org_id], user) for user in users]

    # emailed links
    async def insert_link(self, link: EmailLink) -> None:
        await self._c.execute(t.email_links.insert().values(asdict(link)))

    async def find_link(self, digest: str) -> EmailLink | None:
        r = await self._one(t.email_links.select().where(t.email_links.c.digest == digest))
        return link_record(r) if r else None

    async def get_link(self, link_id: str) -> EmailLink | None:
        r = await self._one(t.email_links.select().where(t.email_links.c.id == link_id))
        return link_record(r) if r else None

    async def use_link(self, link_id: str, at: datetime) -> bool:
        c = t.email_links.c
        result = await self._c.execute(
            t.email_links.update()
            .where(
                c.id == link_id,
                c.used_at.is_(None),
                c.revoked_at.is_(None),
                c.expires_at > at,
            )
            .values(used_at=at)
        )
        return bool(result.rowcount)

    async def revoke_links(
        self,
        purpose: LinkPurpose,
        at: datetime,
        *,
        email: str | None = None,
        org_id: str | None = None,
        link_id: str | None = None,
    ) -> int:
        c = t.email_links.c
        stmt = t.email_links.update().where(
            c.purpose == purpose.value, c.used_at.is_(None), c.revoked_at.is_(None)
        )
        if email is not None:
            stmt = stmt.where(c.email == email)
        if org_id is not None:
            stmt = stmt.where(c.org_id == org_id)
        if link_id is not None:
            stmt = stmt.where(c.id == link_id)
        result = await self._c.execute(stmt.values(revoked_at=at))
        return int(result.rowcount or 0)

    async def pending_links(
        self, purpose: LinkPurpose, org_id: str, now: datetime
    ) -> list[EmailLink]:
        c = t.email_links.c
        rows = await self._all(
            t.email_links.select()
            .where(
                c.purpose == purpose.value,
                c.org_id == org_id,
                c.used_at.is_(None),
                c.revoked_at.is_(None),
                c.expires_at > now,
            )
            .order_by(c.created_at.desc(), c.id)
        )
        return [link_record(r) for r in rows]

    async def prune_links(self, before: datetime) -> int:
        result = await self._c.execute(
            t.email_links.delete().where(t.email_links.c.expires_at < before)
        )
        return int(result.rowcount or 0)
