"""``apiward users``: what an operator does for a person who signs in to the dashboard."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from apiward.adapters.cli.shared import JsonOption, out, run

if TYPE_CHECKING:
    from apiward.adapters.runtime import Runtime

app = typer.Typer(help="People who sign in to the dashboard.", no_args_is_help=True)


@app.command("reset-mfa")
def users_reset_mfa(
    email: Annotated[str, typer.Argument(help="The person's email.")],
    org: Annotated[
        str | None,
        typer.Option("--org", help="Only the user this organisation created with the address."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Turn off two-factor sign-in (a lost authenticator and recovery codes): the next
    sign-in asks for the password only, and the person can set it up again. Recorded as
    ``user.mfa_disabled``. Check who is asking before running it."""
    from apiward.core.models import RequestContext

    async def job(runtime: Runtime) -> list[str]:
        context = RequestContext(user_agent="apiward-cli")
        removed = await runtime.two_factor.reset(email, context, org_id=org)
        return [p.owner_id for p in removed]

    removed = run(job)
    if as_json:
        print(json.dumps({"email": email.strip().lower(), "reset": removed}))
    elif removed:
        out.print(f"Two-factor sign-in turned off for {', '.join(removed)}.")
    else:
        out.print(f"{email} had no two-factor sign-in on: nothing to do.")
