"""Allowed requests counted once on the request path reach the three tallies exactly as
if each had counted every request itself (``apiward.services.allowed``)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from apiward.core.models import CredentialKind, Principal, RequestContext
from apiward.core.scopes import ScopeSet
from apiward.services import allowed as allowed_module
from apiward.services.addresses import AddressTally
from apiward.services.allowed import AllowedTally
from apiward.services.analytics import Verifications
from apiward.services.scope_usage import ScopeTally
from tests.conftest import examples

_request = st.tuples(
    st.integers(0, 3 * 86400),  # seconds into the run: minutes and days apart
    st.sampled_from(["org_a", "org_b"]),
    st.sampled_from([CredentialKind.API_KEY, CredentialKind.ACCESS_TOKEN]),
    st.sampled_from(["key_1", "key_2", "tok_1"]),
    st.sampled_from([None, "client_1"]),
    st.sampled_from([None, "/v1/things", "/v1/other"]),
    st.one_of(
        st.none(),
        st.builds("10.0.{}.{}".format, st.integers(0, 80), st.integers(0, 3)),
        st.sampled_from(["2001:db8::1", "2001:db8:1::1", "::ffff:10.0.0.1", "not-an-ip"]),
    ),
    st.sampled_from([None, "NL", "US"]),
    st.lists(st.sampled_from(["keys:read", "keys:write", "invoices:*", "*"]), max_size=3),
)


def _tallies(clock: list[float]) -> tuple[Verifications, ScopeTally, AddressTally]:
    def wall() -> float:
        return clock[0]

    return Verifications(wall), ScopeTally(wall), AddressTally(wall)


def _drained(tallies: tuple[Verifications, ScopeTally, AddressTally]) -> tuple[Any, ...]:
    verifications, scopes, addresses = tallies
    uses, overflows = addresses.drain()
    return (
        sorted(map(repr, verifications.drain())),
        sorted(map(repr, scopes.drain())),
        sorted(map(repr, uses)),
        sorted(repr((o.day, o.org_id, o.credential_id, o.requests)) for o in overflows),
    )


@settings(max_examples=examples(150), deadline=None)
@given(requests=st.lists(_request, max_size=120), limit=st.sampled_from([2, 4096]))
def test_the_tallies_count_alike_through_the_one_count(
    requests: list[tuple[Any, ...]], limit: int
) -> None:
    base = 1_800_000_000.0
    clock = [base]
    direct, through = _tallies(clock), _tallies(clock)
    front = AllowedTally(*through)
    original, allowed_module.LIMIT = allowed_module.LIMIT, limit  # spills mid-way too
    try:
        for at, org, kind, credential, client, route, ip, country, scopes in requests:
            clock[0] = base + at
            principal = Principal(
                org_id=org,
                environment="live",
                space_id="spc_1",
                user_id="usr_1",
                scopes=ScopeSet(["*"]),
                credential_id=credential,
                credential_kind=kind,
                client_id=client,
                context=RequestContext(ip=ip, route=route, country=country),
            )
            verifications, scope_tally, address_tally = direct
            verifications.count(
                org,
                "live",
                "VALID",
                key_id=credential if kind is CredentialKind.API_KEY else None,
                client_id=client,
                route=route,
            )
            address_tally.count(principal)
            if scopes:
                scope_tally.count(principal, scopes)
            front.count(principal, scopes)
    finally:
        allowed_module.LIMIT = original
    assert _drained(through) == _drained(direct)
