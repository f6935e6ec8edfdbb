"""Scope algebra: parsing, normalisation, wildcard grants and intersection."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from apiward.core.errors import InvalidInput
from apiward.core.scopes import RESERVED_RESOURCES, ScopeSet, intersect, normalise, parse

RESOURCES = ("customers", "invoices", "keys", "owner", "operator", "*")
ACTIONS = ("read", "write", "*")

# Every scope over a small alphabet: concrete, wildcard in either half, ``*:*`` and bare ``*``.
scopes = st.one_of(
    st.just("*"),
    st.builds(lambda r, a: f"{r}:{a}", st.sampled_from(RESOURCES), st.sampled_from(ACTIONS)),
)
scope_lists = st.lists(scopes, max_size=6)
scope_sets = scope_lists.map(ScopeSet)

ALL_SCOPES = ["*", *(f"{r}:{a}" for r in RESOURCES for a in ACTIONS)]


def grants_of(scope_set: ScopeSet) -> set[str]:
    """Everything over the small alphabet that ``scope_set`` grants."""
    return {s for s in ALL_SCOPES if scope_set.grants(s)}


# --- parse --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("customers:read", ("customers", "read")),
        ("customers:*", ("customers", "*")),
        ("*:read", ("*", "read")),
        ("*:*", ("*", "*")),
        ("*", ("*", "*")),
        ("v1/customers:read-all", ("v1/customers", "read-all")),
        ("a.b_c:d", ("a.b_c", "d")),
        ("r" * 64 + ":" + "a" * 64, ("r" * 64, "a" * 64)),
    ],
)
def test_parse_accepts_well_formed_scopes(scope: str, expected: tuple[str, str]) -> None:
    """Well-formed scopes (wildcards, allowed punctuation, 64-char parts) parse to a pair."""
    assert parse(scope) == expected


@pytest.mark.parametrize(
    "scope",
    [
        "",
        "a",
        "a:b:c",
        "a b:c",
        ":read",
        "customers:",
        ":",
        "**",
        "*:",
        ":*",
        "cust*:read",
        "customers:re*d",
        "_customers:read",
        "customers:-read",
        " customers:read",
        "customers:read ",
        "r" * 65 + ":read",
        "customers:" + "a" * 65,
        "clé:read",
    ],
)
def test_parse_rejects_malformed_scopes_with_a_hint(scope: str) -> None:
    """Malformed scopes raise InvalidInput whose message says to use 'resource:action'."""
    with pytest.raises(InvalidInput, match="resource:action"):
        parse(scope)


@pytest.mark.parametrize("value", [None, 42, b"customers:read", ("customers", "read"), ["*"]])
def test_parse_rejects_non_strings(value: Any) -> None:
    """A non-str scope raises InvalidInput (not TypeError) with the 'resource:action' hint."""
    with pytest.raises(InvalidInput, match="resource:action"):
        parse(value)


def test_parse_rejects_trailing_newline() -> None:
    """A scope with a trailing newline is malformed and raises InvalidInput."""
    with pytest.raises(InvalidInput):
        parse("customers:read\n")


@given(st.text())
@example("customers:read")
@example("*")
@example("")
def test_parse_fuzz_returns_a_pair_or_raises_invalid_input(text: str) -> None:
    """On arbitrary text, parse returns a (resource, action) pair or raises InvalidInput."""
    try:
        result = parse(text)
    except InvalidInput as exc:
        message = str(exc)
        result = None
    if result is None:
        assert "resource:action" in message
    else:
        assert isinstance(result, tuple)
        assert len(result) == 2
        assert all(isinstance(part, str) and part for part in result)


# --- normalise ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scopes_in", "expected"),
    [
        ([], []),
        (["customers:read", "customers:read"], ["customers:read"]),
        (["invoices:read", "customers:read"], ["customers:read", "invoices:read"]),
        (["customers:read", "customers:*"], ["customers:*"]),
        (["customers:read", "*:read", "invoices:write"], ["*:read", "invoices:write"]),
        (["*:*"], ["*"]),
        (["*", "*:*", "customers:read", "keys:*"], ["*"]),
        (["customers:*", "*:read"], ["*:read", "customers:*"]),
    ],
)
def test_normalise_dedupes_sorts_and_drops_implied(
    scopes_in: list[str], expected: list[str]
) -> None:
    """normalise removes duplicates and scopes implied by another member, and sorts."""
    assert normalise(scopes_in) == expected


def test_normalise_rejects_malformed_member() -> None:
    """normalise validates every member and raises InvalidInput on a malformed one."""
    with pytest.raises(InvalidInput, match="resource:action"):
        normalise(["customers:read", "customers"])


@given(scope_lists)
def test_normalise_is_idempotent(scope_list: list[str]) -> None:
    """normalise(normalise(x)) == normalise(x)."""
    once = normalise(scope_list)
    assert normalise(once) == once


@given(scope_lists)
def test_normalise_preserves_what_is_granted(scope_list: list[str]) -> None:
    """ScopeSet(normalise(x)) grants exactly what ScopeSet(x) grants."""
    assert grants_of(ScopeSet(normalise(scope_list))) == grants_of(ScopeSet(scope_list))


@given(scope_lists)
def test_normalise_output_has_no_redundant_member(scope_list: list[str]) -> None:
    """After normalise, removing any member grants strictly less."""
    normal = normalise(scope_list)
    full = grants_of(ScopeSet(normal))
    for scope in normal:
        rest = [s for s in normal if s != scope]
        assert grants_of(ScopeSet(rest)) < full


# --- grants -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("held", "wanted", "granted"),
    [
        (["*"], "customers:read", True),
        (["*"], "invoices:write", True),
        (["*"], "anything.at/all:do-it", True),
        (["*"], "*", True),
        (["*:*"], "keys:write", True),
        (["customers:*"], "customers:read", True),
        (["customers:*"], "customers:write", True),
        (["customers:*"], "invoices:read", False),
        (["customers:*"], "*:read", False),
        (["customers:*"], "*", False),
        (["*:read"], "invoices:read", True),
        (["*:read"], "customers:read", True),
        (["*:read"], "invoices:write", False),
        (["*:read"], "invoices:*", False),
        (["customers:read"], "customers:read", True),
        (["customers:read"], "customers:write", False),
        (["customers:read"], "customers:*", False),
        (["customers:read", "*:write"], "invoices:write", True),
        ([], "customers:read", False),
    ],
)
def test_grants_wildcard_table(held: list[str], wanted: str, granted: bool) -> None:
    """Wildcards in either half (and bare '*') grant exactly the matching scopes."""
    assert ScopeSet(held).grants(wanted) is granted


def test_grants_rejects_malformed_scope_when_not_held() -> None:
    """Asking a non-wildcard set about a malformed scope raises InvalidInput."""
    with pytest.raises(InvalidInput):
        ScopeSet(["customers:read"]).grants("customers")


def test_scope_set_constructor_validates() -> None:
    """ScopeSet raises InvalidInput on a malformed member."""
    with pytest.raises(InvalidInput, match="resource:action"):
        ScopeSet(["customers:read", "a:b:c"])


@given(scope_sets, scopes)
def test_every_member_is_granted(scope_set: ScopeSet, scope: str) -> None:
    """A set grants each of its own members, and a set with s added grants s."""
    assert all(scope_set.grants(s) for s in scope_set)
    assert ScopeSet([*scope_set, scope]).grants(scope)


@given(scope_sets, st.lists(scopes, max_size=5))
def test_first_missing_and_grants_all_agree_with_grants(
    scope_set: ScopeSet, wanted: list[str]
) -> None:
    """first_missing is the first scope not granted (None if all are); grants_all agrees."""
    not_granted = [s for s in wanted if not scope_set.grants(s)]
    assert scope_set.first_missing(wanted) == (not_granted[0] if not_granted else None)
    assert scope_set.grants_all(wanted) is (not not_granted)


@pytest.mark.parametrize(
    ("held", "wanted", "missing"),
    [
        (["customers:read"], ["customers:read", "invoices:read", "keys:read"], "invoices:read"),
        (["*:read"], ["customers:read", "invoices:read"], None),
        (["customers:*"], [], None),
        ([], ["*"], "*"),
    ],
)
def test_first_missing_table(held: list[str], wanted: list[str], missing: str | None) -> None:
    """first_missing returns the first scope, in the caller's order, that is not granted."""
    assert ScopeSet(held).first_missing(wanted) == missing


# --- intersect ----------------------------------------------------------------------


@given(scope_sets, scope_sets, scopes)
def test_intersection_grants_what_both_grant(a: ScopeSet, b: ScopeSet, scope: str) -> None:
    """A.intersect(B).grants(s) == A.grants(s) and B.grants(s)."""
    assert a.intersect(b).grants(scope) == (a.grants(scope) and b.grants(scope))


@given(scope_sets, scope_sets)
def test_intersection_is_commutative(a: ScopeSet, b: ScopeSet) -> None:
    """A ∩ B and B ∩ A grant the same scopes (and are equal as sets)."""
    assert grants_of(a.intersect(b)) == grants_of(b.intersect(a))
    assert a.intersect(b) == b.intersect(a)


@given(scope_sets)
def test_intersection_identities(a: ScopeSet) -> None:
    """A ∩ {'*'} == A without its reserved scopes, A ∩ A == A and A ∩ {} is empty."""
    unreserved = ScopeSet(s for s in a if parse(s)[0] not in RESERVED_RESOURCES)
    assert a.intersect(ScopeSet(["*"])) == unreserved
    assert a.intersect(a) == a
    assert not a.intersect(ScopeSet([]))


@given(scope_lists, scope_lists)
def test_module_intersect_matches_method(a: list[str], b: list[str]) -> None:
    """The module-level intersect(a, b) equals ScopeSet(a).intersect(ScopeSet(b))."""
    assert intersect(a, b) == ScopeSet(a).intersect(ScopeSet(b))


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (["customers:*"], ["*:read"], ["customers:read"]),
        (["*"], ["invoices:write"], ["invoices:write"]),
        (["customers:read"], ["invoices:read"], []),
        (["customers:*", "keys:read"], ["*:read", "keys:*"], ["customers:read", "keys:read"]),
        (["*:read", "*:write"], ["customers:*"], ["customers:read", "customers:write"]),
    ],
)
def test_intersect_table(a: list[str], b: list[str], expected: list[str]) -> None:
    """Intersection computes the meet of patterns, normalised."""
    assert ScopeSet(a).intersect(ScopeSet(b)).as_list() == expected


# --- ScopeSet value behaviour -------------------------------------------------------


@given(scope_lists)
def test_scope_set_iterates_normalised_members(scope_list: list[str]) -> None:
    """Iteration, as_list and repr all show the normalised members."""
    scope_set = ScopeSet(scope_list)
    assert list(scope_set) == scope_set.as_list() == normalise(scope_list)
    assert repr(scope_set) == f"ScopeSet({normalise(scope_list)!r})"
    assert bool(scope_set) is bool(scope_list)


def test_scope_set_equality_and_hash_ignore_spelling() -> None:
    """Sets that normalise to the same patterns are equal, hash equal, and not equal to lists."""
    a = ScopeSet(["*:*"])
    b = ScopeSet(["*", "customers:read"])
    assert a == b
    assert hash(a) == hash(b)
    assert a != ["*"]
    assert ScopeSet(["customers:read"]) != ScopeSet(["customers:*"])


def test_scope_set_as_list_is_a_copy() -> None:
    """Mutating the list from as_list does not change the set."""
    scope_set = ScopeSet(["customers:read"])
    scope_set.as_list().append("invoices:read")
    assert scope_set.as_list() == ["customers:read"]
    assert re.fullmatch(r"ScopeSet\(\['customers:read'\]\)", repr(scope_set))


def test_a_wildcard_set_still_rejects_a_malformed_scope() -> None:
    """`ScopeSet(['*']).grants` validates its argument like any other set."""
    with pytest.raises(InvalidInput):
        ScopeSet(["*"]).grants("not a scope")


# --- reserved resources and inclusion -------------------------------------------------


@pytest.mark.parametrize(
    ("held", "wanted", "granted"),
    [
        (["*"], "owner:manage", False),
        (["*:*"], "operator:tiers", False),
        (["*:manage"], "owner:manage", False),
        (["owner:*"], "owner:manage", True),
        (["operator:*"], "operator:credits", True),
        (["operator:*"], "keys:read", False),
        (["*", "owner:*"], "owner:manage", True),
    ],
)
def test_no_wildcard_grants_a_reserved_resource(
    held: list[str], wanted: str, granted: bool
) -> None:
    assert ScopeSet(held).grants(wanted) is granted


@given(scope_sets, scope_sets)
def test_includes_is_inclusion_of_what_is_granted(a: ScopeSet, b: ScopeSet) -> None:
    assert a.includes(b) == (grants_of(b) <= grants_of(a))
    excess = a.first_excess(b)
    assert (excess is None) == a.includes(b)
    if excess is not None:
        assert b.grants(excess) and not a.grants(excess)


@given(scope_sets, scope_sets, st.sampled_from(ALL_SCOPES))
def test_union_grants_what_either_grants(a: ScopeSet, b: ScopeSet, scope: str) -> None:
    assert a.union(b).grants(scope) == (a.grants(scope) or b.grants(scope))
