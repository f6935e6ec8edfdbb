"""``apiward``: the command-line app, assembled from one module per command group."""

from __future__ import annotations

import sys

import typer

from apiward.adapters.cli import (
    accounts,
    audit,
    clients,
    config,
    invitations,
    keys,
    org,
    projects,
    server,
    usage,
)
from apiward.adapters.settings import ConfigError

app = typer.Typer(
    help="apiward: authentication for public HTTP APIs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals may hold secrets
)
app.command()(server.serve)
app.command()(server.migrate)
app.command()(server.init)
app.command("keys-rotate")(server.keys_rotate)
app.command("audit")(audit.audit)
app.command("usage")(usage.usage)
app.add_typer(keys.app, name="keys")
app.add_typer(clients.app, name="clients")
app.add_typer(org.app, name="org")
app.add_typer(projects.app, name="projects")
app.add_typer(invitations.app, name="invitations")
app.add_typer(accounts.app, name="accounts")
app.add_typer(config.app, name="config")


def main() -> None:
    try:
        app(prog_name="apiward")
    except ConfigError as exc:
        for line in exc.problems:
            print(f"configuration error: {line}", file=sys.stderr)
        sys.exit(2)
    sys.exit(0)
