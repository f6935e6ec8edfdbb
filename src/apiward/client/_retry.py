"""When to retry a request answered 429 or 503, and how long to wait first.

The decision is pure (it reads a clock it is given and never sleeps), so the sync and
async clients share it and differ only in how they sleep.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from apiward.client._headers import parse_retry_after

__all__ = ["OnRetry", "RetryPolicy", "Retrying"]

logger = logging.getLogger("apiward.client")


class OnRetry(Protocol):
    """The ``on_retry=`` callback, called before each wait of the retry policy.

    ``attempt`` is the number (from 1) of the attempt that was just answered
    ``response`` (429 or 503, body read); the client then sleeps ``wait`` seconds and
    tries again.

    ```python
    def report(attempt: int, wait: float, response: httpx.Response) -> None:
        metrics.increment("apiward.retries", tags={"status": response.status_code})

    client = Client(url, api_key=key, on_retry=report)
    ```
    """

    def __call__(self, attempt: int, wait: float, response: httpx.Response, /) -> None: ...


# RFC 9110 section 9.2.2: these methods are idempotent, so repeating one is harmless
# even if the first attempt reached the application (a 503 does not say it did not).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(frozen=True)
class RetryPolicy:
    """How the client retries requests answered 429 (rate limited) or 503 (unavailable).

    It waits as long as ``Retry-After`` asks (seconds or an HTTP date); without one it
    backs off exponentially with full jitter: a random wait between 0 and
    ``min(max_backoff, backoff * 2 ** (attempt - 1))``. It gives up after
    ``max_attempts`` attempts in all, or when the next wait would end past ``deadline``
    seconds from the first attempt; the last answer is then returned (or raised as
    ``RateLimitedError`` / ``ServerError``).

    Only requests that are safe to repeat are retried: ``GET``, ``HEAD``, ``OPTIONS``,
    ``PUT``, ``DELETE``, and any request with an ``Idempotency-Key`` header.

    ```python
    client = Client(url, api_key=key, retry=RetryPolicy(max_attempts=6, deadline=120))
    no_retries = Client(url, api_key=key, retry=RetryPolicy(max_attempts=1))
    ```

    ``jitter`` returns a number in [0, 1); replace it to make waits reproducible.
    """

    max_attempts: int = 4
    backoff: float = 0.5
    max_backoff: float = 30.0
    deadline: float | None = 60.0
    statuses: frozenset[int] = frozenset({429, 503})
    methods: frozenset[str] = IDEMPOTENT_METHODS
    jitter: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts counts the first attempt: at least 1.")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("RetryPolicy.backoff and max_backoff cannot be negative.")
        if self.deadline is not None and self.deadline < 0:
            raise ValueError("RetryPolicy.deadline cannot be negative (None for no deadline).")

    def may_retry(self, request: httpx.Request) -> bool:
        """Whether ``request`` is safe to send again.

        ```python
        RetryPolicy().may_retry(httpx.Request("GET", "https://api.example.com/v1/things"))
        ```
        """
        return request.method.upper() in self.methods or "idempotency-key" in request.headers

    def backoff_for(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` when the server gave none.

        ```python
        RetryPolicy(jitter=lambda: 0.5).backoff_for(3)  # 0.5 * min(30, 0.5 * 4) = 1.0
        ```
        """
        ceiling = min(self.max_backoff, self.backoff * 2.0 ** (attempt - 1))
        return self.jitter() * ceiling


class Retrying:
    """The retry state of one request: call ``wait`` with each answer."""

    def __init__(self, policy: RetryPolicy, request: httpx.Request, now: float) -> None:
        self.policy = policy
        self.request = request
        self.started = now
        self.attempt = 0
        self.enabled = policy.max_attempts > 1 and policy.may_retry(request)

    def wait(self, response: httpx.Response, now: float) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` to stop with ``response``."""
        self.attempt += 1
        policy = self.policy
        if not self.enabled or response.status_code not in policy.statuses:
            return None
        if not isinstance(self.request.stream, httpx.ByteStream):
            return None  # a streamed body was consumed by the first attempt
        if self.attempt >= policy.max_attempts:
            return None
        asked = parse_retry_after(response.headers.get("retry-after"), now)
        delay = asked if asked is not None else policy.backoff_for(self.attempt)
        if policy.deadline is not None and now + delay - self.started > policy.deadline:
            return None
        return delay

    def announce(self, delay: float, response: httpx.Response, hook: OnRetry | None) -> None:
        """Tell the hook and the ``apiward.client`` logger about the coming wait."""
        request = self.request
        logger.info(
            "Retrying %s %s in %.3f s after HTTP %d (attempt %d of %d)",
            request.method,
            request.url.copy_with(query=None),
            delay,
            response.status_code,
            self.attempt,
            self.policy.max_attempts,
            extra={
                "apiward_attempt": self.attempt,
                "apiward_wait": delay,
                "apiward_status": response.status_code,
                "apiward_request_id": response.headers.get("x-request-id"),
            },
        )
        if hook is not None:
            hook(self.attempt, delay, response)
