"""Shared keys noticed: the networks and countries a credential's requests come from.

Addresses are personal data, so none is kept: a request's client address is reduced to
its network, the /24 of an IPv4 address or the /48 of an IPv6 one (an IPv4-mapped IPv6
address, ``::ffff:192.0.2.7``, is the IPv4 address it maps), and only that prefix is
counted, per credential (an API key, or the OAuth client behind a token), UTC day and
prefix, with the country the first request from it was placed in when a country source
is configured (``apiward.adapters.geo``).

Memory and storage per credential and day are bounded: the first ``EXACT_CAP`` prefixes
a process sees for a credential on a day are counted exactly, each with its requests;
the prefixes beyond go into a HyperLogLog ``Sketch`` (Flajolet et al. 2007, with the
small-range correction of Heule et al. 2013) of ``REGISTERS`` one-byte registers, which
merges across processes and flushes by taking each register's maximum. The distinct
count of a day is exact as long as no process overflowed; after that it is the sketch's
estimate over every prefix of the day (stored or overflowed), whose standard error is
1.04/sqrt(1024), about 3.3% (docs/keeping-keys-healthy.md).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from hashlib import blake2b

EXACT_CAP = 64
"""Prefixes counted exactly per credential, day and process."""
PRECISION = 10
REGISTERS = 1 << PRECISION
_ALPHA = 0.7213 / (1 + 1.079 / REGISTERS)
MAX_COUNTRIES = 300
"""More than there are ISO 3166-1 codes: a bound that never cuts a real answer."""


def prefix_of(ip: str) -> str | None:
    """The network ``ip`` is counted under: ``a.b.c.0/24`` or the /48 of IPv6, in
    canonical text; None for anything that is not an address."""
    try:
        address = ipaddress.ip_address(ip.strip().split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv4Address):
        return str(ipaddress.IPv4Network((int(address) & 0xFFFFFF00, 24)))
    return str(ipaddress.IPv6Network((int(address) >> 80 << 80, 48)))


def _hash(prefix: str) -> int:
    """A 64-bit hash every process agrees on (Python's ``hash`` is salted per process)."""
    return int.from_bytes(blake2b(prefix.encode(), digest_size=8).digest(), "big")


class Sketch:
    """A HyperLogLog of ``REGISTERS`` one-byte registers over prefixes."""

    __slots__ = ("registers",)

    def __init__(self, registers: bytes | bytearray | None = None) -> None:
        if registers is not None and len(registers) != REGISTERS:
            raise ValueError(f"A sketch has {REGISTERS} registers, not {len(registers)}.")
        self.registers = bytearray(registers) if registers else bytearray(REGISTERS)

    def add(self, prefix: str) -> None:
        h = _hash(prefix)
        index = h >> (64 - PRECISION)
        rest = h & ((1 << (64 - PRECISION)) - 1)
        rank = (64 - PRECISION) - rest.bit_length() + 1
        if rank > self.registers[index]:
            self.registers[index] = rank

    def merge(self, other: bytes | bytearray | Sketch) -> None:
        theirs = other.registers if isinstance(other, Sketch) else other
        self.registers = bytearray(map(max, self.registers, theirs))

    def estimate(self) -> int:
        registers = self.registers
        raw = _ALPHA * REGISTERS * REGISTERS / sum(2.0**-r for r in registers)
        zeros = registers.count(0)
        if raw <= 2.5 * REGISTERS and zeros:  # linear counting for small cardinalities
            return round(REGISTERS * math.log(REGISTERS / zeros))
        return round(raw)


def sketch_of(prefixes: Iterable[str]) -> Sketch:
    sketch = Sketch()
    for prefix in prefixes:
        sketch.add(prefix)
    return sketch


@dataclass(frozen=True, slots=True)
class AddressUse:
    """``count`` allowed requests of one credential from ``prefix`` on ``day``."""

    day: int
    org_id: str
    environment: str
    credential_id: str
    prefix: str
    country: str | None
    count: int


@dataclass(slots=True)
class Overflow:
    """What one credential's requests on ``day`` beyond the exact prefixes add up to:
    their count, the sketch of their prefixes and their countries."""

    day: int
    org_id: str
    environment: str
    credential_id: str
    requests: int = 0
    sketch: Sketch = field(default_factory=Sketch)
    countries: set[str] = field(default_factory=set)

    def merge(self, other: Overflow) -> None:
        self.requests += other.requests
        self.sketch.merge(other.sketch)
        self.countries |= other.countries
        if len(self.countries) > MAX_COUNTRIES:
            self.countries = set(sorted(self.countries)[:MAX_COUNTRIES])


@dataclass(frozen=True, slots=True)
class Network:
    prefix: str
    country: str | None
    requests: int


@dataclass(frozen=True, slots=True)
class DayFigures:
    """Where a credential's allowed requests came from on one UTC day."""

    day: int
    requests: int
    networks: int
    exact: bool
    """False: ``networks`` is the sketch's estimate (some prefixes were not kept)."""
    countries: int | None
    """None: no country was known for any request (no country source configured)."""
    top: list[Network]
    """The prefixes kept exactly, most requests first."""
    unlisted_requests: int
    """Requests from prefixes beyond the exact ones: counted, their prefix unknown."""


def figures(day: int, uses: Iterable[AddressUse], overflow: Overflow | None) -> DayFigures:
    """One day's figures from its stored rows and its merged overflow (if any)."""
    kept = sorted(uses, key=lambda u: (-u.count, u.prefix))
    countries = {u.country for u in kept if u.country}
    requests = sum(u.count for u in kept)
    if overflow is None or overflow.requests == 0:
        networks, exact, unlisted = len({u.prefix for u in kept}), True, 0
    else:
        every = Sketch(overflow.sketch.registers)
        for u in kept:
            every.add(u.prefix)
        networks = max(every.estimate(), len({u.prefix for u in kept}))
        exact, unlisted = False, overflow.requests
        countries |= overflow.countries
        requests += overflow.requests
    top = [Network(u.prefix, u.country, u.count) for u in kept]
    return DayFigures(
        day, requests, networks, exact, len(countries) if countries else None, top, unlisted
    )
