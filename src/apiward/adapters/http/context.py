"""From a request's raw headers to what it is judged by: the one way every door reads one.

A protected route (``require()``), ``ApiwardMiddleware``, forward auth (routed or on its
fast path) and the verify API all turn a request into a ``RequestContext`` here: its
headers read in one pass over the raw ASGI list (``hear``), then the context made of
them, the peer's address and the deployment's settings (``context_of``). Nothing here
reads a Starlette ``Request``, so a fast path that never builds one reads a request
exactly as a route does (docs/architecture.md, "The edge").
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

from starlette.types import Scope

from apiward.adapters.http.state import state_of
from apiward.core.models import IPNetwork, RequestContext

if TYPE_CHECKING:
    from apiward.adapters.runtime import Runtime

FORWARDED_FOR = b"x-forwarded-for"
AUTHORIZATION = b"authorization"
USER_AGENT = b"user-agent"


class Reading:
    """The header names one deployment reads a request by, as the ASGI scope spells them
    (lower-case bytes): the first line of each of ``first`` (as Starlette's
    ``headers.get``), every line of each of ``every`` (a list split over several lines is
    one list, in order: RFC 9110 section 5.3). A door adds the names of its own."""

    __slots__ = ("country", "every", "first", "runtime", "space", "version")

    def __init__(
        self, runtime: Runtime, *, first: Iterable[bytes] = (), every: Iterable[bytes] = ()
    ) -> None:
        settings = runtime.settings
        self.runtime = runtime
        self.space = settings.space_header.lower().encode()
        self.version = settings.version_header.lower().encode()
        country = runtime.countries.header
        self.country = country.encode() if country else None
        self.first = frozenset(
            {
                AUTHORIZATION,
                USER_AGENT,
                self.space,
                self.version,
                *([self.country] if self.country else []),
                *first,
            }
        )
        self.every = frozenset({FORWARDED_FOR, *every})


_plain: list[Reading] = []


def reading_of(runtime: Runtime) -> Reading:
    """The ``Reading`` of a route, ``require()`` or the middleware: the names every door
    reads (made once per runtime, for the last runtime asked)."""
    if not _plain or _plain[0].runtime is not runtime:
        _plain[:] = [Reading(runtime)]
    return _plain[0]


class Heard(NamedTuple):
    """A request's headers as a ``Reading`` read them (``hear``). A named tuple: made
    once per request, on the hot path."""

    first: dict[bytes, str]
    """The first value of each header of ``Reading.first`` that the request has."""
    every: dict[bytes, list[str]]
    """Every value of each header of ``Reading.every`` that the request has, in order."""

    def joined(self, name: bytes) -> str:
        """Every line of ``name`` as one comma-separated list."""
        return ",".join(self.every.get(name, ()))


def hear(headers: Iterable[tuple[bytes, bytes]], reading: Reading) -> Heard:
    """One pass over a request's raw headers (latin-1, as HTTP/1.1 carries them)."""
    first: dict[bytes, str] = {}
    every: dict[bytes, list[str]] = {}
    wanted, listed = reading.first, reading.every
    for key, value in headers:
        if key in listed:
            every.setdefault(key, []).append(value.decode("latin-1"))
        elif key in wanted and key not in first:
            first[key] = value.decode("latin-1")
    return Heard(first, every)


def context_of(
    heard: Heard,
    reading: Reading,
    *,
    peer: str | None,
    method: str,
    route: str,
    counted_route: str | None,
    request_id: str | None,
) -> RequestContext:
    """What the limits, the analytics and a key's allow-lists judge a request by:
    ``route`` and ``method`` are the request's as the door reads them (forward auth: the
    original request's), ``peer`` the address it came from. The client's address is
    ``X-Forwarded-For``'s only through a trusted proxy (``forwarded_address``), and so is
    a country header (``APIWARD_COUNTRY_HEADER``)."""
    runtime = reading.runtime
    found = heard.first
    trusted = runtime.trusted_proxies
    space = found.get(reading.space)
    requested = found.get(reading.version)
    country = None
    if reading.country is not None:
        told = found.get(reading.country)
        if told:
            via_proxy = peer is not None and bool(trusted) and is_trusted(peer, trusted)
            country = runtime.countries.told(told, via_trusted_proxy=via_proxy)
    return RequestContext(
        route=route,
        counted_route=counted_route,
        method=method,
        ip=forwarded_address(peer, heard.joined(FORWARDED_FOR), trusted),
        user_agent=(found.get(USER_AGENT) or "")[:512] or None,
        request_id=request_id,
        space_id=space.strip()[:64] if space else None,
        api_version=runtime.settings.version(requested).id if requested else None,
        country=country,
    )


def scope_context(
    scope: Scope,
    reading: Reading,
    *,
    route: str,
    method: str | None = None,
    counted_route: str | None = None,
) -> tuple[Heard, RequestContext]:
    """The headers and the context of the request of a raw ASGI ``scope`` (its own
    method unless another is given), for a door that builds no ``Request``."""
    heard = hear(scope["headers"], reading)
    client = scope.get("client")
    context = context_of(
        heard,
        reading,
        peer=client[0] if client else None,
        method=method or scope["method"],
        route=route,
        counted_route=counted_route,
        request_id=state_of(scope).request_id or None,
    )
    return heard, context


def is_trusted(address: str, trusted: tuple[IPNetwork, ...]) -> bool:
    """Whether ``address`` is one of the trusted proxies (``APIWARD_TRUSTED_PROXIES``)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def forwarded_address(
    peer: str | None, forwarded_for: str | None, trusted: tuple[IPNetwork, ...]
) -> str | None:
    """The caller's address from the peer's and ``X-Forwarded-For``: the last hop that is
    not a trusted proxy, when the peer is one; a garbled header is not believed."""
    if peer is None or not trusted or not is_trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in (forwarded_for or "").split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a garbled header is not believed
        if not is_trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer
