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


@dataclass(frozen=True, slots=True)
class Destinations:
    allowed: tuple[IPNetwork, ...] = ()
    """Networks reachable although not public (a receiver on the private network)."""

    @classmethod
    def parse(cls, networks: Iterable[str]) -> Destinations:
        """From CIDR blocks (``10.1.0.0/16``); raises ``ValueError`` for a bad one."""
        return cls(tuple(ipaddress.ip_network(n.strip(), strict=False) for n in networks))

    def permits(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.allowed):
            return True
        return address.is_global and not address.is_multicast

    def loopback_allowed(self) -> bool:
        return all(self.permits(network.network_address) for network in LOOPBACK)
