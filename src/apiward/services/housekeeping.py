"""Periodic upkeep: signing-key rotation, expired tokens and links, and retention.

Retention deletes audit events past their retention (``APIWARD_AUDIT_RETENTION_DAYS``,
0 keeps all), finished webhook deliveries past ``APIWARD_WEBHOOK_RETENTION_DAYS`` and
usage counts past each granularity's retention (docs/architecture.md, "Background
work").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from apiward.core.clock import Clock
from apiward.services.analytics import Analytics
from apiward.services.ports import AuditTx, PortalTx, Store, TokensTx, WebhooksTx
from apiward.services.signing import Keyring


class HousekeepingTx(TokensTx, PortalTx, AuditTx, WebhooksTx, Protocol):
    """What upkeep prunes: refresh tokens, links, audit events and deliveries."""


log = structlog.get_logger("apiward.housekeeping")


@dataclass(frozen=True, slots=True)
class Upkeep:
    """How long things are kept, from settings."""

    signing_key_rotation: timedelta | None
    """None: signing keys rotate only when an operator says so."""
    refresh_grace: timedelta
    """How long a used refresh token keeps its sealed answer (the grace window, or the
    retry window when longer)."""
    audit_retention: timedelta | None
    """None: audit events are kept for ever."""
    webhook_retention: timedelta
    retention_every: timedelta = timedelta(hours=1)


class Housekeeping:
    def __init__(
        self,
        store: Store[HousekeepingTx],
        clock: Clock,
        keyring: Keyring,
        analytics: Analytics,
        upkeep: Upkeep,
    ) -> None:
        self._store = store
        self._clock = clock
        self._keyring = keyring
        self._analytics = analytics
        self.upkeep = upkeep
        self._retention_at: datetime | None = None

    async def run(self) -> None:
        """Rotate the signing key when due; wipe expired refresh tokens, their kept
        answers and old links; enforce retention (at most once an hour)."""
        if self.upkeep.signing_key_rotation:
            await self._keyring.rotate_if_due(self.upkeep.signing_key_rotation)
        now = self._clock.now()
        async with self._store.begin() as tx:
            await tx.prune_refresh(now - timedelta(days=1), now - self.upkeep.refresh_grace)
            await tx.prune_links(now - timedelta(days=30))
        await self.enforce_retention()

    async def enforce_retention(self, *, force: bool = False) -> tuple[int, int]:
        """Delete what is past its retention, at most once per ``retention_every`` unless
        ``force``; the numbers of audit events and deliveries deleted."""
        now = self._clock.now()
        due = self._retention_at is None or now - self._retention_at >= self.upkeep.retention_every
        if not force and not due:
            return 0, 0
        self._retention_at = now
        audit = 0
        async with self._store.begin() as tx:
            if self.upkeep.audit_retention:
                audit = await tx.prune_audit(now - self.upkeep.audit_retention)
            deliveries = await tx.prune_deliveries(now - self.upkeep.webhook_retention)
        counts = await self._analytics.prune(now)
        if audit or deliveries or counts:
            log.info(
                "retention_enforced",
                audit_events=audit,
                webhook_deliveries=deliveries,
                verification_counts=counts,
            )
        return audit, deliveries
