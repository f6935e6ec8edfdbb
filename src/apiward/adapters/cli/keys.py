"""``apiward keys``: create, list, change and roll API keys; import and report-leak beside."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from apiward.adapters.cli.keys_import import keys_import
from apiward.adapters.cli.leaks import keys_report_leak
from apiward.adapters.cli.scope_usage import NarrowOption, SinceOption, scope_usage
from apiward.adapters.cli.shared import (
    EnvOption,
    ExternalIdOption,
    JsonOption,
    MetaOption,
    OrgOption,
    as_operator,
    fail,
    meta_option,
    out,
    run,
)
from apiward.adapters.cli.tables import Column, minute, show

if TYPE_CHECKING:
    from apiward.adapters.runtime import Runtime
    from apiward.core.limits import Credits
    from apiward.core.models import ApiKey, Principal, RateOverride

app = typer.Typer(help="Create and manage API keys.", no_args_is_help=True)


def _key_dict(key: ApiKey, now: datetime) -> dict[str, Any]:
    from apiward.adapters.http.schemas.keys import KeyOut

    return KeyOut.of(key, now).model_dump(mode="json")


KEY_COLUMNS = (
    Column("id", whole=True),
    Column("name", keep=5, least=8),
    Column("key", whole=True),
    Column("env", keep=6),
    Column("scopes", keep=3, least=12),
    Column("state", keep=7),
    Column("last used", keep=1, least=16),
    Column("expires", keep=2, least=16),
)
FORMAT_COLUMN = Column("format", keep=4)
"""Shown by ``keys list`` once a key of another format than the current one is listed:
``earlier`` keys keep working, ``unrecorded`` ones are refused (docs/operations.md)."""
EXTERNAL_ID_COLUMN = Column("external id", keep=4, least=8)
"""Shown once a listed key has an ``external_id``."""


def _key_rows(keys: list[dict[str, Any]], owned: bool = False) -> list[list[str]]:
    rows = []
    for k in keys:
        last = k["last_used_at"] and f"{minute(k['last_used_at'])} {k['last_used_ip'] or ''}"
        rows.append(
            [
                k["id"],
                k["name"],
                k["hint"],
                k["environment"],
                " ".join(k["scopes"]),
                k["state"],
                (last or "never").strip(),
                minute(k["expires_at"]) if k["expires_at"] else "never",
                *([k["external_id"] or ""] if owned else []),
                *([k["format"]] if "format" in k else []),
            ]
        )
    return rows


def _show_keys(keys: list[dict[str, Any]], footer: str | None = None) -> None:
    owned = any(k.get("external_id") for k in keys)
    columns = (*KEY_COLUMNS, *([EXTERNAL_ID_COLUMN] if owned else []))
    if any(k.get("format", "current") != "current" for k in keys):
        show(out, (*columns, FORMAT_COLUMN), _key_rows(keys, owned), footer=footer)
    else:
        rows = _key_rows([_without_format(k) for k in keys], owned)
        show(out, columns, rows, footer=footer)


def _without_format(key: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in key.items() if name != "format"}


def _show_key(data: dict[str, Any], as_json: bool, secret: str | None = None) -> None:
    if as_json:
        print(json.dumps({**data, **({"key": secret} if secret else {})}))
        return
    _show_keys([data])
    if secret:
        out.print("\nThe key (shown once, store it now):")
        print(secret)


def _expiry(expires_in: str | None) -> datetime | None:
    if expires_in is None:
        return None
    from apiward.core import times
    from apiward.core.errors import InvalidInput

    try:
        ahead = times.span(expires_in, name="--expires-in")
        if ahead is None:
            fail(f"--expires-in {expires_in!r}: use e.g. 30d, 12h, 15m")
        return times.instant(datetime.now(UTC) + ahead, name="--expires-in")
    except InvalidInput as exc:
        fail(exc.message)


RateLimitOption = Annotated[
    list[str] | None,
    typer.Option(
        "--rate-limit",
        help="NAME=RATE[@KIND][:report], e.g. per-key=1000/hour@credential; "
        "replaces the org's limit of that name. ':report' counts what it would refuse "
        "(WOULD_REFUSE) and enforces nothing. Repeatable.",
    ),
]
CreditsOption = Annotated[int | None, typer.Option("--credits", min=0, help="Usage credits.")]
RefillOption = Annotated[
    str | None, typer.Option("--refill", help="AMOUNT/daily or AMOUNT/monthly.")
]


def _rate_limits(values: list[str] | None) -> list[RateOverride] | None:
    if values is None:
        return None
    from apiward.core.models import RateOverride

    limits = []
    for value in values:
        name, sep, rest = value.partition("=")
        rest, colon, mode = rest.partition(":")
        rate, _, kind = rest.partition("@")
        if not sep or not name or not rate or (colon and mode not in ("enforce", "report")):
            fail(
                f"--rate-limit {value!r}: write NAME=RATE[@KIND][:report], e.g. "
                "per-key=100/minute, or per-key=100/minute:report to count what it would "
                "refuse without enforcing it"
            )
        limits.append(RateOverride(name, rate, kind or "credential", mode=mode or "enforce"))
    return limits


def _credits(credits: int | None, refill: str | None) -> Credits | None:
    if credits is None:
        if refill is not None:
            fail("--refill needs --credits")
        return None
    from apiward.core.limits import Credits, Refill

    if refill is None:
        return Credits(credits)
    amount, _, interval = refill.partition("/")
    if not amount.isdigit() or interval not in ("daily", "monthly"):
        fail(f"--refill {refill!r}: write AMOUNT/daily or AMOUNT/monthly")
    return Credits(credits, Refill(int(amount), interval))  # type: ignore[arg-type]


@app.command("create")
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
    external_id: ExternalIdOption = None,
    meta: MetaOption = None,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a key and print it once."""
    expires_at = _expiry(expires_in)
    data = meta_option(meta)
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
            external_id=external_id,
            meta=data,
        )
        return _key_dict(created.key, runtime.clock.now()), created.plaintext

    shown, secret = as_operator(org, environment, job)
    _show_key(shown, as_json, secret)


@app.command("list")
def keys_list(
    environment: Annotated[
        str | None, typer.Option("--env", help="Only this environment (default: every one).")
    ] = None,
    page: Annotated[int, typer.Option(min=1)] = 1,
    page_size: Annotated[int, typer.Option(min=1, max=100)] = 50,
    external_id: Annotated[
        str | None, typer.Option("--external-id", help="Only the keys of this external id.")
    ] = None,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """List keys (prefix and last four characters only, the external id when one has
    one, and the key format when some are of an earlier one)."""
    from apiward.core.models import PageRequest
    from apiward.services.formats import format_of

    async def job(runtime: Runtime, principal: Principal) -> dict[str, Any]:
        result = await runtime.keys.list_keys(
            principal,
            PageRequest(page, page_size),
            environment=environment,
            every_environment=environment is None,
            external_id=external_id,
        )
        now = runtime.clock.now()
        imported = runtime.settings.imported_key_prefixes
        return {
            "items": [
                {**_key_dict(k, now), "format": format_of(k.prefix, runtime.formats, imported)}
                for k in result.items
            ],
            "total": result.total,
            "page": result.page,
            "page_size": result.page_size,
        }

    data = as_operator(org, environment, job)
    if as_json:
        print(json.dumps(data))
        return
    _show_keys(data["items"], footer=f"{data['total']} key(s); page {data['page']}.")


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

    environment = run(find_env)
    _show_key(as_operator(org, environment, job), as_json)


@app.command("get")
def keys_get(key_id: KeyId, org: OrgOption = None, as_json: JsonOption = False) -> None:
    """Show one key."""
    _key_action(key_id, org, as_json, lambda r, p: r.keys.get(p, key_id))


@app.command("usage")
def keys_usage(
    key_id: KeyId,
    since: SinceOption = "30d",
    narrow: NarrowOption = False,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Which of the key's scopes its allowed requests used (counted per day), which it
    never needed, and with --narrow, narrow it to what was used (an ordinary update)."""
    scope_usage("key", key_id, since, narrow=narrow, org=org, as_json=as_json)


@app.command("impact")
def keys_impact(
    key_id: KeyId,
    scopes: Annotated[
        list[str] | None, typer.Option("--scope", help="A proposed scope set (repeat).")
    ] = None,
    ip_allow: Annotated[
        list[str] | None, typer.Option("--allow-ip", help="A proposed allow-list (repeat).")
    ] = None,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """What revoking the key (no option), a proposed scope set or allow-list would have
    refused of its allowed requests over the last 7 days, from the counts kept (a range
    where they cannot tell exactly: docs/keeping-keys-healthy.md)."""
    from apiward.adapters.http.schemas.addresses import ImpactOut
    from apiward.core.impact import proposal, sentence

    async def job(runtime: Runtime, principal: Principal) -> dict[str, Any]:
        change = proposal(
            ",".join(scopes) if scopes else None, ",".join(ip_allow) if ip_allow else None
        )
        await runtime.flush_analytics()  # what this process counted (none, usually)
        await runtime.flush_scope_usage()
        await runtime.flush_addresses()
        impact = await runtime.impact.of_key(principal, key_id, change)
        return {
            **ImpactOut.of(key_id, impact).model_dump(mode="json"),
            "sentence": sentence(impact, "revoking it" if change.refuses_all else "the change"),
        }

    async def find_env(runtime: Runtime) -> str:
        principal = await runtime.operators.principal(org)
        return (await runtime.keys.get(principal, key_id)).environment

    data = as_operator(org, run(find_env), job)
    if as_json:
        print(json.dumps(data))
        return
    print(data["sentence"])  # whole, not wrapped: a sentence to quote
    for part in ("by_route", "by_scope", "by_network"):
        for r in data[part]:
            verdict = "" if r["verdict"] == "refused" else f" ({r['verdict']})"
            out.print(f"  {r['name']}: {r['requests']:,}{verdict}")
    if data["unlisted_requests"]:
        out.print(f"  networks past the cap (unknown): {data['unlisted_requests']:,}")


@app.command("update")
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
    expires_in: Annotated[
        str | None, typer.Option("--expires-in", help="From now, e.g. 30d, 12h.")
    ] = None,
    no_expiry: Annotated[bool, typer.Option("--no-expiry", help="Remove the expiry.")] = False,
    rate_limit: RateLimitOption = None,
    credits: CreditsOption = None,
    refill: RefillOption = None,
    external_id: ExternalIdOption = None,
    clear_external_id: Annotated[bool, typer.Option("--clear-external-id")] = False,
    meta: Annotated[
        str | None, typer.Option("--meta", help="Replaces the key's meta; '{}' empties it.")
    ] = None,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change a key's name, scopes, allow-lists, expiry, limits, credits, external id or
    meta; the expiry and allow-lists set here are the operator's, which the tenant may
    only tighten."""
    expires_at = _expiry(expires_in)
    data = meta_option(meta)
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
            expires_at=expires_at,
            clear_expiry=no_expiry,
            rate_limits=_rate_limits(rate_limit),
            credits=_credits(credits, refill),
            external_id=external_id,
            clear_external_id=clear_external_id,
            meta=data,
        ),
    )


@app.command("disable")
def keys_disable(key_id: KeyId, org: OrgOption = None, as_json: JsonOption = False) -> None:
    """Refuse the key until it is enabled again."""
    _key_action(key_id, org, as_json, lambda r, p: r.keys.disable(p, key_id))


@app.command("enable")
def keys_enable(key_id: KeyId, org: OrgOption = None, as_json: JsonOption = False) -> None:
    """Accept a disabled key again."""
    _key_action(key_id, org, as_json, lambda r, p: r.keys.enable(p, key_id))


@app.command("revoke")
def keys_revoke(key_id: KeyId, org: OrgOption = None, as_json: JsonOption = False) -> None:
    """Refuse the key for ever."""
    _key_action(key_id, org, as_json, lambda r, p: r.keys.revoke(p, key_id))


@app.command("roll")
def keys_roll(
    key_id: KeyId,
    grace: Annotated[
        int, typer.Option("--grace", help="Seconds the old key keeps working.", min=0)
    ] = 0,
    org: OrgOption = None,
    as_json: JsonOption = False,
) -> None:
    """Issue a new key with the same settings; the old one stops after the grace period."""
    from apiward.core import times
    from apiward.core.errors import InvalidInput

    try:
        pause = times.duration(grace, name="--grace")
    except InvalidInput as exc:
        fail(exc.message)

    async def find_env(runtime: Runtime) -> str:
        return (await runtime.keys.get(await runtime.operators.principal(org), key_id)).environment

    environment = run(find_env)

    async def job(runtime: Runtime, principal: Principal) -> tuple[dict[str, Any], str]:
        created = await runtime.keys.roll(principal, key_id, grace=pause)
        return _key_dict(created.key, runtime.clock.now()), created.plaintext

    data, secret = as_operator(org, environment, job)
    _show_key(data, as_json, secret)


app.command("import")(keys_import)
app.command("report-leak")(keys_report_leak)
