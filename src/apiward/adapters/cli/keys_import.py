"""``apiward keys import``: keys of another system, brought by their hashes."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from apiward.adapters.cli.shared import JsonOption, OrgOption, as_operator, err, fail, out

if TYPE_CHECKING:
    from apiward.adapters.runtime import Runtime
    from apiward.core.models import Principal


def keys_import(
    file: Annotated[str, typer.Argument(help="JSON Lines file, one key a line.")],
    environment: Annotated[
        str, typer.Option("--env", help="Environment of the lines that name none.")
    ] = "live",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and count; write nothing.")
    ] = False,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Import keys from another system by their SHA-256 hashes; nobody reissues keys.

    One JSON object a line: {"hash", "hash_encoding": hex|base64|base64url, "prefix",
    "last4", "name", "scopes", "environment", "expires_at", "user_id", "external_id"};
    hash, prefix and scopes are required. Every line is checked first: if any is wrong,
    each error is listed with its line number and nothing is imported. Keys are then
    written 1,000 a transaction; keys already stored are skipped, so running the same
    file again is safe. The server accepts them once APIWARD_IMPORTED_KEY_PREFIXES
    lists their prefixes.
    """
    from collections.abc import Iterator
    from pathlib import Path

    from rich.markup import escape

    from apiward.services.importing import ImportReport

    path = Path(file)
    if not path.is_file():
        fail(f"{file}: no such file")

    def lines() -> Iterator[bytes]:
        with path.open("rb") as f:
            yield from f

    async def job(runtime: Runtime, principal: Principal) -> ImportReport:
        return await runtime.importer.run(
            principal, lines, environment=environment, dry_run=dry_run
        )

    report = as_operator(org, environment, job)
    if as_json:
        print(json.dumps(report.as_dict()))
    else:
        for e in report.error_lines:
            err.print(f"line {e.line}: {escape(e.message)}", soft_wrap=True)
        if report.errors > len(report.error_lines):
            err.print(f"... and {report.errors - len(report.error_lines)} more error(s)")
        shown = report.duplicate_lines[:20]
        for d in shown:
            out.print(f"line {d.line}: skipped, {escape(d.reason)}")
        if report.duplicates > len(shown):
            out.print(f"... and {report.duplicates - len(shown)} more duplicate(s)")
        for warning in report.warnings:
            err.print(f"[yellow]warning:[/yellow] {escape(warning)}", soft_wrap=True)
        if report.errors:
            err.print(
                f"[red]error:[/red] {report.errors} of {report.lines} line(s) are invalid; "
                "nothing was imported. Fix them and run the import again."
            )
        else:
            verb = "Would import" if dry_run else "Imported"
            out.print(
                f"{verb} {report.imported} key(s) in {report.batches} batch(es); skipped "
                f"{report.duplicates} duplicate(s); {report.errors} error(s)."
            )
        if report.failure:
            err.print(f"[red]error:[/red] {escape(report.failure)}", soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)
