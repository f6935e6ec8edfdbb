"""Authority, and the one rule of delegation: nothing confers more than its author holds.

A credential's *grant* is what it allows by itself: its scopes, the environments and
spaces it may be used in, the addresses it may come from, and when it stops. Applied to
the roles of the user it acts as, a grant becomes an *authority*: the scopes it holds in
each space of its organisation, plus those bounds.

The rule (``docs/authority.md``): whatever a principal creates or changes (a key, a
client, a token by exchange, a role, a membership, an invitation, an allow-list, an
expiry) must result in an authority the principal's own authority *covers*:

- in every space the result reaches, every scope it holds there is held by the principal
  there too (spaces a membership does not name fall under the org-wide entry);
- it reaches no environment, address range or moment the principal does not;
- acting for another user needs covering that user's whole authority, so a credential
  never acts as someone who holds more than its author.

The owner's powers are the reserved scope ``owner:*`` (held through the ``owner`` role,
never through a wildcard), so "only an owner changes an owner" is a case of the same rule:
an owner's authority holds ``owner:*`` where they are owner, and nobody without it there
covers them. The operator's powers (``operator:*``) come from no role: a credential keeps
the operator scopes of its own grant whatever its user's roles are, and only the operator
can grant them.

Changing one space needs the route's permission *in that space* (``require_held``), and
undoing what someone else did to restrict (bringing back a space they archived) needs
covering what they hold (``require_undoes``): an owner or the operator may always.

What the operator sets on a key (its expiry, IP and space allow-lists) are the key's
``Bounds``: a tenant may tighten them, never clear or extend them (``Bounds.loosened``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from apiward.core.errors import ExceedsAuthority
from apiward.core.scopes import ScopeSet

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

OPERATOR = "operator"
OWNER_POWERS = "owner:*"

EMPTY = ScopeSet(())
EVERYTHING = ScopeSet(["*", "owner:*", "operator:*"])
"""Every scope there is, reserved ones included."""


def effective_scopes(granted: ScopeSet, role: ScopeSet | None) -> ScopeSet:
    """What a credential holds in a space: its scopes ∩ its user's role there, and the
    operator scopes of its own (which no role gives); nothing else without a role."""
    operator = granted.reserved(OPERATOR)
    if role is None:
        return operator
    held = granted.intersect(role)
    return held.union(operator) if operator else held


def networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


@dataclass(frozen=True, slots=True)
class Grant:
    """What a credential allows by itself, before the roles of its user apply."""

    scopes: ScopeSet
    environments: frozenset[str] | None = None
    """None: every environment (the operator, a dashboard session)."""
    spaces: frozenset[str] = frozenset()
    """Empty: every space."""
    networks: tuple[IPNetwork, ...] = ()
    """Empty: any address."""
    expires_at: datetime | None = None


UNBOUNDED = Grant(ScopeSet(["*", "owner:*"]))
"""A grant that limits nothing a role can give: a user's own authority is its roles."""


@dataclass(frozen=True, slots=True)
class Excess:
    """Why one authority does not cover another: a sentence, and the scope if one is."""

    reason: str
    scope: str | None = None


@dataclass(frozen=True, slots=True)
class Authority:
    """What a credential (or a user) holds, space by space, and where and until when.

    ``per_space`` maps a space id to the scopes held there; the ``None`` entry holds
    for every space not named (and for spaces created later).
    """

    per_space: Mapping[str | None, ScopeSet]
    environments: frozenset[str] | None = None
    networks: tuple[IPNetwork, ...] = ()
    expires_at: datetime | None = None

    @classmethod
    def of(cls, grant: Grant, roles: Mapping[str | None, ScopeSet]) -> Authority:
        """A grant applied to the roles of the user it acts as.

        ``roles`` maps a space id to the scopes of the user's role there (``None``: the
        org-wide role); a space's own role replaces the org-wide one.
        """
        named = {s for s in roles if s is not None} | set(grant.spaces)
        per_space: dict[str | None, ScopeSet] = {}
        for space in named:
            if grant.spaces and space not in grant.spaces:
                per_space[space] = EMPTY
            else:
                per_space[space] = effective_scopes(grant.scopes, roles.get(space, roles.get(None)))
        if grant.spaces:
            per_space[None] = EMPTY
        else:
            per_space[None] = effective_scopes(grant.scopes, roles.get(None))
        return cls(per_space, grant.environments, grant.networks, grant.expires_at)

    @classmethod
    def bounds(cls, grant: Grant) -> Authority:
        """The grant alone, as if its user held every role: the most it could ever give."""
        per_space: dict[str | None, ScopeSet] = dict.fromkeys(grant.spaces, grant.scopes)
        per_space[None] = EMPTY if grant.spaces else grant.scopes
        return cls(per_space, grant.environments, grant.networks, grant.expires_at)

    def at(self, space_id: str | None) -> ScopeSet:
        """The scopes held in one space."""
        found = self.per_space.get(space_id)
        if found is None:
            found = self.per_space.get(None, EMPTY)
        return found

    def everywhere(self) -> ScopeSet:
        """The scopes held in every space (a role's scopes must be, to be created)."""
        held = self.at(None)
        for space in self.per_space:
            held = held.intersect(self.at(space))
        return held

    def excess(self, other: Authority) -> Excess | None:
        """What ``other`` holds beyond this authority, or None if this covers it."""
        for space in sorted(set(self.per_space) | set(other.per_space), key=lambda s: s or ""):
            extra = self.at(space).first_excess(other.at(space))
            if extra is not None:
                where = f"in space {space}" if space else "in every space"
                return Excess(
                    f"it would hold {extra!r} {where}, which you do not hold there", extra
                )
        if self.environments is not None and (
            other.environments is None or not other.environments <= self.environments
        ):
            reach = ", ".join(sorted(other.environments or {"every environment"}))
            return Excess(f"it would reach {reach}, beyond your environment")
        if self.networks and not _within(other.networks, self.networks):
            return Excess("it would accept addresses your credential's IP allow-list does not")
        if self.expires_at is not None and (
            other.expires_at is None or other.expires_at > self.expires_at
        ):
            until = f"{self.expires_at:%Y-%m-%dT%H:%M:%SZ}"
            return Excess(f"it would outlive your credential, which expires at {until}")
        return None

    def covers(self, other: Authority) -> bool:
        return self.excess(other) is None


def _within(inner: tuple[IPNetwork, ...], outer: tuple[IPNetwork, ...]) -> bool:
    if not inner:
        return False
    return all(
        any(n.version == o.version and n.subnet_of(o) for o in outer)  # type: ignore[arg-type]
        for n in inner
    )


@dataclass(frozen=True, slots=True)
class Bounds:
    """What the operator set on a credential, which its tenant may only tighten.

    Each is None where the operator set nothing (the tenant's own setting, or none).
    """

    expires_at: datetime | None = None
    ip_allow: tuple[str, ...] | None = None
    space_allow: tuple[str, ...] | None = None

    def loosened(
        self,
        expires_at: datetime | None,
        ip_allow: tuple[str, ...],
        space_allow: tuple[str, ...],
    ) -> str | None:
        """What these settings loosen of the operator's, as a sentence naming the field,
        or None when each is as tight as the operator's or tighter: an expiry no later,
        an IP allow-list whose every block lies inside one of the operator's, a space
        allow-list within the operator's (an empty list means every address or space)."""
        if self.expires_at is not None and (expires_at is None or expires_at > self.expires_at):
            until = f"{self.expires_at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
            return (
                f"Removing or extending the expiry the operator set on this key (expires_at "
                f"{until}; an earlier one is yours to set)"
            )
        if self.ip_allow is not None and not _within(networks(ip_allow), networks(self.ip_allow)):
            return (
                f"Widening or clearing the IP allow-list the operator set on this key (ip_allow "
                f"{', '.join(self.ip_allow)}; blocks inside it are yours to choose)"
            )
        if self.space_allow is not None and not (
            space_allow and set(space_allow) <= set(self.space_allow)
        ):
            return (
                f"Widening or clearing the space allow-list the operator set on this key "
                f"(space_allow {', '.join(self.space_allow)}; a subset is yours to choose)"
            )
        return None


def require_covers(actor: Authority, result: Authority, what: str) -> None:
    """Refuse, naming the rule, when ``result`` would confer more than ``actor`` holds."""
    excess = actor.excess(result)
    if excess is not None:
        raise ExceedsAuthority(
            f"{what} refused: {excess.reason}. Nobody can create or change anything that "
            "confers more than they hold.",
            excess.scope,
        )


def require_held(actor: Authority, space_id: str, scope: str, what: str) -> None:
    """Refuse a change to one space unless ``actor`` holds ``scope`` in that space: a
    role of another space, or a key kept to another, reaches no further."""
    if not actor.at(space_id).grants(scope):
        raise ExceedsAuthority(
            f"{what} refused: it needs {scope!r} in space {space_id}, which you do not hold "
            "there. A role or a key kept to some spaces changes only those.",
            scope,
        )


def require_undoes(actor: Authority, author: Authority | None, what: str) -> None:
    """Refuse undoing a restriction (bringing back a space someone archived) unless
    ``actor`` covers what its ``author`` holds: what an owner stopped, only an owner
    restarts. An owner (``owner:*`` in every space) or the operator may always; an
    author unknown (``None``: a restriction made before apiward recorded it) leaves it
    to them."""
    if actor.everywhere().grants(OWNER_POWERS):
        return
    if author is None:
        raise ExceedsAuthority(
            f"{what} refused: who did it was not recorded, so only an owner or the "
            "operator undoes it.",
            OWNER_POWERS,
        )
    excess = actor.excess(author)
    if excess is not None:
        raise ExceedsAuthority(
            f"{what} refused: the user who did it holds more than you ({excess.reason}). "
            "Only someone holding at least as much undoes it.",
            excess.scope,
        )
