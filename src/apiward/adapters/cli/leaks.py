"""``apiward keys report-leak``: revoke a leaked credential at once."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from apiward.adapters.cli.shared import JsonOption, fail, out, run

if TYPE_CHECKING:
    from apiward.adapters.runtime import Runtime


def keys_report_leak(
    token: Annotated[
        str, typer.Argument(help="The leaked key, client secret or refresh token; - reads stdin.")
    ],
    url: Annotated[str | None, typer.Option("--url", help="Where it was found.")] = None,
    source: Annotated[str | None, typer.Option("--source", help="e.g. commit, npm.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke a leaked credential at once, as a GitHub secret scanning report would.

    The token's format and checksum are checked offline; a credential of this
    deployment is revoked (a client secret revokes its client, a refresh token its
    session), with a key.leaked audit event and webhook. Anything else is reported as a
    false positive and exits with status 1.
    """
    from apiward.core.models import RequestContext
    from apiward.services.leaks import TRUE_POSITIVE, LeakReport, LeakVerdict

    tokens = [line.strip() for line in sys.stdin if line.strip()] if token == "-" else [token]
    if not tokens:
        fail("no token given")
    reports = [LeakReport(t, "manual", url, source) for t in tokens]

    async def job(runtime: Runtime) -> list[LeakVerdict]:
        return await runtime.leaks.report(
            reports, RequestContext(user_agent="apiward-cli"), reporter="cli"
        )

    verdicts = run(job)
    rows = [
        {
            "label": v.label,
            "kind": v.kind,
            "credential_id": v.credential_id,
            "org_id": v.org_id,
            "revoked": v.revoked,
            "last4": v.report.token[-4:],
        }
        for v in verdicts
    ]
    if as_json:
        print(json.dumps(rows if token == "-" else rows[0]))
    else:
        for row in rows:
            if row["label"] != TRUE_POSITIVE:
                out.print(
                    f"...{row['last4']}: not a credential of this deployment (false positive)"
                )
            elif row["revoked"]:
                out.print(f"...{row['last4']}: {row['kind']} {row['credential_id']} revoked now")
            else:
                out.print(
                    f"...{row['last4']}: {row['kind']} {row['credential_id']} was already revoked"
                )
    if any(row["label"] != TRUE_POSITIVE for row in rows):
        raise typer.Exit(1)
