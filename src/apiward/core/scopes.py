"""Scope algebra.

A scope is ``resource:action`` (``customers:read``). Either half may be the wildcard
``*``: ``customers:*`` grants every action on customers, ``*:read`` every read, and
``*`` (short for ``*:*``) everything. A set of scopes grants a scope when one of its
members does.

Two resources are reserved: ``owner`` (acting as an owner of the organisation: granting,
changing or removing the owner role, acting on an owner) and ``operator`` (what only the
deployment's operator decides: rate-limit tiers, limits that loosen a plan, credits).
No wildcard covers them (``*`` and ``*:manage`` do not grant ``owner:manage``); only a
pattern naming the resource does (``owner:*``). So a tenant's ``*`` never includes the
operator's powers, and a credential carries an owner's powers only when they were
granted to it by name (``docs/authority.md``).

Effective access is an intersection (docs/compatibility.md: the token's scopes ∩ the
user's role in the target space). ``intersect`` computes it as a set of patterns, so
that ``grants(intersect(a, b), s) == grants(a, s) and grants(b, s)`` for every ``s``.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterable, Iterator

from apiward.core.errors import InvalidInput

WILDCARD = "*"
RESERVED_RESOURCES = frozenset({"owner", "operator"})
_PART = r"[A-Za-z0-9][A-Za-z0-9_.\-/]{0,63}"
_SCOPE = re.compile(rf"^(?:\*|(?:{_PART}|\*):(?:{_PART}|\*))$")

Scope = tuple[str, str]


def parse(scope: str) -> Scope:
    """Parse one scope, raising ``InvalidInput`` with what to fix."""
    if not isinstance(scope, str):
        raise InvalidInput(f"Invalid scope {scope!r}: use 'resource:action'.")
    return _parse(scope)


@functools.lru_cache(maxsize=4096)
def _parse(scope: str) -> Scope:
    if not _SCOPE.fullmatch(scope):
        raise InvalidInput(
            f"Invalid scope {scope!r}: use 'resource:action' (letters, digits, '_', '.', "
            "'-', '/'), with '*' allowed for either part, or '*' alone."
        )
    if scope == WILDCARD:
        return (WILDCARD, WILDCARD)
    resource, action = scope.split(":")
    return (resource, action)


def normalise(scopes: Iterable[str]) -> list[str]:
    """Validate, de-duplicate and sort; drop scopes implied by another member."""
    parsed = {parse(s) for s in scopes}
    kept = {p for p in parsed if not any(q != p and _covers(q, p) for q in parsed)}
    return sorted(_format(p) for p in kept)


def _format(scope: Scope) -> str:
    return WILDCARD if scope == (WILDCARD, WILDCARD) else f"{scope[0]}:{scope[1]}"


def _part_covers(pattern: str, value: str) -> bool:
    return pattern in (WILDCARD, value)


def _covers(pattern: Scope, scope: Scope) -> bool:
    if pattern[0] == WILDCARD and scope[0] in RESERVED_RESOURCES:
        return False
    return _part_covers(pattern[0], scope[0]) and _part_covers(pattern[1], scope[1])


def _part_meet(a: str, b: str) -> str | None:
    if a == WILDCARD:
        return b
    if b == WILDCARD or a == b:
        return a
    return None


def _meet(a: Scope, b: Scope) -> Scope | None:
    if (a[0] == WILDCARD and b[0] in RESERVED_RESOURCES) or (
        b[0] == WILDCARD and a[0] in RESERVED_RESOURCES
    ):
        return None
    resource = _part_meet(a[0], b[0])
    action = _part_meet(a[1], b[1])
    if resource is None or action is None:
        return None
    return (resource, action)


class ScopeSet:
    """An immutable set of scope patterns with fast membership checks."""

    __slots__ = ("_exact", "_patterns", "_strings")

    def __init__(self, scopes: Iterable[str]) -> None:
        self._strings = tuple(normalise(scopes))
        self._patterns = frozenset(parse(s) for s in self._strings)
        self._exact = frozenset(self._strings)

    def __iter__(self) -> Iterator[str]:
        return iter(self._strings)

    def __repr__(self) -> str:
        return f"ScopeSet({list(self._strings)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ScopeSet) and self._patterns == other._patterns

    def __hash__(self) -> int:
        return hash(self._patterns)

    def __bool__(self) -> bool:
        return bool(self._patterns)

    def as_list(self) -> list[str]:
        return list(self._strings)

    def grants(self, scope: str) -> bool:
        """Whether this set grants ``scope`` (which may itself be a pattern)."""
        if scope in self._exact:
            return True
        wanted = parse(scope)
        if WILDCARD in self._exact and wanted[0] not in RESERVED_RESOURCES:
            return True
        return any(_covers(p, wanted) for p in self._patterns)

    def grants_all(self, scopes: Iterable[str]) -> bool:
        return all(self.grants(s) for s in scopes)

    def first_missing(self, scopes: Iterable[str]) -> str | None:
        for scope in scopes:
            if not self.grants(scope):
                return scope
        return None

    def includes(self, other: ScopeSet) -> bool:
        """Whether every scope ``other`` grants, this set grants too."""
        return self.first_excess(other) is None

    def first_excess(self, other: ScopeSet) -> str | None:
        """A pattern of ``other`` that this set does not grant, or None."""
        for pattern in other._strings:
            if not self.grants(pattern):
                return pattern
        return None

    def reserved(self, resource: str) -> ScopeSet:
        """The patterns of this set naming the reserved ``resource``."""
        return ScopeSet(s for s in self._strings if parse(s)[0] == resource)

    def union(self, other: ScopeSet) -> ScopeSet:
        return ScopeSet((*self._strings, *other._strings))

    def intersect(self, other: ScopeSet) -> ScopeSet:
        met = (_meet(a, b) for a in self._patterns for b in other._patterns)
        return ScopeSet(_format(m) for m in met if m is not None)


def intersect(a: Iterable[str], b: Iterable[str]) -> ScopeSet:
    return ScopeSet(a).intersect(ScopeSet(b))


class Catalogue:
    """The protected API's scopes (``APIWARD_API_SCOPES``). Declared, a credential or a
    role may hold only those, patterns over at least one of them (``invoices:*``, ``*``),
    and apiward's own (``own``: managing keys and users, an owner's or the operator's
    powers). Empty, any valid scope goes, as without a catalogue."""

    __slots__ = ("_known", "_own")

    def __init__(self, scopes: Iterable[str] = (), own: Iterable[str] = ()) -> None:
        self._known = tuple(scopes)
        self._own = frozenset(own)

    def check(self, scopes: Iterable[str]) -> None:
        """``InvalidInput`` naming the first scope outside the catalogue, and the
        nearest declared one."""
        if not self._known:
            return
        theirs = [s for s in scopes if s not in self._own and parse(s)[0] not in RESERVED_RESOURCES]
        check_known(theirs, [*self._known, *self._own])


def check_known(scopes: Iterable[str], known: Iterable[str]) -> None:
    """Refuse a scope that is none of ``known`` and, a pattern, grants none of them: a
    typo, most likely (``InvalidInput`` names it and the nearest known scope)."""
    catalogue = sorted(set(known))
    for scope in scopes:
        if any(ScopeSet([scope]).grants(k) for k in catalogue):
            continue
        close = difflib.get_close_matches(scope, catalogue, n=1, cutoff=0.6)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise InvalidInput(f"Unknown scope '{scope}': this API has no such scope.{hint}")
