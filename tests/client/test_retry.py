"""429 and 503: waiting as told, backing off otherwise, and knowing when to stop."""

from __future__ import annotations

import logging
from email.utils import formatdate
from typing import Any

import httpx
import pytest

from apiward.client import (
    APIError,
    Client,
    RateLimitedError,
    RetryPolicy,
    ServerError,
)
from apiward.client.testing import FakeApiward
from tests.client.conftest import BASE_URL, FakeClock, MakeAsyncClient, MakeClient, Sleeps


def echo(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"method": request.method})


@pytest.fixture
def writable(fake: FakeApiward) -> FakeApiward:
    for method in ("POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"):
        fake.add_route(method, "/v1/things", echo)
    return fake


def test_429_waits_as_long_as_retry_after_says(
    make_client: MakeClient, fake: FakeApiward, sleeps: Sleeps
) -> None:
    """``Retry-After: 2`` means one 2 s wait, then the request succeeds."""
    fake.rate_limit(retry_after=2)
    response = make_client().get("/v1/things")
    assert response.status_code == 200
    assert sleeps.waits == [2.0]


def test_retry_after_as_an_http_date_is_read_against_the_clock(
    make_client: MakeClient, fake: FakeApiward, sleeps: Sleeps, clock: FakeClock
) -> None:
    """An HTTP date 5 s ahead of the injected clock is a 5 s wait."""
    fake.rate_limit(retry_after=formatdate(clock.now + 5, usegmt=True))
    assert make_client().get("/v1/things").status_code == 200
    assert sleeps.waits == [5.0]


def test_without_retry_after_backoff_is_exponential_full_jitter_and_capped(
    make_client: MakeClient, fake: FakeApiward, sleeps: Sleeps
) -> None:
    """Waits are ``jitter() * min(max_backoff, backoff * 2 ** (attempt - 1))``."""
    fake.unavailable(5)
    policy = RetryPolicy(max_attempts=6, backoff=1.0, max_backoff=5.0, jitter=lambda: 0.5)
    assert make_client(retry=policy).get("/v1/things").status_code == 200
    assert sleeps.waits == [0.5, 1.0, 2.0, 2.5, 2.5]


def test_jitter_spreads_waits_between_zero_and_the_ceiling(
    make_client: MakeClient, fake: FakeApiward, sleeps: Sleeps
) -> None:
    """Full jitter: a jitter of 0 retries at once, of 0.999 almost at the ceiling."""
    draws = iter([0.0, 0.999])
    fake.unavailable(2)
    policy = RetryPolicy(backoff=1.0, jitter=lambda: next(draws))
    make_client(retry=policy).get("/v1/things")
    assert sleeps.waits == [0.0, pytest.approx(1.998)]


def test_gives_up_after_max_attempts_with_rate_limited_error(
    make_client: MakeClient, fake: FakeApiward, sleeps: Sleeps
) -> None:
    """After ``max_attempts`` the last 429 is raised, carrying ``retry_after``."""
    fake.rate_limit(10, retry_after=3)
    with pytest.raises(RateLimitedError) as caught:
        make_client(retry=RetryPolicy(max_attempts=3)).get("/v1/things")
    assert sleeps.waits == [3.0, 3.0]
    assert caught.value.retry_after == 3.0
    assert caught.value.code == "RATE_LIMITED"
    assert caught.value.response is not None
    assert caught.value.response.headers["X-RateLimit-Remaining"] == "0"


def test_gives_up_when_the_wait_would_end_past_the_deadline(
    make_client: MakeClient, fake: FakeApiward, sleeps: Sleeps
) -> None:
    """A ``Retry-After`` beyond the overall deadline is not waited for at all."""
    fake.rate_limit(retry_after=120)
    with pytest.raises(RateLimitedError) as caught:
        make_client(retry=RetryPolicy(deadline=60)).get("/v1/things")
    assert sleeps.waits == []
    assert caught.value.retry_after == 120.0


def test_deadline_counts_every_wait_since_the_first_attempt(
    make_client: MakeClient, fake: FakeApiward, sleeps: Sleeps
) -> None:
    """Three 20 s waits fit in a 50 s deadline only twice."""
    fake.rate_limit(10, retry_after=20)
    with pytest.raises(RateLimitedError):
        make_client(retry=RetryPolicy(max_attempts=10, deadline=50)).get("/v1/things")
    assert sleeps.waits == [20.0, 20.0]


def test_no_deadline_waits_as_long_as_asked(
    make_client: MakeClient, fake: FakeApiward, sleeps: Sleeps
) -> None:
    """``deadline=None`` leaves only ``max_attempts`` as a bound."""
    fake.rate_limit(retry_after=3600)
    make_client(retry=RetryPolicy(deadline=None)).get("/v1/things")
    assert sleeps.waits == [3600.0]


def test_503_is_retried_and_then_raised_as_server_error(
    make_client: MakeClient, fake: FakeApiward, sleeps: Sleeps
) -> None:
    """503 follows the same policy; when it persists it is a ``ServerError``."""
    fake.unavailable(4, retry_after=1)
    with pytest.raises(ServerError) as caught:
        make_client().get("/v1/things")
    assert sleeps.waits == [1.0, 1.0, 1.0]
    assert caught.value.status_code == 503


def test_other_statuses_are_not_retried(
    make_client: MakeClient, fake: FakeApiward, sleeps: Sleeps
) -> None:
    """A 500 may have done half the work: it is raised at once."""
    fake.add_route("GET", "/v1/broken", lambda request: httpx.Response(500, json={}))
    with pytest.raises(ServerError):
        make_client().get("/v1/broken")
    assert sleeps.waits == []


@pytest.mark.parametrize(
    ("method", "headers", "retried"),
    [
        ("GET", {}, True),
        ("HEAD", {}, True),
        ("OPTIONS", {}, True),
        ("PUT", {}, True),
        ("DELETE", {}, True),
        ("POST", {}, False),
        ("PATCH", {}, False),
        ("POST", {"Idempotency-Key": "create-thing-7"}, True),
        ("PATCH", {"Idempotency-Key": "rename-thing-7"}, True),
    ],
)
def test_only_requests_safe_to_repeat_are_retried(
    make_client: MakeClient,
    writable: FakeApiward,
    sleeps: Sleeps,
    method: str,
    headers: dict[str, str],
    retried: bool,
) -> None:
    """Idempotent methods, or any request with an ``Idempotency-Key``, are retried."""
    writable.unavailable(retry_after=1)
    client = make_client(raise_for_status=False)
    response = client.request(method, "/v1/things", headers=headers, json={"name": "x"})
    assert response.status_code == (200 if retried else 503)
    assert sleeps.waits == ([1.0] if retried else [])


class WireTransport(httpx.BaseTransport):
    """Consumes the request body as a real transport does, without keeping it."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        self.received.append(b"".join(request.stream))
        return httpx.Response(503, headers={"Retry-After": "1"})


def test_streamed_upload_is_not_sent_twice(sleeps: Sleeps) -> None:
    """A body from an iterator, consumed on the wire, cannot be replayed: the 503 stands."""
    transport = WireTransport()
    with Client(
        BASE_URL, api_key="aw_test_k", transport=transport, raise_for_status=False, sleep=sleeps
    ) as client:
        response = client.put("/v1/things", content=iter([b"chunk"]))
        assert response.status_code == 503
        assert client.put("/v1/things", content=b"bytes").status_code == 503
    assert transport.received == [b"chunk"] + [b"bytes"] * 4
    assert sleeps.waits == [1.0, 1.0, 1.0]


def test_on_retry_hook_sees_attempt_wait_and_response(
    make_client: MakeClient, fake: FakeApiward
) -> None:
    """The hook is called before each wait with the attempt number and the answer."""
    calls: list[tuple[int, float, int, str]] = []

    def hook(attempt: int, wait: float, response: httpx.Response) -> None:
        calls.append((attempt, wait, response.status_code, response.json()["code"]))

    fake.rate_limit(retry_after=1)
    fake.unavailable(retry_after=4)
    make_client(on_retry=hook).get("/v1/things")
    assert calls == [(1, 1.0, 429, "RATE_LIMITED"), (2, 4.0, 503, "SERVICE_UNAVAILABLE")]


def test_each_wait_is_logged_on_the_apiward_client_logger(
    make_client: MakeClient, fake: FakeApiward, caplog: pytest.LogCaptureFixture
) -> None:
    """An INFO record per wait, with the attempt, wait, status and request id as extras."""
    fake.rate_limit(retry_after=2)
    with caplog.at_level(logging.INFO, logger="apiward.client"):
        make_client().get("/v1/things", params={"page": 1})
    [record] = [r for r in caplog.records if r.name == "apiward.client"]
    assert record.getMessage() == (
        "Retrying GET https://api.example.com/v1/things in 2.000 s after HTTP 429 (attempt 1 of 4)"
    )
    extras: dict[str, Any] = record.__dict__
    assert extras["apiward_attempt"] == 1
    assert extras["apiward_wait"] == 2.0
    assert extras["apiward_status"] == 429
    assert str(extras["apiward_request_id"]).startswith("req_")


def test_raise_for_status_false_returns_the_final_answer(
    make_client: MakeClient, fake: FakeApiward
) -> None:
    """Opting out gives httpx behaviour: the error answer is returned, read."""
    fake.rate_limit(10, retry_after=1)
    response = make_client(raise_for_status=False, retry=RetryPolicy(max_attempts=2)).get(
        "/v1/things"
    )
    assert response.status_code == 429
    assert isinstance(APIError.from_response(response), RateLimitedError)


def test_max_attempts_one_disables_retries(
    make_client: MakeClient, fake: FakeApiward, sleeps: Sleeps
) -> None:
    """``RetryPolicy(max_attempts=1)`` never waits."""
    fake.rate_limit(retry_after=1)
    with pytest.raises(RateLimitedError):
        make_client(retry=RetryPolicy(max_attempts=1)).get("/v1/things")
    assert sleeps.waits == []


def test_streaming_error_answer_is_read_and_raised(
    make_client: MakeClient, fake: FakeApiward
) -> None:
    """``client.stream`` raises the error with its body parsed, like ``client.get``."""
    client = make_client(retry=RetryPolicy(max_attempts=1))
    fake.rate_limit(retry_after=1)
    with pytest.raises(RateLimitedError) as caught, client.stream("GET", "/v1/things"):
        pass  # pragma: no cover - the error is raised on entry
    assert caught.value.message == "Too many requests. Retry later."
    with client.stream("GET", "/v1/things") as response:
        assert response.status_code == 200
        assert b"items" in response.read()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "at least 1"),
        ({"backoff": -1}, "negative"),
        ({"deadline": -1}, "negative"),
    ],
)
def test_retry_policy_refuses_nonsense(kwargs: dict[str, Any], message: str) -> None:
    """A policy that cannot work is refused when built."""
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)


@pytest.mark.anyio
async def test_async_client_retries_with_its_async_sleep(
    make_async_client: MakeAsyncClient, fake: FakeApiward, sleeps: Sleeps
) -> None:
    """``AsyncClient`` awaits the injected async sleep and raises the same errors."""
    fake.rate_limit(retry_after=2)
    client = make_async_client()
    assert (await client.get("/v1/things")).status_code == 200
    assert sleeps.waits == [2.0]
    fake.rate_limit(10, retry_after=1)
    with pytest.raises(RateLimitedError):
        await client.get("/v1/things")
    assert sleeps.waits == [2.0, 1.0, 1.0, 1.0]


@pytest.mark.anyio
async def test_async_streaming_error_answer_is_read_and_raised(
    make_async_client: MakeAsyncClient, fake: FakeApiward
) -> None:
    """``AsyncClient.stream`` raises errors with their body parsed."""
    client = make_async_client(retry=RetryPolicy(max_attempts=1))
    fake.unavailable()
    with pytest.raises(ServerError) as caught:
        async with client.stream("GET", "/v1/things"):
            pass  # pragma: no cover - the error is raised on entry
    assert caught.value.reason == "SERVICE_UNAVAILABLE"
    async with client.stream("GET", "/v1/things") as response:
        assert response.status_code == 200
        assert b"items" in await response.aread()
