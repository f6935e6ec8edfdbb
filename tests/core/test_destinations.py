"""Where deliveries may go: an IPv6 address that reaches an IPv4 one is judged by that
IPv4 address, whichever way it embeds it."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from apiward.core.destinations import Destinations, embedded_ipv4

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address

NOT_PUBLIC_V4 = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/29",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
]


@st.composite
def not_public_v4(draw: st.DrawFn) -> V4:
    network = draw(st.sampled_from(NOT_PUBLIC_V4))
    offset = draw(st.integers(0, network.num_addresses - 1))
    return V4(int(network.network_address) + offset)


def _mapped(v4: V4, _: int) -> V6:  # RFC 4291 2.5.5.2, ::ffff:0:0/96
    return V6((0xFFFF << 32) | int(v4))


def _translated(v4: V4, _: int) -> V6:  # RFC 2765 / RFC 6145, ::ffff:0:0:0/96
    return V6((0xFFFF << 48) | int(v4))


def _compatible(v4: V4, _: int) -> V6:  # RFC 4291 2.5.5.1, ::/96 (deprecated)
    return V6(int(v4))


def _nat64(v4: V4, _: int) -> V6:  # RFC 6052's well-known prefix, 64:ff9b::/96
    return V6((0x64FF9B << 96) | int(v4))


def _6to4(v4: V4, rest: int) -> V6:  # RFC 3056, 2002:V4ADDR::/48 and any subnet and host
    return V6((0x2002 << 112) | (int(v4) << 80) | (rest & ((1 << 80) - 1)))


def _teredo_client(v4: V4, rest: int) -> V6:  # RFC 4380 4: the client's address, inverted
    server, flags_port = rest & 0xFFFFFFFF, (rest >> 32) & 0xFFFFFFFF
    return V6((0x20010000 << 96) | (server << 64) | (flags_port << 32) | (int(v4) ^ 0xFFFFFFFF))


def _teredo_server(v4: V4, rest: int) -> V6:  # RFC 4380 4: the Teredo server's address
    return V6((0x20010000 << 96) | (int(v4) << 64) | (rest & ((1 << 64) - 1)))


EMBEDDINGS: list[Callable[[V4, int], V6]] = [
    _mapped,
    _translated,
    _compatible,
    _nat64,
    _6to4,
    _teredo_client,
    _teredo_server,
]


@given(
    v4=not_public_v4(),
    embed=st.sampled_from(EMBEDDINGS),
    rest=st.integers(0, (1 << 128) - 1),
)
def test_every_ipv6_embedding_of_a_private_ipv4_address_is_refused(
    v4: V4, embed: Callable[[V4, int], V6], rest: int
) -> None:
    """A private, loopback, link-local or reserved IPv4 address is refused however an
    IPv6 address carries it."""
    address = embed(v4, rest)
    assert not Destinations().permits(v4)
    assert not Destinations().permits(address), f"{address} ({embed.__name__} of {v4})"


@given(v4=not_public_v4(), embed=st.sampled_from(EMBEDDINGS[:5]))
def test_an_allowed_ipv4_network_allows_its_embeddings(
    v4: V4, embed: Callable[[V4, int], V6]
) -> None:
    """APIWARD_WEBHOOK_ALLOWED_NETWORKS names IPv4 networks once: the IPv6 spellings
    that reach them are allowed with them (but ``::`` and ``::1``, the unspecified and
    loopback addresses, which no IPv4-compatible spelling of 0.0.0.0 or 0.0.0.1 is)."""
    assume(embed is not _compatible or int(v4) > 1)
    allowed = Destinations((ipaddress.ip_network(f"{v4}/32"),))
    assert allowed.permits(embed(v4, 0))


@pytest.mark.parametrize(
    ("address", "inside"),
    [
        ("::ffff:0:7f00:1", "127.0.0.1"),
        ("::ffff:0:a9fe:a9fe", "169.254.169.254"),
        ("::ffff:7f00:1", "127.0.0.1"),
        ("64:ff9b::a00:1", "10.0.0.1"),
        ("2002:c0a8:1::1", "192.168.0.1"),
        ("::a00:1", "10.0.0.1"),
    ],
)
def test_the_embedded_address(address: str, inside: str) -> None:
    assert embedded_ipv4(V6(address)) == V4(inside)
    assert not Destinations().permits(V6(address))


@pytest.mark.parametrize(
    "address",
    ["::ffff:0:5db8:d70e", "::ffff:5db8:d70e", "64:ff9b::5db8:d70e", "2002:5db8:d70e::1"],
)
def test_an_embedding_of_a_public_address_is_public(address: str) -> None:
    assert Destinations().permits(V6(address))
