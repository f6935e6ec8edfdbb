"""Authorities read from the store, and the delegation checks every service calls.

The rule itself is ``apiward.core.authority``; this module only finds, inside the
caller's transaction, the roles an authority is computed from, so that a check sees the
memberships as they are at the moment of the change (``docs/authority.md``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import Protocol

from apiward.core.authority import (
    EVERYTHING,
    UNBOUNDED,
    Authority,
    Grant,
    networks,
    require_covers,
    require_held,
    require_undoes,
)
from apiward.core.errors import ExceedsAuthority, InvalidInput, OperatorOnly
from apiward.core.limits import Credits
from apiward.core.models import (
    ApiKey,
    CredentialKind,
    OAuthClient,
    Principal,
    RateOverride,
    Space,
    User,
)
from apiward.core.roles import BUILTIN_ROLES
from apiward.core.scopes import ScopeSet
from apiward.core.webhooks import WebhookDelivery
from apiward.services.ports import CredentialsTx, PortalTx, TenancyTx

OPERATOR_TIERS = "operator:tiers"
OPERATOR_LIMITS = "operator:limits"
OPERATOR_CREDITS = "operator:credits"

Roles = dict[str | None, ScopeSet]


def key_grant(key: ApiKey) -> Grant:
    """What an API key allows by itself: its scopes, environment, spaces, addresses, expiry."""
    return Grant(
        ScopeSet(key.scopes),
        frozenset({key.environment}),
        frozenset(key.space_allow),
        networks(key.ip_allow),
        key.expires_at,
    )


def client_grant(client: OAuthClient) -> Grant:
    """What an OAuth client allows by itself (its tokens reach every space)."""
    return Grant(
        ScopeSet(client.scopes), frozenset({client.environment}), expires_at=client.expires_at
    )


async def user_roles(tx: TenancyTx, org_id: str, user_id: str) -> Roles:
    """The user's scopes per space id (None: every space of the org)."""
    result: Roles = {}
    for m in await tx.list_memberships(org_id, user_id):
        role = BUILTIN_ROLES.get(m.role) or await tx.get_role(org_id, m.role)
        if role is not None:
            result[m.space_id] = ScopeSet(role.scopes)
    return result


async def is_active(tx: PortalTx, user: User | None) -> bool:
    """A user acts (through any credential) only while neither it nor its portal account
    is disabled: disabled means disabled."""
    if user is None or user.disabled_at is not None:
        return False
    if user.account_id is None:
        return True
    account = await tx.get_account(user.account_id)
    return account is not None and account.disabled_at is None


async def credential_author(tx: CredentialsTx, principal: Principal) -> str:
    """The person behind the caller's credential: who made the key or the client (which
    may act as another user, within what its maker holds), else the user itself (a
    dashboard session, a token of the user's own password, the operator)."""
    made_by: str | None = principal.user_id
    if principal.credential_kind is CredentialKind.API_KEY:
        key = await tx.get_key(principal.org_id, principal.credential_id)
        made_by = key.created_by if key else None
    elif principal.credential_kind is CredentialKind.ACCESS_TOKEN and principal.client_id:
        client = await tx.get_client(principal.org_id, principal.client_id)
        made_by = client.created_by if client else None
    return made_by or principal.user_id


async def maker(
    tx: CredentialsTx, principal: Principal, acting: str | None
) -> tuple[str, str | None]:
    """Who a credential the principal makes records as its maker, and the user it acts
    as (``acting``; None: its maker): the person behind the principal's own credential,
    so that a credential acting as another user makes only credentials acting as that
    user *by its maker's hand*, never ones passing as that user's own."""
    author = await credential_author(tx, principal)
    if acting is None and author != principal.user_id:
        acting = principal.user_id
    return author, acting


async def require_own_account(tx: CredentialsTx, principal: Principal, what: str) -> None:
    """A portal account spans organisations: acting on it (its projects) needs being its
    person, so a credential another user made acting as them is refused, whatever it
    holds here (``check_credential`` weighs this organisation only)."""
    author = await credential_author(tx, principal)
    if author != principal.user_id:
        raise ExceedsAuthority(
            f"{what} refused: this credential acts as user {principal.user_id} but was made "
            f"by user {author}. A portal account's projects span organisations, so only "
            "its person's own credentials act on them."
        )


async def principal_authority(tx: TenancyTx, principal: Principal) -> Authority:
    """What the caller holds now: its credential's grant applied to its user's roles."""
    if principal.credential_kind is CredentialKind.OPERATOR:
        return Authority({None: EVERYTHING})
    return Authority.of(principal.grant, await user_roles(tx, principal.org_id, principal.user_id))


def user_authority(roles: Mapping[str | None, ScopeSet], actor: Authority) -> Authority:
    """A user's whole authority, within the environments the actor reaches (a user's
    roles hold in every environment; a key of one environment manages them there)."""
    return Authority.of(replace(UNBOUNDED, environments=actor.environments), roles)


async def check_credential(
    tx: TenancyTx, principal: Principal, grant: Grant, acting_user_id: str, what: str
) -> None:
    """A credential created or changed by ``principal``, with this grant, acting as
    ``acting_user_id``, confers nothing the principal does not hold.

    Its own scopes must be held in every space it reaches; acting for another user
    needs that user's whole authority (so no credential ever acts as somebody who
    holds more than its author, an owner above all).
    """
    actor = await principal_authority(tx, principal)
    require_covers(actor, Authority.bounds(grant), what)
    if acting_user_id != principal.user_id:
        target = user_authority(await user_roles(tx, principal.org_id, acting_user_id), actor)
        require_covers(actor, target, f"{what}, acting as user {acting_user_id},")


async def check_user_change(
    tx: TenancyTx,
    principal: Principal,
    user_id: str,
    after: Roles | None,
    what: str,
) -> None:
    """Changing a user (roles, disabling) needs covering what the user holds now, and,
    when ``after`` gives the roles the change leaves, what the user will hold."""
    actor = await principal_authority(tx, principal)
    before = await user_roles(tx, principal.org_id, user_id)
    require_covers(actor, user_authority(before, actor), what)
    if after is not None:
        require_covers(actor, user_authority(after, actor), what)


SPACES_MANAGE = "spaces:manage"


async def check_space_change(
    tx: TenancyTx, principal: Principal, space: Space, unarchive: bool
) -> None:
    """Renaming, archiving or bringing back a space needs ``spaces:manage`` in that space
    (a live key kept to it stops while it is archived); bringing it back also needs
    covering the authority of whoever archived it, so an owner's act is undone only by
    an owner (or by anyone covering what that person holds now, once demoted)."""
    actor = await principal_authority(tx, principal)
    require_held(actor, space.id, SPACES_MANAGE, f"Changing space {space.id}")
    if unarchive and space.archived_by != principal.user_id:
        archiver = None
        if space.archived_by is not None:
            roles = await user_roles(tx, principal.org_id, space.archived_by)
            # An archiver who holds no role any more counts as unknown (an owner's act),
            # not as someone who holds nothing, whom anyone would cover.
            archiver = user_authority(roles, actor) if roles else None
        require_undoes(actor, archiver, f"Bringing back space {space.id}, archived by another,")


async def check_role_scopes(tx: TenancyTx, principal: Principal, scopes: ScopeSet) -> None:
    """A role may hold only what its author holds in every space (it can be granted in
    any, and a change reaches every user who holds it), and never an operator power (no
    role gives those)."""
    if scopes.reserved("operator"):
        raise InvalidInput(
            "A role cannot hold operator permissions (operator:...): only credentials the "
            "operator creates carry them."
        )
    actor = await principal_authority(tx, principal)
    require_covers(actor, Authority({None: scopes}, actor.environments), "This role")


async def check_role_grant(
    tx: TenancyTx, principal: Principal, scopes: ScopeSet, space_id: str | None, what: str
) -> None:
    """Offering a role (an invitation) in a space, or everywhere with ``None``."""
    actor = await principal_authority(tx, principal)
    require_covers(actor, user_authority({space_id: scopes}, actor), what)


class PeopleTx(TenancyTx, PortalTx, Protocol):
    """The users of an organisation and the portal accounts behind them."""


async def check_still_offered(
    tx: PeopleTx, org_id: str, inviter_id: str | None, scopes: ScopeSet
) -> None:
    """At an invitation's acceptance, its sender must still be an active member (neither
    it nor its portal account disabled, not removed) and hold the role it offers, in
    every space (a sender demoted or disabled since cannot hand out what they lost)."""
    inviter = await tx.get_user(org_id, inviter_id) if inviter_id else None
    if not await is_active(tx, inviter):
        raise ExceedsAuthority(
            "This invitation's sender is disabled or no longer a member of the project, so "
            "it grants nothing any more: ask a current owner or admin for a new invitation."
        )
    roles = await user_roles(tx, org_id, inviter_id or "")
    require_covers(
        Authority.of(UNBOUNDED, roles),
        Authority.of(UNBOUNDED, {None: scopes}),
        "This invitation, whose sender no longer holds its role,",
    )


EVENTS_SCOPE = "audit:read"


def require_event_reader(principal: Principal) -> None:
    """A webhook endpoint receives the audit log's events: pointing one somewhere, or
    changing what it receives, would let a credential read what it may not, so it needs
    the permission that reads them."""
    if not principal.grants(EVENTS_SCOPE):
        raise ExceedsAuthority(
            f"A webhook endpoint receives audit events, which need {EVENTS_SCOPE!r}: your "
            "credential does not hold it, so it cannot point one anywhere.",
            EVENTS_SCOPE,
        )


WITHHELD = "null"
"""A delivery's body as shown to a credential that may not read audit events: JSON null."""


def readable_delivery(principal: Principal, delivery: WebhookDelivery) -> WebhookDelivery:
    """A delivery as ``principal`` may see it: its body is an audit event, so without
    ``audit:read`` the body is withheld (``WITHHELD``) and the rest of the history shown."""
    if principal.grants(EVENTS_SCOPE):
        return delivery
    return replace(delivery, payload=WITHHELD)


async def require_everywhere(
    tx: TenancyTx, principal: Principal, scopes: tuple[str, ...], what: str
) -> None:
    """What changes the whole organisation (its name, its spaces, its roles and the
    invitations to it) needs its scopes in every space: a role held in some spaces only,
    or a key kept to some, changes only what stays within them."""
    held = (await principal_authority(tx, principal)).everywhere()
    missing = held.first_missing(scopes)
    if missing is not None:
        raise ExceedsAuthority(
            f"{what} changes the whole organisation: it needs {missing!r} in every space, "
            "and your credential holds it only in some.",
            missing,
        )


def require_org_wide(principal: Principal, primary: str) -> None:
    """Spaces, the organisation, users, roles, memberships, invitations and projects
    belong to the whole organisation: they hold in every environment (a live key is
    kept to a space a test key could archive), so a credential bound to another
    environment than the primary one (a test key, where ``live`` comes first) may not
    change them."""
    if principal.credential_kind.spans_environments or principal.environment == primary:
        return
    raise ExceedsAuthority(
        "Spaces, the organisation, users, roles, memberships, invitations and projects "
        f"hold in every environment: change them with a credential of the {primary} "
        f"environment or in the dashboard, not with a {principal.environment} credential."
    )


def require_operator(principal: Principal, scope: str, what: str) -> None:
    """Plans, limits that loosen a plan and credits are the operator's (``operator:*``)."""
    if not principal.grants(scope):
        raise OperatorOnly(what, scope)


def own_limits(
    principal: Principal, limits: tuple[RateOverride, ...], kept: tuple[RateOverride, ...] = ()
) -> tuple[RateOverride, ...]:
    """A credential's own limits as set by ``principal``.

    The operator's replace the plan's limits of the same name; a tenant's are added
    beside the plan's (so they only restrict), and a tenant's change keeps every limit
    the operator set (``kept``).
    """
    if principal.grants(OPERATOR_LIMITS):
        return tuple(replace(limit, replaces_plan=True) for limit in limits)
    mine = tuple(replace(limit, replaces_plan=False) for limit in limits)
    operators = tuple(limit for limit in kept if limit.replaces_plan)
    names = {limit.name for limit in operators}
    if any(limit.name in names for limit in mine):
        raise OperatorOnly("Changing a limit the operator set", OPERATOR_LIMITS)
    return (*operators, *mine)


BOUNDED = ("expires_at", "ip_allow", "space_allow")
"""A key's settings the operator bounds: what it sets of them, a tenant may only tighten."""


def operator_bounds(principal: Principal, key: ApiKey, changed: Collection[str]) -> ApiKey:
    """``key`` as ``principal`` leaves it, with the operator's bounds recorded or kept.

    The operator (``operator:limits``, the permission of limits that loosen a plan)
    sets a bound by setting the expiry or an allow-list (``changed``): the value becomes
    the operator's, and no expiry or an empty list sets none. Anyone else may change
    them only within the bounds the key has: an earlier expiry, a narrower list.
    """
    if principal.grants(OPERATOR_LIMITS):
        values = {
            "expires_at": key.expires_at,
            "ip_allow": key.ip_allow or None,
            "space_allow": key.space_allow or None,
        }
        set_now = {f"operator_{name}": values[name] for name in BOUNDED if name in changed}
        return replace(key, **set_now)  # type: ignore[arg-type]
    loosened = key.bounds.loosened(key.expires_at, key.ip_allow, key.space_allow)
    if loosened is not None:
        raise OperatorOnly(loosened, OPERATOR_LIMITS)
    return key


def check_credits(principal: Principal, before: Credits | None, after: Credits | None) -> None:
    """Credits are the operator's: a tenant may only lower a balance the key has."""
    if principal.grants(OPERATOR_CREDITS) or after == before:
        return
    if before is None or after is None or not _fewer(after, before):
        raise OperatorOnly("Giving credits, raising them or taking them away", OPERATOR_CREDITS)


def _fewer(after: Credits, before: Credits) -> bool:
    if after.remaining > before.remaining:
        return False
    if after.refill is None:
        return True
    old = before.refill
    return (  # a refill may only shrink: same schedule (interval and day), no larger amount
        old is not None
        and after.refill.amount <= old.amount
        and (after.refill.interval, after.refill.day) == (old.interval, old.day)
    )
