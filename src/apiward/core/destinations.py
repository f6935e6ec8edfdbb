"""Where outgoing requests (webhook deliveries) may go: public addresses, and the
networks an operator allows. Anyone who can register a webhook chooses its URL; without
this rule they could make apiward post to its own machine, its database, a cloud
metadata service or anything else on the private network (SSRF).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
NAT64 = ipaddress.ip_network("64:ff9b::/96")
"""RFC 6052's well-known prefix: on a NAT64 network it reaches the IPv4 address inside."""
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
"""RFC 8215's local-use NAT64 prefix: a private network by definition."""
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
"""RFC 4291's deprecated IPv4-compatible addresses (``::127.0.0.1``)."""
IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")
"""RFC 2765's IPv4-translated addresses (``::ffff:0:127.0.0.1``), which a stateless
translator (RFC 6145) turns into the IPv4 address inside."""


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, where one reaches it: IPv4-mapped
    (RFC 4291), IPv4-translated (RFC 2765), IPv4-compatible, NAT64 (RFC 6052's
    well-known prefix) and 6to4 (RFC 3056). Teredo (RFC 4380, ``2001::/32``) carries
    two IPv4 addresses and is never permitted unless allowed. A network-specific NAT64
    prefix (RFC 6052 2.2) cannot be told from a plain address: a deployment that runs
    one blocks its private range at its own firewall."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if (
        address in NAT64
        or address in IPV4_TRANSLATED
        or (address in IPV4_COMPATIBLE and int(address) > 1)
    ):
        return ipaddress.IPv4Address(address.packed[-4:])
    return None


@dataclass(frozen=True, slots=True)
class Destinations:
    allowed: tuple[IPNetwork, ...] = ()
    """Networks reachable although not public (a receiver on the private network)."""

    @classmethod
    def parse(cls, networks: Iterable[str]) -> Destinations:
        """From CIDR blocks (``10.1.0.0/16``); raises ``ValueError`` for a bad one."""
        return cls(tuple(ipaddress.ip_network(n.strip(), strict=False) for n in networks))

    def permits(self, address: IPAddress) -> bool:
        """A global unicast address, or one in an allowed network. An IPv6 address that
        stands for an IPv4 one is judged by the IPv4 address; site-local and local-use
        NAT64 and Teredo addresses are never global (whatever the Python version says)."""
        if any(address in network for network in self.allowed):
            return True
        if isinstance(address, ipaddress.IPv6Address):
            inner = embedded_ipv4(address)
            if inner is not None:
                return self.permits(inner)
            if address.is_site_local or address in NAT64_LOCAL or address.teredo is not None:
                return False
        return address.is_global and not address.is_multicast

    def loopback_allowed(self) -> bool:
        return all(self.permits(network.network_address) for network in LOOPBACK)
