"""Webhook delivery's guard against server-side request forgery, with real sockets: a
name is resolved, every address checked, and the connection made to the checked
address, with the name kept for ``Host``, SNI and the certificate."""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from apiward.adapters import delivery
from apiward.core.destinations import Destinations
from tests.live import free_port
from tests.tls import self_signed

LOCAL = Destinations.parse(["127.0.0.0/8", "::1/128"])


class Receiver:
    def __init__(self) -> None:
        self.seen: list[tuple[str, bytes]] = []

    async def hook(self, request: Request) -> Response:
        self.seen.append((request.headers["host"], await request.body()))
        return Response(status_code=204)


@pytest.fixture
def https_receiver(tmp_path: Path) -> Iterator[tuple[Receiver, int, ssl.SSLContext]]:
    """An HTTPS receiver for the name ``localhost`` on a loopback port."""
    cert, key, client_context = self_signed(tmp_path, "localhost")
    receiver = Receiver()
    app = Starlette(routes=[Route("/in", receiver.hook, methods=["POST"])])
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield receiver, port, client_context
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _post(url: str, destinations: Destinations, verify: ssl.SSLContext | bool = True) -> object:
    async def run() -> object:
        async with delivery.client(5.0, verify=verify) as http:
            return await delivery.HttpxSender(http, destinations).post(
                url, b'{"type":"ping"}', {"Content-Type": "application/json"}
            )

    return asyncio.run(run())


def test_a_name_is_pinned_to_its_checked_address_with_sni_and_host_kept(
    https_receiver: tuple[Receiver, int, ssl.SSLContext],
) -> None:
    receiver, port, trust = https_receiver
    outcome = _post(f"https://localhost:{port}/in", LOCAL, verify=trust)
    assert getattr(outcome, "status", None) == 204, outcome
    assert receiver.seen == [(f"localhost:{port}", b'{"type":"ping"}')]


def test_the_certificate_is_still_checked_against_the_name(
    https_receiver: tuple[Receiver, int, ssl.SSLContext],
) -> None:
    receiver, port, _ = https_receiver
    outcome = _post(f"https://localhost:{port}/in", LOCAL)  # the system's trust store
    assert getattr(outcome, "status", 0) is None
    assert "CERTIFICATE_VERIFY_FAILED" in str(getattr(outcome, "error", ""))
    assert receiver.seen == []


def test_a_name_resolving_to_a_private_address_is_refused_before_any_connection(
    https_receiver: tuple[Receiver, int, ssl.SSLContext],
) -> None:
    receiver, port, trust = https_receiver
    outcome = _post(f"https://localhost:{port}/in", Destinations(), verify=trust)
    assert getattr(outcome, "status", 0) is None
    assert "not a public address" in str(getattr(outcome, "error", ""))
    assert receiver.seen == []
    outcome = _post(f"http://127.0.0.1:{port}/in", Destinations())
    assert "127.0.0.1" in str(getattr(outcome, "error", ""))
    outcome = _post("https://name.invalid/in", LOCAL)
    assert "could not be resolved" in str(getattr(outcome, "error", ""))
