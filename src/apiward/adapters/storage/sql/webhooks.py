"""Webhook endpoints and their deliveries in SQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from apiward.adapters.storage import tables as t
from apiward.adapters.storage.sql.base import SqlBase
from apiward.adapters.storage.sql.rows import (
    delivery_record,
    delivery_values,
    webhook_record,
    webhook_values,
)
from apiward.core.models import Page, PageRequest
from apiward.core.webhooks import WebhookDelivery, WebhookEndpoint


class SqlWebhooks(SqlBase):
    """Webhook endpoints and their deliveries."""

    # endpoints
    async def insert_webhook(self, endpoint: WebhookEndpoint) -> None:
        await self._c.execute(t.webhook_endpoints.insert().values(webhook_values(endpoint)))

    async def get_webhook(self, org_id: str, webhook_id: str) -> WebhookEndpoint | None:
        c = t.webhook_endpoints.c
        r = await self._one(
            t.webhook_endpoints.select().where(c.org_id == org_id, c.id == webhook_id)
        )
        return webhook_record(r) if r else None

    async def list_webhooks(
        self, org_id: str, environment: str | None, page: PageRequest
    ) -> Page[WebhookEndpoint]:
        c = t.webhook_endpoints.c
        stmt = t.webhook_endpoints.select().where(c.org_id == org_id)
        if environment is not None:
            stmt = stmt.where(c.environment == environment)
        return await self._page(stmt, [c.created_at.desc(), c.id], page, webhook_record)

    async def active_webhooks(self) -> list[WebhookEndpoint]:
        c = t.webhook_endpoints.c
        rows = await self._all(
            t.webhook_endpoints.select().where(c.disabled_at.is_(None)).order_by(c.created_at)
        )
        return [webhook_record(r) for r in rows]

    async def update_webhook(self, endpoint: WebhookEndpoint) -> None:
        values = webhook_values(endpoint)
        for fixed in ("id", "org_id", "environment", "created_at", "created_by"):
            values.pop(fixed)
        c = t.webhook_endpoints.c
        await self._c.execute(
            t.webhook_endpoints.update()
            .where(c.id == endpoint.id, c.org_id == endpoint.org_id)
            .values(values)
        )

    async def delete_webhook(self, org_id: str, webhook_id: str) -> bool:
        d, c = t.webhook_deliveries.c, t.webhook_endpoints.c
        await self._c.execute(
            t.webhook_deliveries.delete().where(d.org_id == org_id, d.endpoint_id == webhook_id)
        )
        result = await self._c.execute(
            t.webhook_endpoints.delete().where(c.org_id == org_id, c.id == webhook_id)
        )
        return bool(result.rowcount)

    # deliveries
    async def insert_deliveries(self, deliveries: Sequence[WebhookDelivery]) -> int:
        from sqlalchemy.dialects import postgresql, sqlite

        added = 0
        for delivery in deliveries:
            values = delivery_values(delivery)
            stmt: Any
            if self._c.dialect.name == "postgresql":
                stmt = postgresql.insert(t.webhook_deliveries).values(values)
            else:
                stmt = sqlite.insert(t.webhook_deliveries).values(values)
            result = await self._c.execute(stmt.on_conflict_do_nothing())
            added += int(result.rowcount or 0)
        return added

    async def claim_deliveries(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> list[WebhookDelivery]:
        d, e = t.webhook_deliveries.c, t.webhook_endpoints.c
        stmt = (
            sa.select(d.id)
            .join_from(t.webhook_deliveries, t.webhook_endpoints, d.endpoint_id == e.id)
            .where(
                d.status == "pending",
                d.next_attempt_at <= now,
                sa.or_(d.locked_until.is_(None), d.locked_until <= now),
                e.disabled_at.is_(None),
            )
            .order_by(d.next_attempt_at, d.id)
            .limit(limit)
        )
        if self._c.dialect.name != "sqlite":
            stmt = stmt.with_for_update(of=t.webhook_deliveries, skip_locked=True)
        ids = [r[0] for r in await self._all(stmt)]
        if not ids:
            return []
        await self._c.execute(
            t.webhook_deliveries.update().where(d.id.in_(ids)).values(locked_until=lease_until)
        )
        rows = await self._all(
            t.webhook_deliveries.select().where(d.id.in_(ids)).order_by(d.next_attempt_at, d.id)
        )
        return [delivery_record(r) for r in rows]

    async def finish_attempt(self, delivery: WebhookDelivery) -> None:
        d = t.webhook_deliveries.c
        await self._c.execute(
            t.webhook_deliveries.update()
            .where(d.id == delivery.id)
            .values(
                status=delivery.status,
                attempts=delivery.attempts,
                next_attempt_at=delivery.next_attempt_at,
                last_attempt_at=delivery.last_attempt_at,
                response_status=delivery.response_status,
                error=(delivery.error or "")[:500] or None,
                completed_at=delivery.completed_at,
                attempt_log=list(delivery.attempt_log),
                locked_until=None,
            )
        )

    async def list_deliveries(
        self, org_id: str, webhook_id: str, page: PageRequest
    ) -> Page[WebhookDelivery]:
        d = t.webhook_deliveries.c
        stmt = t.webhook_deliveries.select().where(d.org_id == org_id, d.endpoint_id == webhook_id)
        return await self._page(stmt, [d.created_at.desc(), d.id], page, delivery_record)

    async def get_delivery(
        self, org_id: str, webhook_id: str, delivery_id: str
    ) -> WebhookDelivery | None:
        d = t.webhook_deliveries.c
        row = await self._one(
            t.webhook_deliveries.select().where(
                d.org_id == org_id, d.endpoint_id == webhook_id, d.id == delivery_id
            )
        )
        return delivery_record(row) if row is not None else None

    async def requeue_delivery(
        self, org_id: str, webhook_id: str, delivery_id: str, now: datetime
    ) -> bool:
        d = t.webhook_deliveries.c
        result = await self._c.execute(
            t.webhook_deliveries.update()
            .where(
                d.org_id == org_id,
                d.endpoint_id == webhook_id,
                d.id == delivery_id,
                d.status == "failed",
            )
            .values(
                status="pending",
                attempts=0,
                next_attempt_at=now,
                completed_at=None,
                locked_until=None,
            )
        )
        return bool(result.rowcount)

    async def prune_deliveries(self, before: datetime) -> int:
        d = t.webhook_deliveries.c
        result = await self._c.execute(
            t.webhook_deliveries.delete().where(d.status != "pending", d.created_at < before)
        )
        return int(result.rowcount or 0)
