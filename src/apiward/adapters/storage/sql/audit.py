"""The audit log in SQL, with its retention and the webhook outbox each event is
queued in."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

import sqlalchemy as sa

from apiward.adapters.storage import tables as t
from apiward.adapters.storage.sql.base import SqlBase
from apiward.adapters.storage.sql.rows import record
from apiward.core.models import AuditEvent, AuditFilter, Page, PageRequest


class SqlAudit(SqlBase):
    """The audit log, its retention, and the webhook outbox."""

    async def insert_audit(self, event: AuditEvent) -> None:
        await self._c.execute(t.audit_events.insert().values(asdict(event)))
        # The webhook outbox: committed with the event, fanned out after (webhooks.py).
        await self._c.execute(
            t.webhook_outbox.insert().values(event_id=event.id, created_at=event.created_at)
        )

    async def list_audit(
        self, org_id: str | None, flt: AuditFilter, page: PageRequest
    ) -> Page[AuditEvent]:
        c = t.audit_events.c
        stmt = t.audit_events.select().where(
            c.org_id.is_(None) if org_id is None else c.org_id == org_id
        )
        if flt.environment is not None:
            stmt = stmt.where(sa.or_(c.environment == flt.environment, c.environment.is_(None)))
        if flt.type is not None:
            stmt = stmt.where(c.type == flt.type)
        if flt.actor_user_id is not None:
            stmt = stmt.where(c.actor_user_id == flt.actor_user_id)
        if flt.target_id is not None:
            stmt = stmt.where(c.target_id == flt.target_id)
        if flt.credential_id is not None:
            cred = flt.credential_id
            stmt = stmt.where(sa.or_(c.actor_credential_id == cred, c.target_id == cred))
        if flt.since is not None:
            stmt = stmt.where(c.created_at >= flt.since)
        if flt.until is not None:
            stmt = stmt.where(c.created_at < flt.until)
        return await self._page(
            stmt, [c.created_at.desc(), c.id], page, lambda r: record(r, AuditEvent)
        )

    async def prune_audit(self, before: datetime) -> int:
        result = await self._c.execute(
            t.audit_events.delete().where(t.audit_events.c.created_at < before)
        )
        return int(result.rowcount or 0)

    async def take_outbox(self, limit: int) -> list[AuditEvent]:
        o = t.webhook_outbox.c
        stmt = sa.select(o.event_id).order_by(o.created_at, o.event_id).limit(limit)
        if self._c.dialect.name != "sqlite":  # SQLite's BEGIN IMMEDIATE already serialises
            stmt = stmt.with_for_update(skip_locked=True)
        ids = [r[0] for r in await self._all(stmt)]
        if not ids:
            return []
        await self._c.execute(t.webhook_outbox.delete().where(o.event_id.in_(ids)))
        a = t.audit_events.c
        rows = await self._all(
            t.audit_events.select().where(a.id.in_(ids)).order_by(a.created_at, a.id)
        )
        return [record(r, AuditEvent) for r in rows]
