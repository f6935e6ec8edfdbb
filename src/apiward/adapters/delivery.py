"""Posting webhook deliveries with httpx: the ``WebhookSender`` of the server's runtime.

Network failures come back as an ``error`` string, never as an exception: a receiver
being down is the normal case a retry schedule exists for. The response body is never
read (a hostile endpoint cannot make the server buffer gigabytes), and redirects are
not followed (the registered URL is the only one that receives events).
"""

from __future__ import annotations

import time

import httpx

from apiward import __version__
from apiward.services.ports import SendOutcome


def client(timeout: float) -> httpx.AsyncClient:
    """The runtime's one client for deliveries (created in its lifespan)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        headers={"User-Agent": f"apiward-webhooks/{__version__}"},
        limits=httpx.Limits(max_connections=50, max_keepalive_connections=10),
    )


class HttpxSender:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> SendOutcome:
        start = time.perf_counter()

        def elapsed() -> float:
            return (time.perf_counter() - start) * 1000

        try:
            async with self._http.stream("POST", url, content=body, headers=headers) as response:
                return SendOutcome(response.status_code, None, elapsed())
        except httpx.TimeoutException:
            return SendOutcome(None, "The endpoint did not answer in time.", elapsed())
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return SendOutcome(None, f"{type(exc).__name__}: {exc}"[:300], elapsed())
