"""Networks, never addresses: the /24 and /48 a request is counted under, and the
HyperLogLog that estimates a day's distinct networks past the exact cap."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apiward.core.addresses import (
    EXACT_CAP,
    REGISTERS,
    AddressUse,
    Overflow,
    Sketch,
    figures,
    prefix_of,
    sketch_of,
)

BOUND = 0.15
"""The relative error every estimate stays within (about 4.5 standard errors of
1.04/sqrt(1024)); docs/keeping-keys-healthy.md states it."""


@pytest.mark.parametrize(
    ("ip", "prefix"),
    [
        ("203.0.113.7", "203.0.113.0/24"),
        ("203.0.113.255", "203.0.113.0/24"),
        ("10.1.2.3", "10.1.2.0/24"),
        ("::ffff:192.0.2.7", "192.0.2.0/24"),  # IPv4-mapped: the IPv4 address it maps
        ("::ffff:c000:0207", "192.0.2.0/24"),
        ("2001:db8:abcd:12::1", "2001:db8:abcd::/48"),
        ("2001:DB8:ABCD:ffff:ffff::9", "2001:db8:abcd::/48"),
        ("fe80::1%eth0", "fe80::/48"),
        ("::1", "::/48"),
        ("not an address", None),
        ("", None),
        ("203.0.113", None),
    ],
)
def test_an_address_is_counted_under_its_network_only(ip: str, prefix: str | None) -> None:
    assert prefix_of(ip) == prefix


@given(st.ip_addresses(v=4))
def test_every_ipv4_address_of_a_24_shares_its_prefix(ip: object) -> None:
    text = str(ip)
    mapped = f"::ffff:{text}"
    assert prefix_of(text) == prefix_of(mapped)
    assert prefix_of(text) == ".".join(text.split(".")[:3]) + ".0/24"


@given(st.ip_addresses(v=6))
def test_a_prefix_keeps_no_more_than_48_bits_of_an_ipv6_address(ip: object) -> None:
    prefix = prefix_of(str(ip))
    assert prefix is not None
    assert prefix.endswith("/48") or "." in prefix  # mapped addresses are IPv4's


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=1, max_value=20_000), st.integers(min_value=0, max_value=2**32))
def test_the_estimate_stays_within_its_stated_bound(n: int, salt: int) -> None:
    sketch = sketch_of(f"{salt}:{i}" for i in range(n))
    assert abs(sketch.estimate() - n) <= max(BOUND * n, 2)


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=0, max_value=3000), st.integers(min_value=0, max_value=3000))
def test_merged_sketches_equal_the_sketch_of_the_union(a: int, overlap: int) -> None:
    left = [f"l{i}" for i in range(a)]
    right = [f"l{i}" for i in range(min(overlap, a))] + [f"r{i}" for i in range(overlap)]
    merged = sketch_of(left)
    merged.merge(sketch_of(right))
    assert merged.registers == sketch_of(left + right).registers


def test_a_sketch_is_a_fixed_kibibyte_and_refuses_another_size() -> None:
    assert len(Sketch().registers) == REGISTERS == 1024
    with pytest.raises(ValueError, match="1024 registers"):
        Sketch(b"\x00" * 10)


def _use(prefix: str, count: int, country: str | None = None) -> AddressUse:
    return AddressUse(1, "org", "live", "key", prefix, country, count)


def test_a_day_without_overflow_is_counted_exactly() -> None:
    found = figures(
        1, [_use("10.0.0.0/24", 3, "FR"), _use("10.0.1.0/24", 5, "DE"), _use("::/48", 1)], None
    )
    assert (found.networks, found.exact, found.countries, found.requests) == (3, True, 2, 9)
    assert [n.prefix for n in found.top] == ["10.0.1.0/24", "10.0.0.0/24", "::/48"]


def test_no_country_known_is_none_not_zero() -> None:
    assert figures(1, [_use("10.0.0.0/24", 3)], None).countries is None


def test_a_day_past_the_cap_is_estimated_over_kept_and_overflowed_networks() -> None:
    kept = [_use(f"10.0.{i}.0/24", 2, "FR") for i in range(EXACT_CAP)]
    over = Overflow(1, "org", "live", "key", requests=500, countries={"US", "FR"})
    for i in range(400):
        over.sketch.add(f"10.1.{i % 256}.{i // 256}")
    found = figures(1, kept, over)
    assert not found.exact
    assert abs(found.networks - (EXACT_CAP + 400)) <= BOUND * (EXACT_CAP + 400)
    assert found.countries == 2
    assert found.requests == 2 * EXACT_CAP + 500
    assert found.unlisted_requests == 500
