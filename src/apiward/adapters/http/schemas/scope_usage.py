"""The answer of ``GET /v1/keys/{id}/scope-usage`` and ``GET /v1/clients/{id}/scope-usage``."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field

from apiward.core.scope_usage import Report, date_of


class ScopeUsed(BaseModel):
    scope: str = Field(examples=["customers:read"])
    requests: int = Field(description="Allowed requests that needed this scope.")
    last_used_on: date = Field(description="The last UTC day a request needed it.")
    granted_by: str | None = Field(
        examples=["customers:*"],
        description="The credential's scope that grants it now (null: none does any more).",
    )


class ScopeUsageOut(BaseModel):
    id: str
    since: datetime
    until: datetime
    scopes: list[str] = Field(description="The credential's scopes now.")
    used: list[ScopeUsed] = Field(
        description="The concrete scopes its allowed requests needed (for a wildcard "
        "scope, the scopes it stood for)."
    )
    unused: list[str] = Field(description="Its scopes no allowed request needed.")
    narrowed: list[str] = Field(
        description="The scopes that would still have allowed every counted request: "
        "send them as `scopes` of a PATCH to narrow the credential to what was used "
        "(empty when nothing was used)."
    )

    @classmethod
    def of(cls, credential_id: str, report: Report) -> ScopeUsageOut:
        return cls(
            id=credential_id,
            since=report.since,
            until=report.until,
            scopes=report.granted,
            used=[
                ScopeUsed(
                    scope=u.scope,
                    requests=u.requests,
                    last_used_on=date_of(u.last_day),
                    granted_by=u.granted_by,
                )
                for u in report.used
            ],
            unused=report.unused,
            narrowed=report.narrowed,
        )
