"""``apiward``: the command-line app, assembled from one module per command group."""

from __future__ import annotations

import sys
from typing import Annotated

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
    shared,
    usage,
    users,
)

app = typer.Typer(
    help="apiward: authentication for public HTTP APIs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals may hold secrets
)


def _version(value: bool) -> None:
    if value:
        from apiward import __version__

        print(f"apiward {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """apiward: authentication for public HTTP APIs."""


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
app.add_typer(users.app, name="users")
app.add_typer(config.app, name="config")


def main() -> None:
    shared.defer_collection()
    try:
        app(prog_name="apiward")
    except Exception as exc:
        from apiward.adapters.settings import ConfigError  # not at the top: --help is quick

        if not isinstance(exc, ConfigError):
            raise
        for line in exc.problems:
            print(f"configuration error: {line}", file=sys.stderr)
        sys.exit(2)
    sys.exit(0)
