"""Key hygiene in SQL: the keys a run looks at, and the notices already sent."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from apiward.adapters.storage import tables as t
from apiward.adapters.storage.sql.base import SqlBase
from apiward.adapters.storage.sql.rows import key_record, policy_of
from apiward.core.hygiene import HygienePolicy
from apiward.core.models import ApiKey


class SqlHygiene(SqlBase):
    """The keys hygiene policies may concern, and the record of notices sent."""

    async def hygiene_candidates(
        self,
        after_id: str,
        limit: int,
        *,
        expiring_before: datetime | None,
        unused_before: datetime | None,
        refilling: bool,
    ) -> list[ApiKey]:
        c = t.api_keys.c
        reasons: list[Any] = []
        if expiring_before is not None:
            reasons.append(sa.and_(c.expires_at.is_not(None), c.expires_at <= expiring_before))
        if unused_before is not None:
            reasons.append(
                sa.and_(
                    c.disabled_at.is_(None),
                    sa.func.coalesce(c.last_used_at, c.created_at) <= unused_before,
                )
            )
        if refilling:
            reasons.append(c.refill_amount.is_not(None))
        if not reasons:
            return []
        stmt = (
            t.api_keys.select()
            .where(c.revoked_at.is_(None), c.id > after_id, sa.or_(*reasons))
            .order_by(c.id)
            .limit(limit)
        )
        return [key_record(r) for r in await self._all(stmt)]

    async def org_hygiene_policies(self) -> dict[str, HygienePolicy]:
        o = t.orgs.c
        rows = await self._all(sa.select(o.id, o.key_hygiene).where(o.key_hygiene.is_not(None)))
        found = {r[0]: policy_of(r[1]) for r in rows}
        return {org_id: policy for org_id, policy in found.items() if policy is not None}

    async def key_notices(self, key_ids: Sequence[str]) -> set[tuple[str, str, str]]:
        n = t.key_notices.c
        found: set[tuple[str, str, str]] = set()
        for i in range(0, len(key_ids), 5000):
            rows = await self._all(
                sa.select(n.key_id, n.kind, n.mark).where(n.key_id.in_(key_ids[i : i + 5000]))
            )
            found.update((r[0], r[1], r[2]) for r in rows)
        return found

    async def claim_key_notice(
        self, key_id: str, org_id: str, kind: str, mark: str, at: datetime
    ) -> bool:
        from sqlalchemy.dialects import postgresql, sqlite

        dialect: Any = postgresql if self._c.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(t.key_notices).values(
            key_id=key_id, org_id=org_id, kind=kind, mark=mark, created_at=at
        )
        # A concurrent claimer of the same notice waits for this transaction and then
        # inserts nothing (PostgreSQL); SQLite serialises writers outright.
        result = await self._c.execute(stmt.on_conflict_do_nothing())
        return bool(result.rowcount == 1)
