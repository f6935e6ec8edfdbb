"""The audit log: events built from the principal that caused them, and reading them back."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from apiward.core.ids import new_id
from apiward.core.jsontext import plain
from apiward.core.models import (
    AuditEvent,
    AuditFilter,
    Page,
    PageRequest,
    Principal,
    RequestContext,
    User,
)
from apiward.services.ports import AuditTx, Store


def new_event(
    type: str,
    at: datetime,
    context: RequestContext,
    *,
    org_id: str | None,
    environment: str | None,
    actor_user_id: str | None = None,
    actor_credential_id: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    space_id: str | None = None,
    data: dict[str, object] | None = None,
) -> AuditEvent:
    """The one way an audit event is made: what happened (``type``, ``at``), to what,
    by whom, and the request it came from (``context``: address, agent, request id).
    ``org_id`` None: no project concerned; ``environment`` None: the whole org's.
    ``data`` is kept as JSON types (``plain``): times as RFC 3339 text, tuples as lists,
    so that the store and every webhook body hold the same document."""
    return AuditEvent(
        id=new_id("evt"),
        org_id=org_id,
        environment=environment,
        type=type,
        created_at=at,
        actor_user_id=actor_user_id,
        actor_credential_id=actor_credential_id,
        target_type=target_type,
        target_id=target_id,
        space_id=space_id,
        ip=context.ip,
        user_agent=context.user_agent,
        request_id=context.request_id,
        data=plain(data or {}),
    )


def audit_event(
    principal: Principal,
    type: str,
    at: datetime,
    *,
    target_type: str | None = None,
    target_id: str | None = None,
    data: dict[str, object] | None = None,
) -> AuditEvent:
    """An event a credential caused: its organisation, environment and space, its user
    and credential as the actor, and its request."""
    return new_event(
        type,
        at,
        principal.context,
        org_id=principal.org_id,
        environment=principal.environment,
        actor_user_id=principal.user_id,
        actor_credential_id=principal.credential_id,
        target_type=target_type,
        target_id=target_id,
        space_id=principal.space_id,
        data=data,
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
    return new_event(
        type,
        at,
        context,
        org_id=org_id,
        environment=None,
        actor_user_id=actor_user_id,
        target_type=target_type,
        target_id=target_id,
        data=data,
    )


def failed_sign_in_events(
    at: datetime,
    context: RequestContext,
    *,
    users: list[User],
    account_id: str | None,
    data: dict[str, object] | None = None,
) -> list[AuditEvent]:
    """Where a refused sign-in for an address is recorded: only where the attempt was for.

    ``users`` are the users it could have signed in (already narrowed to the
    organisation asked for, if one was); ``account_id`` is the portal account of the
    address, if any. A portal account's attempt goes to the account's log, never to an
    organisation's; one organisation's own user, to that organisation; when the address
    names users of several organisations and none was asked for, to the deployment's
    log only, so that no organisation learns of attempts on another's user.
    """
    accounts = {u.account_id for u in users if u.account_id} | ({account_id} - {None})
    own = [u for u in users if u.account_id is None]
    events = [
        request_event(
            "login.failed", at, context, org_id=None, target_type="account", target_id=a, data=data
        )
        for a in sorted(a for a in accounts if a)
    ]
    if len(own) == 1 and not accounts:
        user = own[0]
        events.append(
            request_event(
                "login.failed",
                at,
                context,
                org_id=user.org_id,
                target_type="user",
                target_id=user.id,
                data=data,
            )
        )
    elif own and (len(own) > 1 or accounts):
        events.append(
            request_event(
                "login.failed",
                at,
                context,
                org_id=None,
                target_type=None,
                target_id=None,
                data={**(data or {}), "organisations": len({u.org_id for u in own})},
            )
        )
    return events


class AuditLog:
    def __init__(self, store: Store[AuditTx]) -> None:
        self._store = store

    async def list(
        self, principal: Principal, flt: AuditFilter, page: PageRequest
    ) -> Page[AuditEvent]:
        if principal.viewed_environment is not None:
            # The store keeps events of no environment in (``Principal.sees``).
            flt = replace(flt, environment=principal.viewed_environment)
        async with self._store.begin() as tx:
            return await tx.list_audit(principal.org_id, flt, page)

    async def list_accounts(self, flt: AuditFilter, page: PageRequest) -> Page[AuditEvent]:
        """Events about portal accounts outside any project (sign-ups, confirmations,
        password resets): the operator's to read (``apiward audit --accounts``)."""
        async with self._store.begin() as tx:
            return await tx.list_audit(None, flt, page)
