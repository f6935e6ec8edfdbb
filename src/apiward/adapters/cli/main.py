"""``apiward``: run the server, bootstrap an organisation, manage keys.

Management commands act directly on the store as the organisation's owner (the
operator has the database), through the same services as the HTTP API.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from apiward.adapters.runtime import Runtime, build
from apiward.adapters.settings import Settings
from apiward.core.errors import ApiwardError
from apiward.core.limits import Credits, Refill
from apiward.core.models import (
    Account,
    ApiKey,
    OAuthClient,
    Organisation,
    Principal,
    RateOverride,
)

T = TypeVar("T")

app = typer.Typer(
    help="apiward: authentication for public HTTP APIs.", no_args_is_help=True, add_completion=False
)
keys_app = typer.Typer(help="Create and manage API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
clients_app = typer.Typer(help="Create and manage OAuth clients.", no_args_is_help=True)
app.add_typer(clients_app, name="clients")

out = Console()
err = Console(stderr=True)

OrgOption = Annotated[str | None, typer.Option("--org", help="Organisation id or name.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _run(work: Callable[[Runtime], Coroutine[Any, Any, T]]) -> T:
    """Run one command against a runtime without the server's background tasks."""

    async def main() -> T:
        runtime = build(Settings())
        try:
            await runtime.start(background=False)
            return await work(runtime)
        finally:
            await runtime.stop()

    try:
        return asyncio.run(main())
    except ApiwardError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from None


def _as_operator(
    org: str | None, env: str, work: Callable[[Runtime, Principal], Awaitable[T]]
) -> T:
    async def job(runtime: Runtime) -> T:
        return await work(runtime, await runtime.operators.principal(org, env))

    return _run(job)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [APIWARD_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [APIWARD_PORT].")] = None,
    workers: Annotated[int | None, typer.Option(help="Processes [APIWARD_WORKERS].")] = None,
) -> None:
    """Run the HTTP server (migrations are applied first)."""
    import uvicorn

    # Every process reads these: the issuer and the public URL (links in emails, the
    # OAuth metadata) follow --host and --port unless APIWARD_ISSUER / _PUBLIC_URL are set.
    if host:
        os.environ["APIWARD_HOST"] = host
    if port:
        os.environ["APIWARD_PORT"] = str(port)
    settings = Settings()
    if settings.migrate_on_start:
        _run(lambda runtime: asyncio.sleep(0))  # applies migrations once, before workers fork
    os.environ["APIWARD_MIGRATE_ON_START"] = "false"
    uvicorn.run(
        "apiward.adapters.http.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers or settings.workers,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
    )


@app.command()
def migrate() -> None:
    """Apply database migrations."""
    _run(lambda runtime: asyncio.sleep(0))
    out.print("Database is up to date.")


@app.command()
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
        boot = await runtime.tenancy.bootstrap(org_name, email, password, allow_another=new_org)
        principal = await runtime.operators.principal(boot.org.id, environment)
        created = await runtime.keys.create(
            principal, name="owner key", scopes=["*", "owner:*"], environment=environment
        )
        return {
            "org": {"id": boot.org.id, "name": boot.org.name},
            "environments": [e.name for e in boot.environments],
            "space": {"id": boot.space.id, "name": boot.space.name},
            "owner": {"id": boot.owner.id, "email": boot.owner.email},
            "key": {"id": created.key.id, "environment": environment, "secret": created.plaintext},
        }

    result = _run(job)
    if as_json:
        print(json.dumps(result))
        return
    out.print(f"Organisation [bold]{result['org']['name']}[/bold] ({result['org']['id']})")
    out.print(f"Environments: {', '.join(result['environments'])}")
    out.print(f"Default space: {result['space']['id']}")
    out.print(f"Owner: {result['owner']['email']} ({result['owner']['id']})")
    out.print("\nOwner API key (shown once, store it now):")
    print(result["key"]["secret"])


# keys -------------------------------------------------------------------------------


def _key_dict(key: ApiKey, now: datetime) -> dict[str, Any]:
    from apiward.adapters.http.schemas import KeyOut

    return KeyOut.of(key, now).model_dump(mode="json")


def _key_table(keys: list[dict[str, Any]]) -> Table:
    """Ids and key hints are never cut (the next command needs them whole), whatever the
    terminal's width: the other columns wrap instead."""
    table = Table(show_lines=False)
    whole = {"id": "id", "key": "hint"}
    for column in ("id", "name", "key", "env", "scopes", "state", "last used", "expires"):
        field = whole.get(column)
        if field is None:
            table.add_column(column, overflow="fold")
        else:
            width = max([len(column), *(len(k[field]) for k in keys)])
            table.add_column(column, no_wrap=True, min_width=width)
    for k in keys:
        last = k["last_used_at"] and f"{k['last_used_at'][:19]} from {k['last_used_ip'] or '?'}"
        table.add_row(
            k["id"],
            k["name"],
            k["hint"],
            k["environment"],
            " ".join(k["scopes"]),
            k["state"],
            last or "never",
            (k["expires_at"] or "never")[:19],
        )
    return table


def _show_key(data: dict[str, Any], as_json: bool, secret: str | None = None) -> None:
    if as_json:
        print(json.dumps({**data, **({"key": secret} if secret else {})}))
        return
    out.print(_key_table([data]))
    if secret:
        out.print("\nThe key (shown once, store it now):")
        print(secret)


def _expiry(expires_in: str | None) -> datetime | None:
    if expires_in is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        seconds = int(expires_in[:-1]) * units[expires_in[-1]]
    except (KeyError, ValueError, IndexError):
        err.print(f"[red]error:[/red] --expires-in {expires_in!r}: use e.g. 30d, 12h, 15m")
        raise typer.Exit(2) from None
    return datetime.now(UTC) + timedelta(seconds=seconds)


EnvOption = Annotated[str, typer.Option("--env", help="Environment: live or test.")]
RateLimitOption = Annotated[
    list[str] | None,
    typer.Option(
        "--rate-limit",
        help="NAME=RATE[@KIND], e.g. per-key=1000/hour@credential; "
        "replaces the org's limit of that name. Repeatable.",
    ),
]
CreditsOption = Annotated[int | None, typer.Option("--credits", min=0, help="Usage credits.")]
RefillOption = Annotated[
    str | None, typer.Option("--refill", help="AMOUNT/daily or AMOUNT/monthly.")
]


def _fail(message: str) -> NoReturn:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


def _rate_limits(values: list[str] | None) -> list[RateOverride] | None:
    if values is None:
        return None
    limits = []
    for value in values:
        name, sep, rest = value.partition("=")
        rate, _, kind = rest.partition("@")
        if not sep or not name or not rate:
            _fail(f"--rate-limit {value!r}: write NAME=RATE[@KIND], e.g. per-key=100/minute")
        limits.append(RateOverride(name, rate, kind or "credential"))
    return limits


def _credits(credits: int | None, refill: str | None) -> Credits | None:
    if credits is None:
        if refill is not None:
            _fail("--refill needs --credits")
        return None
    if refill is None:
        return Credits(credits)
    amount, _, interval = refill.partition("/")
    if not amount.isdigit() or interval not in ("daily", "monthly"):
        _fail(f"--refill {refill!r}: write AMOUNT/daily or AMOUNT/monthly")
    return Credits(credits, Refill(int(amount), interval))  # type: ignore[arg-type]


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="What the key is for.")],
    scopes: Annotated[list[str], typer.Option("--scope", help="A scope; repeat for more.")],
    environment: EnvOption = "live",
    user: Annotated[str | None, typer.Option("--user", help="Tie the key to this user id.")] = None,
    expires_in: Annotated[str | None, typer.Option("--expires-in", help="e.g. 30d, 12h.")] = None,
    ip_allow: Annotated[
        list[str] | None, typer.Option("--allow-ip", help="CIDR; repeatable.")
    ] = None,
    space_allow: Annotated[
        list[str] | None, typer.Option("--allow-space", help="Space id; repeatable.")
    ] = None,
    rate_limit: RateLimitOption = None,
    credits: CreditsOption = None,
    refill: RefillOption = None,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a key and print it once."""
    expires_at = _expiry(expires_in)
    limits = _rate_limits(rate_limit)
    balance = _credits(credits, refill)

    async def job(runtime: Runtime, principal: Principal) -> tuple[dict[str, Any], str]:
        created = await runtime.keys.create(
            principal,
            name=name,
            scopes=scopes,
            environment=environment,
            user_id=user,
            expires_at=expires_at,
            ip_allow=ip_allow or [],
            space_allow=space_allow or [],
            rate_limits=limits,
            credits=balance,
        )
        return _key_dict(created.key, runtime.clock.now()), created.plaintext

    data, secret = _as_operator(org, environment, job)
    _show_key(data, as_json, secret)


@keys_app.command("list")
def keys_list(
    environment: Annotated[
        str | None, typer.Option("--env", help="Only this environment (default: every one).")
    ] = None,
    page: Annotated[int, typer.Option(min=1)] = 1,
    page_size: Annotated[int, typer.Option(min=1, max=100)] = 50,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """List keys (prefix and last four characters only)."""
    from apiward.core.models import PageRequest

    async def job(runtime: Runtime, principal: Principal) -> dict[str, Any]:
        result = await runtime.keys.list_keys(
            principal,
            PageRequest(page, page_size),
            environment=environment,
            every_environment=environment is None,
        )
        now = runtime.clock.now()
        return {
            "items": [_key_dict(k, now) for k in result.items],
            "total": result.total,
            "page": result.page,
            "page_size": result.page_size,
        }

    data = _as_operator(org, environment or Settings().environments[0], job)
    if as_json:
        print(json.dumps(data))
        return
    out.print(_key_table(data["items"]))
    out.print(f"{data['total']} key(s); page {data['page']}.")


KeyId = Annotated[str, typer.Argument(help="The key's id (key_...).")]


def _key_action(
    key_id: str,
    org: str | None,
    as_json: bool,
    action: Callable[[Runtime, Principal], Awaitable[ApiKey]],
) -> None:
    async def job(runtime: Runtime, principal: Principal) -> dict[str, Any]:
        return _key_dict(await action(runtime, principal), runtime.clock.now())

    async def find_env(runtime: Runtime) -> str:
        principal = await runtime.operators.principal(org)
        return (await runtime.keys.get(principal, key_id)).environment

    environment = _run(find_env)
    _show_key(_as_operator(org, environment, job), as_json)


@keys_app.command("get")
def keys_get(key_id: KeyId, org: OrgOption = None, as_json: JsonOption = False) -> None:
    """Show one key."""
    _key_action(key_id, org, as_json, lambda r, p: r.keys.get(p, key_id))


@keys_app.command("update")
def keys_update(
    key_id: KeyId,
    name: Annotated[str | None, typer.Option("--name")] = None,
    scopes: Annotated[
        list[str] | None, typer.Option("--scope", help="Replaces all scopes.")
    ] = None,
    ip_allow: Annotated[
        list[str] | None, typer.Option("--allow-ip", help="Replaces the list.")
    ] = None,
    space_allow: Annotated[
        list[str] | None, typer.Option("--allow-space", help="Replaces the list.")
    ] = None,
    clear_ip_allow: Annotated[bool, typer.Option("--clear-allow-ip")] = False,
    clear_space_allow: Annotated[bool, typer.Option("--clear-allow-space")] = False,
    rate_limit: RateLimitOption = None,
    credits: CreditsOption = None,
    refill: RefillOption = None,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change a key's name, scopes or allow-lists."""
    _key_action(
        key_id,
        org,
        as_json,
        lambda r, p: r.keys.update(
            p,
            key_id,
            name=name,
            scopes=scopes,
            ip_allow=[] if clear_ip_allow else ip_allow,
            space_allow=[] if clear_space_allow else space_allow,
            rate_limits=_rate_limits(rate_limit),
            credits=_credits(credits, refill),
        ),
    )


@keys_app.command("disable")
def keys_disable(key_id: KeyId, org: OrgOption = None, as_json: JsonOption = False) -> None:
    """Refuse the key until it is enabled again."""
    _key_action(key_id, org, as_json, lambda r, p: r.keys.disable(p, key_id))


@keys_app.command("enable")
def keys_enable(key_id: KeyId, org: OrgOption = None, as_json: JsonOption = False) -> None:
    """Accept a disabled key again."""
    _key_action(key_id, org, as_json, lambda r, p: r.keys.enable(p, key_id))


@keys_app.command("revoke")
def keys_revoke(key_id: KeyId, org: OrgOption = None, as_json: JsonOption = False) -> None:
    """Refuse the key for ever."""
    _key_action(key_id, org, as_json, lambda r, p: r.keys.revoke(p, key_id))


@keys_app.command("roll")
def keys_roll(
    key_id: KeyId,
    grace: Annotated[
        int, typer.Option("--grace", help="Seconds the old key keeps working.", min=0)
    ] = 0,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Issue a new key with the same settings; the old one stops after the grace period."""

    async def find_env(runtime: Runtime) -> str:
        return (await runtime.keys.get(await runtime.operators.principal(org), key_id)).environment

    environment = _run(find_env)

    async def job(runtime: Runtime, principal: Principal) -> tuple[dict[str, Any], str]:
        created = await runtime.keys.roll(principal, key_id, grace=timedelta(seconds=grace))
        return _key_dict(created.key, runtime.clock.now()), created.plaintext

    data, secret = _as_operator(org, environment, job)
    _show_key(data, as_json, secret)


@keys_app.command("import")
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
        _fail(f"{file}: no such file")

    def lines() -> Iterator[bytes]:
        with path.open("rb") as f:
            yield from f

    async def job(runtime: Runtime, principal: Principal) -> ImportReport:
        return await runtime.importer.run(
            principal, lines, environment=environment, dry_run=dry_run
        )

    report = _as_operator(org, environment, job)
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


# OAuth clients ------------------------------------------------------------------------


def _client_dict(client: OAuthClient, now: datetime) -> dict[str, Any]:
    from apiward.adapters.http.schemas import ClientOut

    return ClientOut.of(client, now).model_dump(mode="json")


def _show_clients(items: list[dict[str, Any]], as_json: bool, secret: str | None = None) -> None:
    if as_json:
        data: Any = items[0] if len(items) == 1 and secret is not None else items
        if secret is not None:
            data = {**items[0], "client_secret": secret}
        print(json.dumps(data))
        return
    table = Table()
    for column in ("client_id", "name", "env", "scopes", "state", "last used"):
        if column == "client_id":  # never cut: the next command needs it whole
            width = max([len(column), *(len(c["client_id"]) for c in items)])
            table.add_column(column, no_wrap=True, min_width=width)
        else:
            table.add_column(column, overflow="fold")
    for c in items:
        table.add_row(
            c["client_id"],
            c["name"],
            c["environment"],
            " ".join(c["scopes"]),
            c["state"],
            (c["last_used_at"] or "never")[:19],
        )
    out.print(table)
    if secret:
        out.print("\nThe client secret (shown once, store it now):")
        print(secret)


@clients_app.command("create")
def clients_create(
    name: Annotated[str, typer.Option("--name", help="What the client is for.")],
    scopes: Annotated[list[str], typer.Option("--scope", help="A scope; repeat for more.")],
    environment: EnvOption = "live",
    user: Annotated[str | None, typer.Option("--user", help="Act as this user id.")] = None,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a client and print its secret once."""

    async def job(runtime: Runtime, principal: Principal) -> tuple[dict[str, Any], str]:
        created = await runtime.clients.create(
            principal, name=name, scopes=scopes, environment=environment, user_id=user
        )
        return _client_dict(created.client, runtime.clock.now()), created.secret

    data, secret = _as_operator(org, environment, job)
    _show_clients([data], as_json, secret)


@clients_app.command("list")
def clients_list(
    environment: EnvOption = "live", org: OrgOption = None, as_json: JsonOption = False
) -> None:
    """List clients (never their secrets)."""
    from apiward.core.models import PageRequest

    async def job(runtime: Runtime, principal: Principal) -> list[dict[str, Any]]:
        page = await runtime.clients.list_clients(principal, PageRequest(1, 100))
        return [_client_dict(c, runtime.clock.now()) for c in page.items]

    _show_clients(_as_operator(org, environment, job), as_json)


@clients_app.command("revoke")
def clients_revoke(
    client_id: Annotated[str, typer.Argument(help="The client_id.")],
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Refuse the client, and every access token it holds, at once."""

    async def job(runtime: Runtime, principal: Principal) -> list[dict[str, Any]]:
        env = (await runtime.clients.get(principal, client_id)).environment
        principal = await runtime.operators.principal(org, env)
        client = await runtime.clients.revoke(principal, client_id)
        await runtime.tokens.revoke_client_tokens(client)
        return [_client_dict(client, runtime.clock.now())]

    _show_clients(_as_operator(org, "live", job), as_json)


org_app = typer.Typer(help="The organisation and its rate-limit tier.", no_args_is_help=True)
app.add_typer(org_app, name="org")


def _org_dict(runtime: Runtime, org: Organisation) -> dict[str, Any]:
    plan = runtime.limits.plan_for(org.rate_tier)
    return {
        "id": org.id,
        "name": org.name,
        "rate_tier": org.rate_tier,
        "rate_limits": [
            {"name": p.name, "limit": p.limit, "period_seconds": p.period, "key": p.key}
            for p in plan.policies
        ],
    }


def _show_org(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(data))
        return
    out.print(f"[bold]{data['name']}[/bold] ({data['id']}), tier: {data['rate_tier'] or 'default'}")
    table = Table("limit", "count", "per seconds", "keyed by")
    for p in data["rate_limits"]:
        table.add_row(p["name"], str(p["limit"]), f"{p['period_seconds']:g}", p["key"])
    out.print(table)


@org_app.command("show")
def org_show(org: OrgOption = None, as_json: JsonOption = False) -> None:
    """The organisation and the rate limits of its plan."""

    async def job(runtime: Runtime) -> dict[str, Any]:
        return _org_dict(runtime, await runtime.operators.resolve_org(org))

    _show_org(_run(job), as_json)


@org_app.command("set-tier")
def org_set_tier(
    tier: Annotated[str, typer.Argument(help="A tier of APIWARD_RATE_LIMIT_TIERS, or 'default'.")],
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Move the organisation to another rate-limit tier; running servers follow at once."""

    async def job(runtime: Runtime, principal: Principal) -> dict[str, Any]:
        default = tier == "default"
        updated = await runtime.tenancy.update_org(
            principal, name=None, rate_tier=None if default else tier, clear_tier=default
        )
        return _org_dict(runtime, updated)

    _show_org(_as_operator(org, "live", job), as_json)


# the developer portal: projects and invitations -----------------------------------------

projects_app = typer.Typer(
    help="Projects of portal accounts (each one an organisation).", no_args_is_help=True
)
app.add_typer(projects_app, name="projects")
invitations_app = typer.Typer(
    help="Invite people to an organisation by email.", no_args_is_help=True
)
app.add_typer(invitations_app, name="invitations")


def _show_projects(items: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(items))
        return
    table = Table("id", "name", "role", "created")
    for p in items:
        table.add_row(p["id"], p["name"], p.get("role") or "", p["created_at"][:19])
    out.print(table)


@projects_app.command("create")
def projects_create(
    name: Annotated[str, typer.Argument(help="The project's name.")],
    owner: Annotated[str, typer.Option("--owner", help="Email of the owning account.")],
    as_json: JsonOption = False,
) -> None:
    """Create a project owned by a portal account (its live and test environments too)."""
    from apiward.core.models import RequestContext

    async def job(runtime: Runtime) -> list[dict[str, Any]]:
        account = await runtime.portal.account_of_email(owner)
        context = RequestContext(user_agent="apiward-cli")
        project = await runtime.portal.create_project(account, name, context)
        return [_project_dict(project.org, project.role)]

    _show_projects(_run(job), as_json)


def _project_dict(org: Organisation, role: str | None) -> dict[str, Any]:
    return {
        "id": org.id,
        "name": org.name,
        "role": role,
        "created_at": org.created_at.isoformat(),
    }


@projects_app.command("list")
def projects_list(
    owner: Annotated[
        str | None, typer.Option("--account", help="Only this account's projects, by email.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Every organisation of this instance, or the projects of one account."""

    async def job(runtime: Runtime) -> list[dict[str, Any]]:
        if owner is None:
            return [_project_dict(org, None) for org in await runtime.tenancy.list_orgs()]
        projects = await runtime.portal.projects(await runtime.portal.account_of_email(owner))
        return [_project_dict(p.org, p.role) for p in projects]

    _show_projects(_run(job), as_json)


def _show_invitations(items: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(items))
        return
    table = Table("id", "email", "role", "expires")
    for i in items:
        table.add_row(i["id"], i["email"], i["role"], i["expires_at"][:19])
    out.print(table)


@invitations_app.command("create")
def invitations_create(
    email: Annotated[str, typer.Option("--email", help="Who to invite.")],
    role: Annotated[str, typer.Option("--role", help="The role they get.")] = "developer",
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Email an invitation (or, with no SMTP server configured, log it)."""
    from apiward.adapters.http.schemas import InvitationOut

    async def job(runtime: Runtime, principal: Principal) -> list[dict[str, Any]]:
        link = await runtime.portal.invite(principal, email, role)
        return [InvitationOut.of(link).model_dump(mode="json")]

    _show_invitations(_as_operator(org, "live", job), as_json)


@invitations_app.command("list")
def invitations_list(org: OrgOption = None, as_json: JsonOption = False) -> None:
    """Invitations waiting for an answer."""
    from apiward.adapters.http.schemas import InvitationOut

    async def job(runtime: Runtime, principal: Principal) -> list[dict[str, Any]]:
        links = await runtime.portal.invitations(principal)
        return [InvitationOut.of(link).model_dump(mode="json") for link in links]

    _show_invitations(_as_operator(org, "live", job), as_json)


@invitations_app.command("revoke")
def invitations_revoke(
    invitation_id: Annotated[str, typer.Argument(help="The invitation's id (lnk_...).")],
    org: OrgOption = None,
) -> None:
    """Revoke an invitation: its link stops working."""

    async def job(runtime: Runtime, principal: Principal) -> None:
        await runtime.portal.revoke_invitation(principal, invitation_id)

    _as_operator(org, "live", job)
    out.print(f"Revoked {invitation_id}.")


accounts_app = typer.Typer(help="Portal accounts: list, disable, enable.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")


def _account_dict(account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "email": account.email,
        "name": account.name,
        "created_at": account.created_at.isoformat(),
        "confirmed": account.confirmed,
        "disabled": account.disabled_at is not None,
    }


def _show_accounts(items: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(items))
        return
    table = Table("id", "email", "name", "state", "created")
    for a in items:
        state = "disabled" if a["disabled"] else "active" if a["confirmed"] else "unconfirmed"
        table.add_row(a["id"], a["email"], a["name"], state, a["created_at"][:19])
    out.print(table)


@accounts_app.command("list")
def accounts_list(
    page: Annotated[int, typer.Option(min=1)] = 1,
    page_size: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    as_json: JsonOption = False,
) -> None:
    """Accounts, oldest first."""
    from apiward.core.models import PageRequest

    async def job(runtime: Runtime) -> list[dict[str, Any]]:
        found = await runtime.portal.list_accounts(PageRequest(page, page_size))
        return [_account_dict(a) for a in found.items]

    _show_accounts(_run(job), as_json)


def _set_disabled(email: str, disabled: bool, as_json: bool) -> None:
    from apiward.core.models import RequestContext

    async def job(runtime: Runtime) -> list[dict[str, Any]]:
        context = RequestContext(user_agent="apiward-cli")
        return [_account_dict(await runtime.portal.set_disabled(email, disabled, context))]

    _show_accounts(_run(job), as_json)


@accounts_app.command("disable")
def accounts_disable(
    email: Annotated[str, typer.Argument(help="The account's email.")], as_json: JsonOption = False
) -> None:
    """Refuse the account's sign-ins; its sessions and refresh tokens end at once."""
    _set_disabled(email, True, as_json)


@accounts_app.command("enable")
def accounts_enable(
    email: Annotated[str, typer.Argument(help="The account's email.")], as_json: JsonOption = False
) -> None:
    """Let a disabled account sign in again."""
    _set_disabled(email, False, as_json)


@app.command("keys-rotate")
def keys_rotate() -> None:
    """Rotate the access-token signing key; the old one stays published until its tokens expire."""

    from apiward.core.models import RequestContext

    async def job(runtime: Runtime) -> str:
        context = RequestContext(user_agent="apiward-cli")
        return (await runtime.keyring.rotate(reason="manual", actor="cli", context=context)).kid

    out.print(f"New signing key: {_run(job)}")


# audit log and leaked keys ---------------------------------------------------------------


def _when(value: str | None, option: str) -> datetime | None:
    """An ISO 8601 time, or a span back from now: 15m, 24h, 7d."""
    if value is None:
        return None
    units = {"m": 60, "h": 3600, "d": 86400}
    if value[:-1].isdigit() and value[-1:] in units:
        return datetime.now(UTC) - timedelta(seconds=int(value[:-1]) * units[value[-1]])
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        _fail(f"{option} {value!r}: use an ISO time (2026-01-31T12:00:00Z) or 15m, 24h, 7d")
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@app.command("audit")
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

    async def job(runtime: Runtime, principal: Principal | None) -> dict[str, Any]:
        from apiward.adapters.http.schemas import AuditEventOut

        if principal is None:
            result = await runtime.audit.list_accounts(flt, PageRequest(page, page_size))
        else:
            result = await runtime.audit.list(principal, flt, PageRequest(page, page_size))
        return {
            "items": [AuditEventOut.of(e).model_dump(mode="json") for e in result.items],
            "total": result.total,
            "page": result.page,
            "page_size": result.page_size,
        }

    data = _run(lambda runtime: job(runtime, None)) if accounts else _as_operator(org, "live", job)
    if as_json:
        print(json.dumps(data))
        return
    from rich.markup import escape

    table = Table()
    for column in ("time", "type", "env", "actor", "target", "ip", "request id"):
        table.add_column(column, no_wrap=column in ("time", "type"))
    for e in data["items"]:
        actor_text = " / ".join(x for x in (e["actor_user_id"], e["actor_credential_id"]) if x)
        target_text = f"{e['target_type']}:{e['target_id']}" if e["target_id"] else ""
        table.add_row(
            e["created_at"][:19].replace("T", " "),
            e["type"],
            e["environment"] or "*",
            escape(actor_text),
            escape(target_text),
            e["ip"] or "",
            e["request_id"] or "",
        )
    out.print(table)
    out.print(f"{data['total']} event(s); page {data['page']}.")


@keys_app.command("report-leak")
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
        _fail("no token given")
    reports = [LeakReport(t, "manual", url, source) for t in tokens]

    async def job(runtime: Runtime) -> list[LeakVerdict]:
        return await runtime.leaks.report(
            reports, RequestContext(user_agent="apiward-cli"), reporter="cli"
        )

    verdicts = _run(job)
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


def main() -> None:
    app(prog_name="apiward")
    sys.exit(0)


# usage analytics ----------------------------------------------------------------------

SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[int]) -> str:
    """Counts as a line of block characters, the largest the tallest."""
    top = max(values, default=0)
    if top == 0:
        return SPARKS[0] * len(values)
    return "".join(SPARKS[min(len(SPARKS) - 1, v * (len(SPARKS) - 1) // top)] for v in values)


@app.command("usage")
def usage(
    key: Annotated[str | None, typer.Option("--key", help="Only this key (key_...).")] = None,
    client: Annotated[str | None, typer.Option("--client", help="Only this client.")] = None,
    since: Annotated[str, typer.Option("--since", help="1h, 24h, 7d, 30d or an ISO time.")] = "24h",
    granularity: Annotated[
        str | None, typer.Option("--granularity", help="minute, hour or day.")
    ] = None,
    environment: EnvOption = "live",
    unattributed: Annotated[
        bool,
        typer.Option(
            "--unattributed", help="Refusals of credentials no organisation owns (unknown keys)."
        ),
    ] = False,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Verifications over time, by outcome: a table and a sparkline."""
    from apiward.core import analytics

    async def job(runtime: Runtime, principal: Principal) -> dict[str, Any]:
        await runtime.flush_analytics()  # what this process counted (none, usually)
        q = analytics.query(
            since=since,
            until=None,
            granularity=granularity,
            group_by="outcome",
            now=runtime.clock.now(),
            key_id=key,
            client_id=client,
        )
        if unattributed:
            rows = await runtime.analytics.unattributed(q)
        else:
            rows = await runtime.analytics.verifications(principal, q)
        step = analytics.GRANULARITIES[q.granularity]
        first = int(q.since.timestamp()) // step * step
        slots = list(range(first, int(q.until.timestamp()), step))
        per: dict[str, dict[int, int]] = {}
        for row in rows:
            per.setdefault(row.outcome, {})[row.start] = row.count
        return {
            "granularity": q.granularity,
            "since": q.since.isoformat(),
            "slots": slots,
            "outcomes": {o: [c.get(s, 0) for s in slots] for o, c in sorted(per.items())},
        }

    data = _as_operator(org, environment, job)
    if as_json:
        print(json.dumps(data))
        return
    table = Table(title=f"Verifications since {data['since'][:19]}, per {data['granularity']}")
    table.add_column("outcome")
    table.add_column("total", justify="right")
    table.add_column("over time", overflow="fold")
    all_outcomes: list[int] = [0] * len(data["slots"])
    for outcome, counts in data["outcomes"].items():
        table.add_row(outcome, f"{sum(counts):,}", sparkline(counts))
        all_outcomes = [a + b for a, b in zip(all_outcomes, counts, strict=True)]
    table.add_row("all", f"{sum(all_outcomes):,}", sparkline(all_outcomes))
    out.print(table)
