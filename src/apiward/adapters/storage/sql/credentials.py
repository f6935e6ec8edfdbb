"""API keys (their credits, bulk imports) and OAuth clients in SQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from apiward.adapters.storage import tables as t
from apiward.adapters.storage.sql.base import SqlBase
from apiward.adapters.storage.sql.rows import (
    CREDIT_COLUMNS,
    bulk_key_values,
    client_record,
    client_values,
    credit_values,
    credits_of,
    key_record,
    key_values,
)
from apiward.core.limits import Credits
from apiward.core.models import ApiKey, KeyFilter, KeyState, OAuthClient, Page, PageRequest


class SqlCredentials(SqlBase):
    """API keys (their credits and bulk imports) and OAuth clients."""

    # API keys
    async def insert_key(self, key: ApiKey) -> None:
        await self._c.execute(t.api_keys.insert().values(key_values(key)))

    async def get_key(self, org_id: str, key_id: str) -> ApiKey | None:
        r = await self._one(
            t.api_keys.select().where(t.api_keys.c.org_id == org_id, t.api_keys.c.id == key_id)
        )
        return key_record(r) if r else None

    async def find_key_by_digest(self, digest: str) -> ApiKey | None:
        r = await self._one(t.api_keys.select().where(t.api_keys.c.digest == digest))
        return key_record(r) if r else None

    async def list_keys(self, org_id: str, flt: KeyFilter, page: PageRequest) -> Page[ApiKey]:
        c = t.api_keys.c
        stmt = t.api_keys.select().where(c.org_id == org_id)
        if flt.environment is not None:
            stmt = stmt.where(c.environment == flt.environment)
        if flt.user_id is not None:
            stmt = stmt.where(
                sa.or_(
                    c.user_id == flt.user_id,
                    sa.and_(c.user_id.is_(None), c.created_by == flt.user_id),
                )
            )
        if not flt.include_revoked:
            stmt = stmt.where(c.revoked_at.is_(None))
        if flt.external_id is not None:
            stmt = stmt.where(c.external_id == flt.external_id)
        if flt.search:
            stmt = stmt.where(_matching(flt.search))
        if flt.state is not None:
            stmt = stmt.where(_in_state(flt.state, flt.now))
        return await self._page(stmt, [c.created_at.desc(), c.id], page, key_record)

    async def update_key(self, key: ApiKey) -> None:
        values = key_values(key)
        # last_used_* belong to touch_keys and credits to set_key_credits: a record read
        # before a flush or a spend must not undo it.
        for fixed in (
            *CREDIT_COLUMNS,
            "id",
            "org_id",
            "digest",
            "created_at",
            "created_by",
            "environment",
            "last_used_at",
            "last_used_ip",
        ):
            values.pop(fixed)
        await self._c.execute(
            t.api_keys.update()
            .where(t.api_keys.c.id == key.id, t.api_keys.c.org_id == key.org_id)
            .values(values)
        )

    async def touch_keys(self, usage: Sequence[tuple[str, datetime, str | None]]) -> None:
        if not usage:
            return
        stmt = (
            t.api_keys.update()
            .where(t.api_keys.c.id == sa.bindparam("key_id"))
            .values(last_used_at=sa.bindparam("at"), last_used_ip=sa.bindparam("ip"))
        )
        await self._c.execute(stmt, [{"key_id": k, "at": at, "ip": ip} for k, at, ip in usage])

    async def key_credits_for_update(self, key_id: str) -> Credits | None:
        stmt = sa.select(*(t.api_keys.c[c] for c in CREDIT_COLUMNS)).where(
            t.api_keys.c.id == key_id
        )
        if self._c.dialect.name != "sqlite":
            stmt = stmt.with_for_update()
        r = await self._one(stmt)
        return credits_of(r._mapping) if r else None

    async def set_key_credits(self, key_id: str, credits: Credits | None) -> None:
        await self._c.execute(
            t.api_keys.update().where(t.api_keys.c.id == key_id).values(credit_values(credits))
        )

    async def insert_keys_bulk(self, keys: Sequence[ApiKey]) -> None:
        if keys:  # one executemany: the driver's batch path, not a statement per row
            await self._c.execute(t.api_keys.insert(), [bulk_key_values(k) for k in keys])

    async def existing_key_digests(self, digests: Sequence[str]) -> set[str]:
        found: set[str] = set()
        column = t.api_keys.c.digest
        for i in range(0, len(digests), 5000):  # well under every driver's bind limit
            rows = await self._all(sa.select(column).where(column.in_(digests[i : i + 5000])))
            found.update(r[0] for r in rows)
        return found

    async def record_key_format(self, spec: str, now: datetime) -> None:
        from sqlalchemy.dialects import postgresql, sqlite

        f = t.key_formats
        dialect: Any = postgresql if self._c.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(f).values(spec=spec, first_seen_at=now, last_seen_at=now)
        # Workers starting together record the same format once.
        await self._c.execute(
            stmt.on_conflict_do_update(index_elements=[f.c.spec], set_={"last_seen_at": now})
        )

    async def key_formats(self) -> list[str]:
        f = t.key_formats.c
        rows = await self._all(sa.select(f.spec).order_by(f.last_seen_at.desc(), f.spec))
        return [r[0] for r in rows]

    async def key_prefix_counts(self) -> dict[str, int]:
        k = t.api_keys.c
        rows = await self._all(
            sa.select(k.prefix, sa.func.count()).where(k.revoked_at.is_(None)).group_by(k.prefix)
        )
        return {r[0]: int(r[1]) for r in rows}

    # OAuth clients
    async def insert_client(self, client: OAuthClient) -> None:
        await self._c.execute(t.oauth_clients.insert().values(client_values(client)))

    async def get_client(self, org_id: str, client_id: str) -> OAuthClient | None:
        c = t.oauth_clients.c
        r = await self._one(t.oauth_clients.select().where(c.org_id == org_id, c.id == client_id))
        return client_record(r) if r else None

    async def find_client(self, client_id: str) -> OAuthClient | None:
        r = await self._one(t.oauth_clients.select().where(t.oauth_clients.c.id == client_id))
        return client_record(r) if r else None

    async def find_client_by_secret(self, secret_digest: str) -> OAuthClient | None:
        c = t.oauth_clients.c
        r = await self._one(t.oauth_clients.select().where(c.secret_digest == secret_digest))
        return client_record(r) if r else None

    async def list_clients(
        self,
        org_id: str,
        environment: str,
        page: PageRequest,
        *,
        external_id: str | None = None,
    ) -> Page[OAuthClient]:
        c = t.oauth_clients.c
        stmt = t.oauth_clients.select().where(c.org_id == org_id, c.environment == environment)
        if external_id is not None:
            stmt = stmt.where(c.external_id == external_id)
        return await self._page(stmt, [c.created_at.desc(), c.id], page, client_record)

    async def update_client(self, client: OAuthClient) -> None:
        values = client_values(client)
        for fixed in (
            "id",
            "org_id",
            "secret_digest",
            "created_at",
            "created_by",
            "environment",
            "last_used_at",
            "last_used_ip",
        ):
            values.pop(fixed)
        c = t.oauth_clients.c
        await self._c.execute(
            t.oauth_clients.update()
            .where(c.id == client.id, c.org_id == client.org_id)
            .values(values)
        )

    async def touch_clients(self, usage: Sequence[tuple[str, datetime, str | None]]) -> None:
        if not usage:
            return
        stmt = (
            t.oauth_clients.update()
            .where(t.oauth_clients.c.id == sa.bindparam("client_id"))
            .values(last_used_at=sa.bindparam("at"), last_used_ip=sa.bindparam("ip"))
        )
        await self._c.execute(stmt, [{"client_id": k, "at": at, "ip": ip} for k, at, ip in usage])


def _matching(search: str) -> sa.ColumnElement[bool]:
    """A key whose name contains ``search`` (any case), or whose id or last four
    characters it is, or whose hint (``prefix…last4``, or with ``...``) it is."""
    c = t.api_keys.c
    options = [
        sa.func.lower(c.name).contains(search.lower(), autoescape=True),
        c.id == search,
        c.last4 == search,
    ]
    for dots in ("…", "..."):
        head, sep, tail = search.partition(dots)
        if sep and tail:
            options.append(sa.and_(c.last4 == tail, c.prefix.startswith(head, autoescape=True)))
    return sa.or_(*options)


def _in_state(state: KeyState, now: datetime | None) -> sa.ColumnElement[bool]:
    """``ApiKey.state`` as a condition: revoked wins, then expired, then disabled."""
    c = t.api_keys.c
    if state is KeyState.REVOKED:
        return c.revoked_at.is_not(None)
    if now is None:
        raise ValueError("a state filter needs the time it is evaluated at")
    live = c.revoked_at.is_(None)
    if state is KeyState.EXPIRED:
        return sa.and_(live, c.expires_at.is_not(None), c.expires_at <= now)
    unexpired = sa.and_(live, sa.or_(c.expires_at.is_(None), c.expires_at > now))
    if state is KeyState.DISABLED:
        return sa.and_(unexpired, c.disabled_at.is_not(None))
    return sa.and_(unexpired, c.disabled_at.is_(None))
