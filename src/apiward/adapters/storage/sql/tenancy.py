"""Organisations and their tenancy in SQL: environments, spaces, users, roles and
memberships."""

from __future__ import annotations

from dataclasses import asdict

import sqlalchemy as sa

from apiward.adapters.storage import tables as t
from apiward.adapters.storage.sql.base import SqlBase
from apiward.adapters.storage.sql.rows import (
    org_record,
    org_values,
    policy_values,
    record,
    role_record,
)
from apiward.core.models import (
    Environment,
    Membership,
    Organisation,
    Page,
    PageRequest,
    Role,
    Space,
    User,
)


class SqlTenancy(SqlBase):
    """Organisations, environments, spaces, users, roles and memberships."""

    # organisations and environments
    async def insert_org(self, org: Organisation) -> None:
        await self._c.execute(t.orgs.insert().values(org_values(org)))

    async def get_org(self, org_id: str) -> Organisation | None:
        r = await self._one(t.orgs.select().where(t.orgs.c.id == org_id))
        return org_record(r) if r else None

    async def list_orgs(self) -> list[Organisation]:
        rows = await self._all(t.orgs.select().order_by(t.orgs.c.created_at, t.orgs.c.id))
        return [org_record(r) for r in rows]

    async def update_org(self, org: Organisation) -> None:
        await self._c.execute(
            t.orgs.update()
            .where(t.orgs.c.id == org.id)
            .values(
                name=org.name,
                rate_tier=org.rate_tier,
                key_hygiene=policy_values(org),
                require_mfa=org.require_mfa,
            )
        )

    async def insert_environment(self, env: Environment) -> None:
        await self._c.execute(t.environments.insert().values(asdict(env)))

    async def list_environments(self, org_id: str) -> list[Environment]:
        rows = await self._all(
            t.environments.select()
            .where(t.environments.c.org_id == org_id)
            .order_by(t.environments.c.name)
        )
        return [record(r, Environment) for r in rows]

    # spaces
    async def insert_space(self, space: Space) -> None:
        await self._c.execute(t.spaces.insert().values(asdict(space)))

    async def get_space(self, org_id: str, space_id: str) -> Space | None:
        r = await self._one(
            t.spaces.select().where(t.spaces.c.org_id == org_id, t.spaces.c.id == space_id)
        )
        return record(r, Space) if r else None

    async def list_spaces(
        self, org_id: str, page: PageRequest, *, include_archived: bool
    ) -> Page[Space]:
        stmt = t.spaces.select().where(t.spaces.c.org_id == org_id)
        if not include_archived:
            stmt = stmt.where(t.spaces.c.archived_at.is_(None))
        return await self._page(
            stmt, [t.spaces.c.created_at, t.spaces.c.id], page, lambda r: record(r, Space)
        )

    async def active_space_ids(self, org_id: str) -> list[str]:
        rows = await self._all(
            sa.select(t.spaces.c.id).where(
                t.spaces.c.org_id == org_id, t.spaces.c.archived_at.is_(None)
            )
        )
        return [r[0] for r in rows]

    async def default_space(self, org_id: str) -> Space | None:
        r = await self._one(
            t.spaces.select().where(t.spaces.c.org_id == org_id, t.spaces.c.is_default.is_(True))
        )
        return record(r, Space) if r else None

    async def update_space(self, space: Space) -> None:
        await self._c.execute(
            t.spaces.update()
            .where(t.spaces.c.id == space.id, t.spaces.c.org_id == space.org_id)
            .values(name=space.name, archived_at=space.archived_at, archived_by=space.archived_by)
        )

    # users
    async def insert_user(self, user: User) -> None:
        await self._c.execute(t.users.insert().values(asdict(user)))

    async def get_user(self, org_id: str, user_id: str) -> User | None:
        r = await self._one(
            t.users.select().where(t.users.c.org_id == org_id, t.users.c.id == user_id)
        )
        return record(r, User) if r else None

    async def find_user_by_email(self, org_id: str, email: str) -> User | None:
        r = await self._one(
            t.users.select().where(t.users.c.org_id == org_id, t.users.c.email == email)
        )
        return record(r, User) if r else None

    async def find_users_by_email(self, email: str) -> list[User]:
        rows = await self._all(
            t.users.select().where(t.users.c.email == email).order_by(t.users.c.created_at)
        )
        return [record(r, User) for r in rows]

    async def list_users(self, org_id: str, page: PageRequest) -> Page[User]:
        stmt = t.users.select().where(t.users.c.org_id == org_id)
        return await self._page(
            stmt, [t.users.c.created_at, t.users.c.id], page, lambda r: record(r, User)
        )

    async def update_user(self, user: User) -> None:
        await self._c.execute(
            t.users.update()
            .where(t.users.c.id == user.id, t.users.c.org_id == user.org_id)
            .values(name=user.name, disabled_at=user.disabled_at, password_hash=user.password_hash)
        )

    # roles and memberships
    async def insert_role(self, role: Role) -> None:
        await self._c.execute(
            t.roles.insert().values(
                org_id=role.org_id,
                name=role.name,
                scopes=list(role.scopes),
                description=role.description,
                created_at=role.created_at,
            )
        )

    async def get_role(self, org_id: str, name: str) -> Role | None:
        r = await self._one(
            t.roles.select().where(t.roles.c.org_id == org_id, t.roles.c.name == name)
        )
        return role_record(r) if r else None

    async def list_roles(self, org_id: str) -> list[Role]:
        rows = await self._all(
            t.roles.select().where(t.roles.c.org_id == org_id).order_by(t.roles.c.name)
        )
        return [role_record(r) for r in rows]

    async def update_role(self, role: Role) -> None:
        await self._c.execute(
            t.roles.update()
            .where(t.roles.c.org_id == role.org_id, t.roles.c.name == role.name)
            .values(scopes=list(role.scopes), description=role.description)
        )

    async def delete_role(self, org_id: str, name: str) -> None:
        await self._c.execute(
            t.roles.delete().where(t.roles.c.org_id == org_id, t.roles.c.name == name)
        )

    async def role_in_use(self, org_id: str, name: str) -> bool:
        r = await self._one(
            sa.select(t.memberships.c.id)
            .where(t.memberships.c.org_id == org_id, t.memberships.c.role == name)
            .limit(1)
        )
        return r is not None

    async def put_membership(self, membership: Membership) -> None:
        space = membership.space_id or ""
        await self._c.execute(
            t.memberships.delete().where(
                t.memberships.c.user_id == membership.user_id, t.memberships.c.space_id == space
            )
        )
        await self._c.execute(
            t.memberships.insert().values(
                org_id=membership.org_id,
                user_id=membership.user_id,
                space_id=space,
                role=membership.role,
                created_at=membership.created_at,
            )
        )

    async def delete_membership(self, org_id: str, user_id: str, space_id: str | None) -> bool:
        result = await self._c.execute(
            t.memberships.delete().where(
                t.memberships.c.org_id == org_id,
                t.memberships.c.user_id == user_id,
                t.memberships.c.space_id == (space_id or ""),
            )
        )
        return bool(result.rowcount)

    async def list_memberships(self, org_id: str, user_id: str) -> list[Membership]:
        rows = await self._all(
            t.memberships.select()
            .where(t.memberships.c.org_id == org_id, t.memberships.c.user_id == user_id)
            .order_by(t.memberships.c.space_id)
        )
        return [
            Membership(r.org_id, r.user_id, r.space_id or None, r.role, r.created_at) for r in rows
        ]
