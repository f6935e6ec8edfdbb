"""``apiward audit``: the audit log, newest first, filtered."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from apiward.adapters.cli.shared import JsonOption, OrgOption, as_operator, fail, out, run
from apiward.adapters.cli.tables import Column, show

if TYPE_CHECKING:
    from apiward.adapters.runtime import Runtime
    from apiward.core.models import Principal


def _when(value: str | None, option: str) -> datetime | None:
    """An ISO 8601 time, or a span back from now: 15m, 24h, 7d."""
    if value is None:
        return None
    from apiward.core import times
    from apiward.core.errors import InvalidInput

    try:
        return times.instant(value, name=option, now=datetime.now(UTC))
    except InvalidInput as exc:
        fail(exc.message)


def audit(
    event_type: Annotated[
        str | None, typer.Option("--type", help="Event type, e.g. key.revoked.")
    ] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Acting user id.")] = None,
    target: Annotated[
        str | None, typer.Option("--target", help="Target id (key, client, user...).")
    ] = None,
    credential: Annotated[
        str | None, typer.Option("--credential", help="Events by or about this credential.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="ISO time, or 15m, 24h, 7d ago.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="ISO time, or 15m, 24h, 7d ago.")
    ] = None,
    environment: Annotated[
        str | None, typer.Option("--env", help="Only this environment (default: all).")
    ] = None,
    page: Annotated[int, typer.Option(min=1)] = 1,
    page_size: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    accounts: Annotated[
        bool,
        typer.Option(
            "--accounts", help="Events of portal accounts outside any project (sign-ups...)."
        ),
    ] = False,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Read the audit log, newest first: who did what, to what, from where."""
    from apiward.core.models import AuditFilter, PageRequest

    flt = AuditFilter(
        type=event_type,
        actor_user_id=actor,
        target_id=target,
        since=_when(since, "--since"),
        until=_when(until, "--until"),
        environment=environment,
        credential_id=credential,
    )

    async def job(
        runtime: Runtime, principal: Principal | None
    ) -> tuple[dict[str, Any], dict[str, str]]:
        from apiward.adapters.http.schemas.tenancy import AuditEventOut

        if principal is None:
            result = await runtime.audit.list_accounts(flt, PageRequest(page, page_size))
        else:
            result = await runtime.audit.list(principal, flt, PageRequest(page, page_size))
        people: dict[str, str] = {}  # the table names people by their address
        async with runtime.store.begin() as tx:
            for event in result.items:
                person = event.actor_user_id
                if not person or person in people:
                    continue
                if person.startswith("acc_"):
                    account = await tx.get_account(person)
                    people[person] = account.email if account else person
                else:
                    user = await tx.get_user(event.org_id or "", person)
                    people[person] = user.email if user else person
        data = {
            "items": [AuditEventOut.of(e).model_dump(mode="json") for e in result.items],
            "total": result.total,
            "page": result.page,
            "page_size": result.page_size,
        }
        return data, people

    data, people = (
        run(lambda runtime: job(runtime, None)) if accounts else as_operator(org, "live", job)
    )
    if as_json:
        print(json.dumps(data))
        return
    rows = [
        [
            e["created_at"][:19].replace("T", " "),
            e["type"],
            e["environment"] or "*",
            people.get(e["actor_user_id"] or "", e["actor_user_id"] or ""),
            e["actor_credential_id"] or "",
            e["target_id"] or "",
            e["ip"] or "",
            e["request_id"] or "",
        ]
        for e in data["items"]
    ]
    show(
        out,
        AUDIT_COLUMNS,
        rows,
        footer=f"{data['total']} event(s); page {data['page']}.",
    )


AUDIT_COLUMNS = (
    Column("time", keep=9, least=19),
    Column("type", keep=8, least=12),
    Column("env", keep=5),
    Column("who", keep=7, least=12),
    Column("credential", keep=4),
    Column("target", whole=True),
    Column("ip", keep=3),
    Column("request id", keep=1),
)
