"""Impact before a change, from the counts kept: exact when they tell, a range when not."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from apiward.core.errors import InvalidInput
from apiward.core.impact import Proposal, impact, proposal, window

NOW = datetime(2026, 12, 7, 15, 30, tzinfo=UTC)
SINCE, UNTIL = window(NOW)
ROUTES = {"/v1/invoices": 700, "/v1/customers": 300}
SCOPES = {"invoices:read": 700, "customers:read": 300, "customers:write": 40}
NETWORKS = {"10.0.0.0/24": 600, "10.0.1.0/24": 300, "2001:db8:1::/48": 100}


def test_the_window_is_today_and_the_six_days_before() -> None:
    assert datetime(2026, 12, 1, tzinfo=UTC) == SINCE
    assert UNTIL == NOW


def test_revoking_refuses_every_request_by_route() -> None:
    found = impact(SINCE, UNTIL, ROUTES, SCOPES, NETWORKS, 0, Proposal())
    assert (found.requests, found.refused_at_least, found.refused_at_most) == (1000, 1000, 1000)
    assert [(r.name, r.requests) for r in found.by_route] == [
        ("/v1/invoices", 700),
        ("/v1/customers", 300),
    ]
    assert found.exact


def test_dropping_one_scope_refuses_exactly_its_requests() -> None:
    change = proposal("invoices:read,customers:write", None)
    found = impact(SINCE, UNTIL, ROUTES, SCOPES, NETWORKS, 0, change)
    assert (found.refused_at_least, found.refused_at_most) == (300, 300)
    assert [(r.name, r.requests) for r in found.by_scope] == [("customers:read", 300)]


def test_dropping_two_scopes_is_a_range_and_a_wildcard_keeps_what_it_covers() -> None:
    found = impact(SINCE, UNTIL, ROUTES, SCOPES, NETWORKS, 0, proposal("invoices:*", None))
    assert (found.refused_at_least, found.refused_at_most) == (300, 340)
    assert not found.exact


def test_an_allow_list_refuses_networks_outside_it_and_is_unsure_of_partial_ones() -> None:
    change = proposal(None, "10.0.0.0/24, 10.0.1.128/25")
    found = impact(SINCE, UNTIL, ROUTES, SCOPES, NETWORKS, 20, change)
    assert [(r.name, r.verdict) for r in found.by_network] == [
        ("2001:db8:1::/48", "refused"),
        ("10.0.1.0/24", "unknown"),
    ]
    assert (found.refused_at_least, found.refused_at_most) == (100, 420)
    assert found.unlisted_requests == 20


def test_an_allow_list_covering_every_network_refuses_nothing() -> None:
    found = impact(SINCE, UNTIL, ROUTES, SCOPES, NETWORKS, 0, proposal(None, "0.0.0.0/0,::/0"))
    assert (found.refused_at_least, found.refused_at_most, found.by_network) == (0, 0, [])


@pytest.mark.parametrize(
    ("scopes", "ip_allow", "message"),
    [
        (None, "10.0.0.0/33", "ip_allow"),
        (None, "example.com", "ip_allow"),
        (None, ",".join(f"10.0.{i}.0/24" for i in range(101)), "at most 100 networks"),
        (",".join(f"s{i}:read" for i in range(101)), None, "at most 100 scopes"),
        ("not a scope!", None, "scope"),
    ],
)
def test_a_bad_proposal_is_a_clear_400(
    scopes: str | None, ip_allow: str | None, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        proposal(scopes, ip_allow)


def test_the_sentence_says_all_a_number_or_a_range() -> None:
    from apiward.core.impact import sentence

    revoke = impact(SINCE, UNTIL, ROUTES, SCOPES, NETWORKS, 0, Proposal())
    assert sentence(revoke, "revoking it") == (
        "In the last 7 days this key made 1,000 requests; revoking it would have refused all "
        "of them."
    )
    one = impact(SINCE, UNTIL, ROUTES, SCOPES, NETWORKS, 0, proposal("invoices:read", None))
    assert sentence(one).endswith(
        "made 1,000 requests; between 300 and 340 would have been refused."
    )
    none = impact(SINCE, UNTIL, {}, {}, {}, 0, Proposal())
    assert sentence(none, "revoking it") == (
        "In the last 7 days this key made 0 requests: revoking it would have refused none."
    )
