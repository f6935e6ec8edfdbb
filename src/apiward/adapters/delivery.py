"""Posting webhook deliveries with httpx: the ``WebhookSender`` of the server's runtime.

Network failures come back as an ``error`` string, never as an exception: a receiver
being down is the normal case a retry schedule exists for. The response body is never
read (a hostile endpoint cannot make the server buffer gigabytes), and redirects are
not followed (the registered URL is the only one that receives events).

Every delivery resolves the endpoint's name itself, refuses it unless every address it
resolves to may be reached (``Destinations``: public, or in a network the operator
allowed), and connects to the address it checked, with the name kept for the ``Host``
header, TLS's SNI and the certificate check. A name that resolves to a public address
when registered and to a private one later (DNS rebinding) is refused at that delivery.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from apiward import __version__
from apiward.core.destinations import Destinations, IPAddress
from apiward.core.webhooks import SendOutcome


def client(timeout: float, *, verify: ssl.SSLContext | bool = True) -> httpx.AsyncClient:
    """The runtime's one client for deliveries (created in its lifespan); ``verify`` True
    checks certificates against the process's one ``trusted()`` context."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,
        verify=trusted() if verify is True else verify,
        headers={"User-Agent": f"apiward-webhooks/{__version__}"},
        limits=httpx.Limits(max_connections=50, max_keepalive_connections=10),
    )


@functools.cache
def trusted() -> ssl.SSLContext:
    """Certificates checked against certifi's bundle, as httpx checks them by default;
    loaded once per process (reading the bundle takes some 70 ms) and shared by every
    client, which TLS contexts allow."""
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


class Unreachable(Exception):
    """The endpoint's host is not one deliveries may reach."""


async def _addresses(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise Unreachable(f"{host} could not be resolved ({exc.strerror or exc}).") from None
    found: list[IPAddress] = []
    for info in infos:
        raw = str(info[4][0])
        try:
            address = ipaddress.ip_address(raw)
        except ValueError:  # a scoped IPv6 address (fe80::1%eth0): never public
            raise Unreachable(f"{host} resolves to {raw}, not a public address.") from None
        if address not in found:
            found.append(address)
    return found


class HttpxSender:
    def __init__(self, http: httpx.AsyncClient, destinations: Destinations) -> None:
        self._http = http
        self._destinations = destinations

    async def _targets(self, url: str) -> list[tuple[str, dict[str, str], dict[str, Any]]]:
        """For each address of the endpoint's host, checked: the URL with the address in
        place of the name, the ``Host`` header, and the extensions that keep TLS on the
        name."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = await _addresses(host, port)
        refused = [a for a in addresses if not self._destinations.permits(a)]
        if not addresses or refused:
            shown = refused[0] if refused else "nothing"
            raise Unreachable(
                f"{host} resolves to {shown}, not a public address; deliveries go to public "
                "addresses only (APIWARD_WEBHOOK_ALLOWED_NETWORKS allows others)."
            )
        targets = []
        for address in addresses:
            netloc = f"[{address}]" if address.version == 6 else str(address)
            if parts.port is not None:
                netloc += f":{parts.port}"
            extensions: dict[str, Any] = {}
            if parts.scheme == "https" and str(address) != host:
                extensions["sni_hostname"] = host
            pinned = urlunsplit(parts._replace(netloc=netloc))
            targets.append((pinned, {"Host": parts.netloc}, extensions))
        return targets

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> SendOutcome:
        start = time.perf_counter()

        def elapsed() -> float:
            return (time.perf_counter() - start) * 1000

        try:
            targets = await self._targets(url)
        except Unreachable as exc:
            return SendOutcome(None, str(exc)[:300], elapsed())
        error = ""
        for pinned, host, extensions in targets:  # the next address if one does not connect
            request = self._http.build_request(
                "POST", pinned, content=body, headers={**headers, **host}, extensions=extensions
            )
            try:
                response = await self._http.send(request, stream=True)
                await response.aclose()
                return SendOutcome(response.status_code, None, elapsed())
            except httpx.ConnectError as exc:
                error = f"{type(exc).__name__}: {exc}"[:300]
            except httpx.TimeoutException:
                return SendOutcome(None, "The endpoint did not answer in time.", elapsed())
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                return SendOutcome(None, f"{type(exc).__name__}: {exc}"[:300], elapsed())
        return SendOutcome(None, error, elapsed())
