"""Second factors for dashboard sign-in, in SQL."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime

import sqlalchemy as sa

from apiward.adapters.storage import tables as t
from apiward.adapters.storage.sql.base import SqlBase
from apiward.adapters.storage.sql.rows import record
from apiward.core.models import MfaFactor


class SqlMfa(SqlBase):
    """Authenticators (their secrets sealed) and recovery codes (hashed)."""

    async def get_mfa(self, owner_id: str) -> MfaFactor | None:
        r = await self._one(t.mfa_factors.select().where(t.mfa_factors.c.owner_id == owner_id))
        return record(r, MfaFactor) if r else None

    async def put_mfa(self, factor: MfaFactor) -> None:
        c = t.mfa_factors.c
        await self._c.execute(
            t.mfa_factors.delete().where(c.owner_id == factor.owner_id, c.enabled_at.is_(None))
        )
        await self._c.execute(t.mfa_factors.insert().values(asdict(factor)))

    async def enable_mfa(
        self, owner_id: str, at: datetime, step: int, recovery_digests: Sequence[str]
    ) -> bool:
        c = t.mfa_factors.c
        result = await self._c.execute(
            t.mfa_factors.update()
            .where(c.owner_id == owner_id, c.enabled_at.is_(None))
            .values(enabled_at=at, last_step=step)
        )
        if result.rowcount != 1:
            return False
        codes = t.mfa_recovery_codes
        await self._c.execute(codes.delete().where(codes.c.owner_id == owner_id))
        if recovery_digests:
            await self._c.execute(
                codes.insert(), [{"digest": d, "owner_id": owner_id} for d in recovery_digests]
            )
        return True

    async def delete_mfa(self, owner_id: str) -> bool:
        codes = t.mfa_recovery_codes
        await self._c.execute(codes.delete().where(codes.c.owner_id == owner_id))
        result = await self._c.execute(
            t.mfa_factors.delete().where(t.mfa_factors.c.owner_id == owner_id)
        )
        return bool(result.rowcount)

    async def use_mfa_step(self, owner_id: str, step: int) -> bool:
        c = t.mfa_factors.c
        result = await self._c.execute(
            t.mfa_factors.update()
            .where(
                c.owner_id == owner_id,
                c.enabled_at.is_not(None),
                sa.or_(c.last_step.is_(None), c.last_step < step),
            )
            .values(last_step=step)
        )
        return result.rowcount == 1

    async def use_recovery_code(self, owner_id: str, digest: str, at: datetime) -> bool:
        c = t.mfa_recovery_codes.c
        result = await self._c.execute(
            t.mfa_recovery_codes.update()
            .where(c.digest == digest, c.owner_id == owner_id, c.used_at.is_(None))
            .values(used_at=at)
        )
        return result.rowcount == 1

    async def recovery_codes_left(self, owner_id: str) -> int:
        c = t.mfa_recovery_codes.c
        count = await self._c.execute(
            sa.select(sa.func.count())
            .select_from(t.mfa_recovery_codes)
            .where(c.owner_id == owner_id, c.used_at.is_(None))
        )
        return int(count.scalar_one())
