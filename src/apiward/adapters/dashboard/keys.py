"""Settings > API keys: the table, the create form, disable, enable, revoke and roll."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from fastapi import APIRouter, Depends, Request
from starlette.datastructures import FormData, UploadFile
from starlette.responses import Response

from apiward.adapters.dashboard.web import (
    DashboardRoute,
    FieldErrors,
    Flash,
    Me,
    chosen,
    notice,
    paging,
    render,
    see_other,
    signed_in,
    text,
    url,
    whole_number,
    words,
)
from apiward.adapters.http.deps import ClockDep, ImpactsDep, KeysDep, TenancyDep, runtime_of
from apiward.adapters.http.errors import status_of
from apiward.core import times
from apiward.core.addresses import DayFigures
from apiward.core.errors import ApiwardError, InvalidInput
from apiward.core.impact import Proposal, sentence
from apiward.core.models import KeyState, PageRequest
from apiward.core.roles import MANAGEMENT_SCOPES
from apiward.core.scopes import RESERVED_RESOURCES, Catalogue
from apiward.services.keys import SEARCH_MAX, Keys, credential_scopes, parse_networks
from apiward.services.tenancy import Tenancy, check_name

router = APIRouter(route_class=DashboardRoute)

NOTICES = {
    "project_created": "The project is created, with its live and test environments. "
    "Create its first API key.",
    "disabled": "The API key is disabled: it is refused until you enable it again.",
    "enabled": "The API key is enabled.",
    "revoked": "The API key is revoked: every request with it is now refused.",
}
EXPIRY_CHOICES = (("", "Never"), ("7", "In 7 days"), ("30", "In 30 days"), ("90", "In 90 days"))
GRACE_CHOICES = (
    (0, "Stop the old key now"),
    (3600, "Keep the old key working for 1 hour"),
    (86400, "Keep the old key working for 24 hours"),
    (7 * 86400, "Keep the old key working for 7 days"),
)
_ALL = PageRequest(page=1, page_size=100)
STATES = tuple(state.value for state in KeyState)
MAX_EXPIRY_DAYS = 3650


async def people(tenancy: Tenancy, me: Me) -> dict[str, str]:
    """User ids to emails, for the "created by" columns (ids when users can't be read)."""
    if not me.can("users:read"):
        return {}
    page = await tenancy.list_users(me.principal, _ALL)
    return {u.id: u.email for u in page.items}


@dataclass(frozen=True, slots=True)
class ScopeChoices:
    """The scopes a form offers, each with what it allows: the API's own first (its
    catalogue, ``APIWARD_API_SCOPES``, then the user's role's and custom roles'), then
    apiward's management scopes."""

    api: list[tuple[str, str]]
    own: list[tuple[str, str]]
    groups: Mapping[str, list[str]] = field(default_factory=dict)
    """``APIWARD_API_SCOPE_GROUPS``: the API's scopes shown under these names."""

    def names(self) -> set[str]:
        return {scope for scope, _ in self.api + self.own}

    def holding(self, scopes: tuple[str, ...], note: str) -> ScopeChoices:
        """The same, with the scopes a credential holds that are not offered added (so
        that its form shows them ticked: unticking one narrows it)."""
        offered = self.names()
        api = self.api + [(s, note) for s in scopes if s not in offered]
        return ScopeChoices(api, self.own, self.groups)

    def as_form(self, scopes: tuple[str, ...]) -> list[tuple[str, str | UploadFile]]:
        """A credential's scopes as its form sends them: ticked where offered, the others
        in "Other scopes"."""
        listed = self.names()
        fields: list[tuple[str, str | UploadFile]] = [("scope", s) for s in scopes if s in listed]
        fields.append(("more_scopes", " ".join(s for s in scopes if s not in listed)))
        return fields

    def sections(self) -> list[tuple[str, list[tuple[str, str]]]]:
        """The API's scopes by group, in the groups' order, then those of no group
        (under ""): what the form shows first."""
        described = dict(self.api)
        out = [
            (name, [(s, described[s]) for s in scopes if s in described])
            for name, scopes in self.groups.items()
        ]
        grouped = {s for scopes in self.groups.values() for s in scopes}
        out.append(("", [(s, d) for s, d in self.api if s not in grouped]))
        return [(name, items) for name, items in out if items]


async def scope_choices(tenancy: Tenancy, me: Me, request: Request) -> ScopeChoices:
    """Scopes to offer: the API's catalogue, the user's role, the org's custom roles and
    apiward's own; only those the user holds (the services refuse to grant more anyway)."""
    settings = runtime_of(request).settings
    offered: dict[str, str] = dict(settings.api_scopes)
    for scope in me.principal.scopes:
        offered.setdefault(
            scope, "Everything your role allows" if scope == "*" else "From your role"
        )
    if me.can("roles:read"):
        for role in await tenancy.list_roles(me.principal):
            if not role.builtin:
                for scope in role.scopes:
                    offered.setdefault(scope, f"From the {role.name} role")
    for scope, description in MANAGEMENT_SCOPES.items():
        offered[scope] = description
    api = [(s, d) for s, d in offered.items() if not own_scope(s) and me.can(s)]
    own = [(s, d) for s, d in offered.items() if own_scope(s) and me.can(s)]
    return ScopeChoices(api, own, settings.api_scope_groups)


def read_scopes(form: FormData, errors: FieldErrors, what: str, known: Catalogue) -> list[str]:
    """The scopes ticked and typed in a form, each valid and in the API's catalogue
    (``Catalogue``, which the services check too: here, for the error's place)."""
    scopes = chosen(form, "scope") + words(text(form, "more_scopes", 4000))
    with errors.on("scopes"):
        known.check(credential_scopes(scopes, what))
    return scopes


def own_scope(scope: str) -> bool:
    """One of apiward's own scopes (managing keys, users...; an owner's or the operator's
    powers), as opposed to the protected API's."""
    return scope in MANAGEMENT_SCOPES or scope.partition(":")[0] in RESERVED_RESOURCES


async def spaces(tenancy: Tenancy, me: Me) -> list[tuple[str, str]]:
    if not me.can("spaces:read"):
        return []
    page = await tenancy.list_spaces(me.principal, _ALL)
    return [(s.id, s.name) for s in page.items]


def expiry(form: FormData, now: datetime) -> datetime | None:
    """The expiry chosen in a form: none, a number of days, or a date (00:00 UTC)."""
    choice = text(form, "expires", 8)
    if choice and choice != "date":
        days = whole_number(choice, MAX_EXPIRY_DAYS)
        if days is None:
            raise InvalidInput(f"Choose an expiry of 0 to {MAX_EXPIRY_DAYS} days, or a date.")
        return times.later(now, days * 86400, name="The expiry")
    if choice == "date":
        try:
            day = date.fromisoformat(text(form, "expires_on", 10))
        except ValueError:
            raise InvalidInput("Choose the expiry date, as YYYY-MM-DD.") from None
        return times.instant(day, name="The expiry date")
    return None


KEEP = "keep"
"""The expiry choice of the edit form that leaves a key's expiry as it is."""


@dataclass(frozen=True, slots=True)
class KeyForm:
    """What the create and edit forms of a key say, each field checked on its own so
    that its error is shown next to it."""

    name: str
    scopes: list[str]
    ip_allow: list[str]
    space_allow: list[str]
    expires_at: datetime | None
    keep_expiry: bool

    @classmethod
    def read(cls, form: FormData, now: datetime, errors: FieldErrors, known: Catalogue) -> KeyForm:
        name = text(form, "name")
        with errors.on("name"):
            check_name(name, "key")
        scopes = read_scopes(form, errors, "An API key", known)
        ip_allow = words(text(form, "ip_allow", 8000))
        with errors.on("ip_allow"):
            parse_networks(ip_allow)
        keep = text(form, "expires", 8) == KEEP
        when = None
        if not keep:
            with errors.on("expires"):
                when = expiry(form, now)
                if when is not None and when <= now:
                    raise InvalidInput("Choose an expiry in the future.")
        return cls(name, scopes, ip_allow, chosen(form, "space"), when, keep)


async def _list(
    request: Request,
    me: Me,
    keys: Keys,
    tenancy: Tenancy,
    *,
    flash: Flash | None = None,
    status: int = 200,
) -> Response:
    me.require("keys:read")
    search = request.query_params.get("q", "").strip()[:SEARCH_MAX]
    wanted = request.query_params.get("state", "")
    state = KeyState(wanted) if wanted in STATES else None
    expiring = whole_number(request.query_params.get("expiring", ""), MAX_EXPIRY_DAYS)
    unused = whole_number(request.query_params.get("unused", ""), MAX_EXPIRY_DAYS)
    page = await keys.list_keys(
        me.principal,
        paging(request),
        environment=me.env,
        search=search or None,
        state=state,
        expiring_within=timedelta(days=expiring) if expiring is not None else None,
        unused_for=timedelta(days=unused) if unused is not None else None,
    )
    return render(
        request,
        "keys.html",
        status=status,
        flash=flash or notice(request, NOTICES),
        section="keys",
        page=page,
        people=await people(tenancy, me),
        search=search,
        state=state.value if state else "",
        states=STATES,
        expiring=expiring,
        unused=unused,
    )


@router.get("/keys")
async def list_keys(
    request: Request, keys: KeysDep, tenancy: TenancyDep, me: Me = Depends(signed_in)
) -> Response:
    return await _list(request, me, keys, tenancy)


async def _form(
    request: Request,
    me: Me,
    tenancy: Tenancy,
    *,
    values: FormData | None = None,
    errors: FieldErrors | None = None,
) -> Response:
    return render(
        request,
        "key_new.html",
        status=400 if errors else 200,
        flash=errors.flash() if errors else None,
        section="keys",
        scopes=await scope_choices(tenancy, me, request),
        spaces=await spaces(tenancy, me),
        expiry_choices=EXPIRY_CHOICES,
        values=values or FormData(),
        errors=errors or FieldErrors(),
    )


@router.get("/keys/new")
async def new_key(request: Request, tenancy: TenancyDep, me: Me = Depends(signed_in)) -> Response:
    me.require("keys:write")
    return await _form(request, me, tenancy)


@router.post("/keys")
async def create_key(
    request: Request,
    keys: KeysDep,
    tenancy: TenancyDep,
    clock: ClockDep,
    me: Me = Depends(signed_in),
) -> Response:
    me.require("keys:write")
    form = await request.form()
    errors = FieldErrors()
    fields = KeyForm.read(form, clock.now(), errors, runtime_of(request).catalogue)
    if not errors:
        try:
            created = await keys.create(
                me.principal,
                name=fields.name,
                scopes=fields.scopes,
                environment=me.env,
                expires_at=fields.expires_at,
                ip_allow=fields.ip_allow,
                space_allow=fields.space_allow,
            )
        except ApiwardError as exc:
            errors.add(exc)
    if errors:
        return await _form(request, me, tenancy, values=form, errors=errors)
    return render(
        request,
        "secret.html",
        status=201,
        section="keys",
        title="API key created",
        what="API key",
        label="API key",
        name=created.key.name,
        environment=created.key.environment,
        secret=created.plaintext,
        client_id=None,
        note=None,
        back=url("/keys", env=created.key.environment),
    )


async def _act(
    request: Request, me: Me, keys: Keys, tenancy: Tenancy, key_id: str, action: str
) -> Response:
    me.require("keys:write")
    change = {"disable": keys.disable, "enable": keys.enable, "revoke": keys.revoke}
    try:
        key = await change[action](me.principal, key_id)
    except ApiwardError as exc:
        return await _list(
            request, me, keys, tenancy, flash=Flash.error(exc), status=status_of(exc)
        )
    return see_other(url("/keys", env=key.environment, done=f"{action}d"))


@router.post("/keys/{key_id}/disable")
async def disable_key(
    key_id: str,
    request: Request,
    keys: KeysDep,
    tenancy: TenancyDep,
    me: Me = Depends(signed_in),
) -> Response:
    return await _act(request, me, keys, tenancy, key_id, "disable")


@router.post("/keys/{key_id}/enable")
async def enable_key(
    key_id: str,
    request: Request,
    keys: KeysDep,
    tenancy: TenancyDep,
    me: Me = Depends(signed_in),
) -> Response:
    return await _act(request, me, keys, tenancy, key_id, "enable")


@router.get("/keys/{key_id}/revoke")
async def confirm_revoke(
    key_id: str,
    request: Request,
    keys: KeysDep,
    impacts: ImpactsDep,
    me: Me = Depends(signed_in),
) -> Response:
    me.require("keys:write")
    key = await keys.get(me.principal, key_id)
    impact = await impacts.of_key(me.principal, key.id, Proposal())
    return render(
        request,
        "key_revoke.html",
        section="keys",
        key=key,
        impact=sentence(impact, "revoking it"),
    )


@router.post("/keys/{key_id}/revoke")
async def revoke_key(
    key_id: str,
    request: Request,
    keys: KeysDep,
    tenancy: TenancyDep,
    me: Me = Depends(signed_in),
) -> Response:
    return await _act(request, me, keys, tenancy, key_id, "revoke")


@router.get("/keys/{key_id}/roll")
async def confirm_roll(
    key_id: str, request: Request, keys: KeysDep, me: Me = Depends(signed_in)
) -> Response:
    me.require("keys:write")
    key = await keys.get(me.principal, key_id)
    return render(request, "key_roll.html", section="keys", key=key, choices=GRACE_CHOICES)


@router.post("/keys/{key_id}/roll")
async def roll_key(
    key_id: str,
    request: Request,
    keys: KeysDep,
    tenancy: TenancyDep,
    me: Me = Depends(signed_in),
) -> Response:
    me.require("keys:write")
    grace = whole_number(text(await request.form(), "grace", 12), 10**8)
    try:
        if grace is None:
            raise InvalidInput("Choose how long the old key keeps working.")
        created = await keys.roll(
            me.principal, key_id, grace=times.duration(grace, name="The grace period")
        )
    except ApiwardError as exc:
        return await _list(
            request, me, keys, tenancy, flash=Flash.error(exc), status=status_of(exc)
        )
    old = await keys.get(me.principal, key_id)
    return render(
        request,
        "secret.html",
        status=201,
        section="keys",
        title="API key rolled",
        what="API key",
        label="API key",
        name=created.key.name,
        environment=created.key.environment,
        secret=created.plaintext,
        client_id=None,
        note=(
            f"The old key keeps working until {old.expires_at:%Y-%m-%d %H:%M} UTC."
            if old.revoked_at is None and old.expires_at is not None
            else "The old key stopped working."
        ),
        back=url("/keys", env=created.key.environment),
    )


def seen_line(today: DayFigures) -> str:
    """ "seen from N networks (M countries) today", the key page's shared-key figure."""
    if not today.requests:
        return "No requests counted today."
    approx = "" if today.exact else "about "
    nets = f"{approx}{today.networks:,} network{'s' if today.networks != 1 else ''}"
    if today.countries is not None:
        nets += f" ({today.countries:,} countr{'ies' if today.countries != 1 else 'y'})"
    return f"Seen from {nets} today."
