"""What every command shares: the consoles, the common options, running a runtime."""

from __future__ import annotations

import gc
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console

if TYPE_CHECKING:
    from apiward.adapters.runtime import Runtime
    from apiward.core.models import Principal

T = TypeVar("T")

out = Console()
err = Console(stderr=True)

OrgOption = Annotated[
    str | None,
    typer.Option(
        "--org",
        envvar="APIWARD_ORG",
        help="Organisation id or name (default: the first one, made by 'apiward init').",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
EnvOption = Annotated[str, typer.Option("--env", help="Environment: live or test.")]


_deferred = False
"""Whether ``defer_collection`` turned the garbage collector off (until the runtime is open)."""


def defer_collection() -> None:
    """No garbage collection while the command imports its modules and opens its
    runtime: ``main`` (the process's command line) calls this first, ``run`` calls
    ``resume_collection`` once the runtime is open.

    What the imports make lives as long as the process and holds few cycles, yet each
    collection during them scans it again: a tenth of ``apiward keys list``'s time. A
    test's ``CliRunner`` does not call ``main``: its process collects as usual.
    """
    global _deferred
    if gc.isenabled():
        gc.disable()
        _deferred = True


def resume_collection(*, freeze: bool = True) -> None:
    """The garbage collector on again after ``defer_collection``; with ``freeze``, what
    exists now (modules, the open runtime) is left out of every later collection
    (``gc.freeze``), as it would only be scanned again and kept."""
    global _deferred
    if not _deferred:
        return
    _deferred = False
    if freeze:
        gc.freeze()
    gc.enable()


def run(work: Callable[[Runtime], Coroutine[Any, Any, T]], *, as_server: bool = False) -> T:
    """Run one command against a runtime without the server's background tasks.

    A command opens the runtime (``Runtime.open``), which builds only the parts it uses;
    ``as_server`` starts it as a server process does (every part, the signing keys
    loaded, the first one made), for ``serve`` and ``migrate`` to leave a database that
    server processes starting together find ready.
    """

    # Imported here, not at the top: `apiward --help` needs none of them.
    import asyncio

    from apiward.adapters import logging as logs
    from apiward.adapters.runtime import build
    from apiward.adapters.settings import Settings
    from apiward.core.errors import ApiwardError

    async def main() -> T:
        settings = Settings()
        # Log lines go to stderr: stdout is the command's answer (--json).
        logs.configure(
            settings.log_level,
            settings.log_format,
            logs.STDERR,
            secret_prefixes=logs.secret_prefixes(settings.key_prefix),
        )
        runtime = build(settings)
        try:
            if as_server:
                await runtime.start(background=False)
            else:
                await runtime.open()
            resume_collection(freeze=not as_server)
            return await work(runtime)
        finally:
            await runtime.stop()

    try:
        return asyncio.run(main())
    except ApiwardError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from None


def as_operator(
    org: str | None, env: str | None, work: Callable[[Runtime, Principal], Awaitable[T]]
) -> T:
    """Run a management command as the organisation's owner: the operator has the
    database, and acts through the same services as the HTTP API. ``env`` None: the
    deployment's first environment."""

    async def job(runtime: Runtime) -> T:
        if org is None and (default := await runtime.operators.chosen_by_default()):
            err.print(
                f"[dim]organisation {default.name} ({default.id}), the first one made; "
                "--org or APIWARD_ORG for another[/dim]"
            )
        environment = runtime.settings.environments[0] if env is None else env
        return await work(runtime, await runtime.operators.principal(org, environment))

    return run(job)


def fail(message: str) -> NoReturn:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


ExternalIdOption = Annotated[
    str | None,
    typer.Option("--external-id", help="Your own id of the customer or account, e.g. cus_123."),
]
MetaOption = Annotated[
    str | None,
    typer.Option("--meta", help='Your own data, a flat JSON object: \'{"plan": "pro"}\'.'),
]


def meta_option(value: str | None) -> dict[str, Any] | None:
    """``--meta``'s JSON object (its bounds are the service's to check), or a usage error."""
    if value is None:
        return None
    from apiward.core.jsontext import load

    try:
        meta = load(value)
    except (ValueError, RecursionError):
        fail(f'--meta {value[:80]!r}: not JSON; write an object, e.g. \'{{"plan": "pro"}}\'')
    if not isinstance(meta, dict):
        fail('--meta must be a JSON object, e.g. \'{"plan": "pro"}\'')
    return meta
