"""Refresh tokens, token revocations and signing keys in SQL."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

import sqlalchemy as sa

from apiward.adapters.storage import tables as t
from apiward.adapters.storage.sql.base import SqlBase
from apiward.adapters.storage.sql.rows import record
from apiward.core.models import RefreshToken, StoredSigningKey


class SqlTokens(SqlBase):
    """Refresh tokens, token revocations and signing keys."""

    # refresh tokens and revocations
    async def insert_refresh(self, token: RefreshToken) -> None:
        await self._c.execute(t.refresh_tokens.insert().values(asdict(token)))

    async def find_refresh_for_update(self, digest: str) -> RefreshToken | None:
        stmt = t.refresh_tokens.select().where(t.refresh_tokens.c.digest == digest)
        if self._c.dialect.name != "sqlite":  # SQLite's BEGIN IMMEDIATE already serialises
            stmt = stmt.with_for_update()
        r = await self._one(stmt)
        return record(r, RefreshToken) if r else None

    async def update_refresh(self, token: RefreshToken) -> None:
        await self._c.execute(
            t.refresh_tokens.update()
            .where(t.refresh_tokens.c.id == token.id)
            .values(
                used_at=token.used_at,
                successor_id=token.successor_id,
                answer_sealed=token.answer_sealed,
                revoked_at=token.revoked_at,
            )
        )

    async def revoke_family(self, family_id: str, at: datetime) -> int:
        """Revoke every live token of the family, successors of rotations in flight too.

        On PostgreSQL an UPDATE that waits on a rotation's row lock sees, once it may go
        on, the rotated row again but not the successor that rotation inserted (read
        committed: the statement's snapshot predates it). Each further statement takes
        a new snapshot, so the update runs again until it finds nothing left.
        """
        c = t.refresh_tokens.c
        revoked = 0
        while True:
            result = await self._c.execute(
                t.refresh_tokens.update()
                .where(c.family_id == family_id, c.revoked_at.is_(None))
                .values(revoked_at=at, answer_sealed=None)
            )
            count = int(result.rowcount or 0)
            if not count:
                return revoked
            revoked += count

    async def user_families(self, org_id: str, user_id: str) -> list[str]:
        c = t.refresh_tokens.c
        rows = await self._all(
            sa.select(c.family_id)
            .distinct()
            .where(c.org_id == org_id, c.user_id == user_id, c.revoked_at.is_(None))
        )
        return [r[0] for r in rows]

    async def prune_refresh(self, expired_before: datetime, answers_before: datetime) -> None:
        c = t.refresh_tokens.c
        await self._c.execute(t.refresh_tokens.delete().where(c.expires_at < expired_before))
        await self._c.execute(
            t.refresh_tokens.update()
            .where(c.answer_sealed.is_not(None), c.used_at < answers_before)
            .values(answer_sealed=None)
        )
        await self._c.execute(
            t.revocations.delete().where(t.revocations.c.expires_at < expired_before)
        )

    async def insert_revocation(
        self, kind: str, value: str, at: datetime, expires_at: datetime
    ) -> None:
        c = t.revocations.c
        exists = await self._one(sa.select(c.id).where(c.kind == kind, c.value == value))
        if exists is None:
            await self._c.execute(
                t.revocations.insert().values(
                    kind=kind, value=value, created_at=at, expires_at=expires_at
                )
            )

    async def active_revocations(self, now: datetime) -> list[tuple[str, str]]:
        c = t.revocations.c
        rows = await self._all(sa.select(c.kind, c.value).where(c.expires_at > now))
        return [(r.kind, r.value) for r in rows]

    # signing keys
    async def insert_signing_key(self, key: StoredSigningKey) -> None:
        await self._c.execute(t.signing_keys.insert().values(asdict(key)))

    async def list_signing_keys(self) -> list[StoredSigningKey]:
        rows = await self._all(t.signing_keys.select().order_by(t.signing_keys.c.created_at))
        return [record(r, StoredSigningKey) for r in rows]

    async def retire_signing_key(self, kid: str, at: datetime, expires_at: datetime) -> None:
        await self._c.execute(
            t.signing_keys.update()
            .where(t.signing_keys.c.kid == kid)
            .values(retired_at=at, expires_at=expires_at)
        )
