"""The audit log: events built from the principal that caused them, and reading them back."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from apiward.core.ids import new_id
from apiward.core.models import AuditEvent, Page, PageRequest, Principal, RequestContext
from apiward.services.ports import AuditFilter, Store


def audit_event(
    principal: Principal,
    type: str,
    at: datetime,
    *,
    target_type: str | None = None,
    target_id: str | None = None,
    data: dict[str, object] | None = None,
) -> AuditEvent:
    ctx = principal.context
    return AuditEvent(
        id=new_id("evt"),
        org_id=principal.org_id,
        environment=principal.environment,
        type=type,
        created_at=at,
        actor_user_id=principal.user_id,
        actor_credential_id=principal.credential_id,
        target_type=target_type,
        target_id=target_id,
        space_id=principal.space_id,
        ip=ctx.ip,
        user_agent=ctx.user_agent,
        request_id=ctx.request_id,
        data=data or {},
    )


def request_event(
    type: str,
    at: datetime,
    context: RequestContext,
    *,
    org_id: str | None,
    target_type: str | None,
    target_id: str | None,
    actor_user_id: str | None = None,
    data: dict[str, object] | None = None,
) -> AuditEvent:
    """An event of a request that no credential made (sign-in, sign-up, a reset link):
    what it is about, and where it came from. ``org_id`` None: no project concerned."""
    return AuditEvent(
        id=new_id("evt"),
        org_id=org_id,
        environment=None,
        type=type,
        created_at=at,
        actor_user_id=actor_user_id,
        target_type=target_type,
        target_id=target_id,
        ip=context.ip,
        user_agent=context.user_agent,
        request_id=context.request_id,
        data=data or {},
    )


class AuditLog:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def list(
        self, principal: Principal, flt: AuditFilter, page: PageRequest
    ) -> Page[AuditEvent]:
        if not principal.credential_kind.spans_environments:
            flt = replace(flt, environment=principal.environment)
        async with self._store.begin() as tx:
            return await tx.list_audit(principal.org_id, flt, page)

    async def list_accounts(self, flt: AuditFilter, page: PageRequest) -> Page[AuditEvent]:
        """Events about portal accounts outside any project (sign-ups, confirmations,
        password resets): the operator's to read (``apiward audit --accounts``)."""
        async with self._store.begin() as tx:
            return await tx.list_audit(None, flt, page)
