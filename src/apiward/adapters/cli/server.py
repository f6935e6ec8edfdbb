"""The instance's commands: serve, migrate, init (the first organisation), keys-rotate."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Annotated, Any

import typer

from apiward.adapters.cli.shared import JsonOption, out, resume_collection, run

if TYPE_CHECKING:
    from apiward.adapters.runtime import Runtime
    from apiward.adapters.settings import Settings


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [APIWARD_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [APIWARD_PORT].")] = None,
    workers: Annotated[int | None, typer.Option(help="Processes [APIWARD_WORKERS].")] = None,
) -> None:
    """Run the HTTP server (migrations are applied first)."""
    import functools

    import uvicorn

    from apiward.adapters.http.protocol import BoundedHttpToolsProtocol, HeadLimits

    # Every process reads these: the issuer and the public URL (links in emails, the
    # OAuth metadata) follow --host and --port unless APIWARD_ISSUER / _PUBLIC_URL are set.
    if host:
        os.environ["APIWARD_HOST"] = host
    if port:
        os.environ["APIWARD_PORT"] = str(port)
    from apiward.adapters.settings import Settings

    settings = Settings()
    if settings.migrate_on_start:
        # Migrations and the first signing key, once, before workers fork.
        run(_started, as_server=True)
    os.environ["APIWARD_MIGRATE_ON_START"] = "false"
    resume_collection(freeze=False)  # a server collects its garbage
    print(_where(settings, host or settings.host, port or settings.port), flush=True)
    uvicorn.run(
        "apiward.adapters.http.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers or settings.workers,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        # A request head bounded in size, fields and time (adapters/http/protocol.py).
        http=functools.partial(BoundedHttpToolsProtocol, limits=HeadLimits.of(settings)),  # type: ignore[arg-type]
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
    )


WORKER_HEALTHCHECK_SECONDS = 60
"""How long the supervisor of ``--workers`` waits for a worker to answer its ping before
it kills the worker as hung and starts another. uvicorn's 5 s killed workers that a
loaded machine left without CPU for a few seconds, with the requests they held, and
kept killing a starting worker still importing (a two-core machine under load took
20-50 s to start two workers)."""


def _where(settings: Settings, host: str, port: int) -> str:
    """What ``serve`` prints first: where it listens and where people find it."""
    base = settings.base_url.rstrip("/")
    lines = [f"apiward listening on {host}:{port}", f"  API        {base}/"]
    if settings.docs_enabled:
        lines.append(f"  reference  {base}/docs")
    if settings.dashboard_enabled:
        lines.append(f"  dashboard  {base}/dashboard")
    return "\n".join(lines)


async def _started(runtime: Runtime) -> None:
    """No work beyond starting the runtime: migrating, making the first signing key."""


def migrate() -> None:
    """Apply database migrations."""
    run(_started, as_server=True)
    out.print("Database is up to date.")


def init(
    org_name: Annotated[
        str, typer.Option("--org-name", envvar="APIWARD_INIT_ORG_NAME", help="Organisation name.")
    ],
    email: Annotated[
        str, typer.Option("--email", envvar="APIWARD_INIT_OWNER_EMAIL", help="Owner's email.")
    ],
    password: Annotated[
        str,
        typer.Option("--password", envvar="APIWARD_INIT_OWNER_PASSWORD", help="Owner's password."),
    ],
    name: Annotated[
        str | None,
        typer.Option("--name", envvar="APIWARD_INIT_OWNER_NAME", help="Owner's full name."),
    ] = None,
    environment: Annotated[
        str, typer.Option("--env", help="Environment of the owner key.")
    ] = "live",
    new_org: Annotated[
        bool, typer.Option("--new-org", help="Create another org even if one exists.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Bootstrap an organisation: environments, default space, owner and one owner key."""

    async def job(runtime: Runtime) -> dict[str, Any]:
        boot = await runtime.tenancy.bootstrap(
            org_name, email, password, owner_name=name, allow_another=new_org
        )
        principal = await runtime.operators.principal(boot.org.id, environment)
        created = await runtime.keys.create(
            principal, name="owner key", scopes=["*", "owner:*"], environment=environment
        )
        return {
            "org": {"id": boot.org.id, "name": boot.org.name},
            "environments": [e.name for e in boot.environments],
            "space": {"id": boot.space.id, "name": boot.space.name},
            "owner": {"id": boot.owner.id, "email": boot.owner.email, "name": boot.owner.name},
            "key": {"id": created.key.id, "environment": environment, "secret": created.plaintext},
        }

    result = run(job)
    if as_json:
        print(json.dumps(result))
        return
    out.print(f"Organisation [bold]{result['org']['name']}[/bold] ({result['org']['id']})")
    out.print(f"Environments: {', '.join(result['environments'])}")
    out.print(f"Default space: {result['space']['id']}")
    out.print(f"Owner: {result['owner']['email']} ({result['owner']['id']})")
    out.print("\nOwner API key (shown once, store it now):")
    print(result["key"]["secret"])


def keys_rotate() -> None:
    """Rotate the access-token signing key; the old one stays published until its tokens expire."""

    from apiward.core.models import RequestContext

    async def job(runtime: Runtime) -> str:
        context = RequestContext(user_agent="apiward-cli")
        return (await runtime.keyring.rotate(reason="manual", actor="cli", context=context)).kid

    out.print(f"New signing key: {run(job)}")
