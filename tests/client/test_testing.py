"""``apiward.client.testing.FakeApiward`` keeps apiward's contract, so tests built on it hold."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from apiward.client import APIError, PermissionDeniedError, RateLimitedError
from apiward.client.testing import ErrorStyle, FakeApiward
from tests.client.conftest import BASE_URL, CLIENT_ID, CLIENT_SECRET, PASSWORD, USER, FakeClock


@pytest.fixture
def http(fake: FakeApiward) -> Iterator[httpx.Client]:
    """A plain httpx client of the fake: the raw contract, no SDK in between."""
    with httpx.Client(base_url=BASE_URL, transport=fake.transport()) as client:
        yield client


def sign_in(http: httpx.Client) -> dict[str, Any]:
    response = http.post("/v1/auth/token", json={"username": USER, "password": PASSWORD})
    assert response.status_code == 200
    answer: dict[str, Any] = response.json()
    return answer


def test_password_grant_answers_the_contract_shape(http: httpx.Client) -> None:
    """``{"username", "password"}`` with no grant_type is a password grant (Monogoto)."""
    response = http.post("/v1/auth/token", json={"username": USER, "password": PASSWORD})
    answer = response.json()
    assert set(answer) == {"token_type", "access_token", "expires_in", "refresh_token", "scope"}
    assert (answer["token_type"], answer["expires_in"]) == ("Bearer", 3600)
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"json": {"grant_type": "client_credentials", "client_id": CLIENT_ID,
                  "client_secret": CLIENT_SECRET}},
        {"data": {"grant_type": "client_credentials", "client_id": CLIENT_ID,
                  "client_secret": CLIENT_SECRET}},
        {"data": {"grant_type": "client_credentials"},
         "headers": {"Authorization": "Basic "
                     + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()}},
    ],
)  # fmt: skip
def test_client_credentials_in_json_form_or_basic(
    http: httpx.Client, request_kwargs: dict[str, Any]
) -> None:
    """Client credentials come as JSON, a form, or HTTP Basic; no refresh token is issued."""
    answer = http.post("/v1/auth/token", **request_kwargs).json()
    assert "access_token" in answer
    assert "refresh_token" not in answer


@pytest.mark.parametrize(
    ("payload", "status", "error"),
    [
        ({"username": USER, "password": "nope"}, 400, "invalid_grant"),
        ({"username": "eve@example.com", "password": PASSWORD}, 400, "invalid_grant"),
        ({"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": "x"},
         401, "invalid_client"),
        ({"grant_type": "authorization_code"}, 400, "unsupported_grant_type"),
        ({}, 400, "invalid_request"),
        ({"grant_type": "refresh_token", "refresh_token": "fake_rt_made_up"}, 400, "invalid_grant"),
    ],
)  # fmt: skip
def test_token_errors_are_rfc_6749(
    http: httpx.Client, payload: dict[str, str], status: int, error: str
) -> None:
    """Failures answer ``{"error", "error_description", "request_id"}`` with the right status."""
    response = http.post("/v1/auth/token", json=payload)
    assert response.status_code == status
    assert response.json()["error"] == error
    assert response.json()["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize(
    ("content", "content_type"), [(b"{not json", "application/json"), (b"[1]", "application/json")]
)
def test_malformed_token_request_is_invalid_request(
    http: httpx.Client, content: bytes, content_type: str
) -> None:
    """Bodies that are not a JSON object are refused with ``invalid_request``."""
    response = http.post("/v1/auth/token", content=content, headers={"Content-Type": content_type})
    assert response.json()["error"] == "invalid_request"


def test_malformed_basic_credentials_are_invalid_client(http: httpx.Client) -> None:
    """Undecodable Basic credentials are an ``invalid_client``."""
    response = http.post(
        "/v1/auth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": "Basic !!!"},
    )
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")


def test_refresh_tokens_are_single_use_and_a_replay_revokes_the_session(
    http: httpx.Client,
) -> None:
    """Rotation on every refresh; presenting a used token ends its whole family."""
    first = sign_in(http)
    second = http.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}).json()
    assert second["refresh_token"] != first["refresh_token"]
    replay = http.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert (replay.status_code, replay.json()["error"]) == (
        401,
        "invalid_grant",
    )  # as apiward answers on this path
    after = http.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert after.json()["error"] == "invalid_grant"


def test_refresh_tokens_expire(http: httpx.Client, fake: FakeApiward, clock: FakeClock) -> None:
    """A refresh token past ``refresh_token_ttl`` is an ``invalid_grant``."""
    answer = sign_in(http)
    clock.advance(fake.refresh_token_ttl)
    response = http.post("/v1/auth/refresh", json={"refresh_token": answer["refresh_token"]})
    assert "expired" in response.json()["error_description"]


def test_access_tokens_expire_with_the_clock_or_on_demand(
    http: httpx.Client, fake: FakeApiward, clock: FakeClock
) -> None:
    """Access tokens expire after ``access_token_ttl``, or at once when told to."""
    headers = {"Authorization": f"Bearer {sign_in(http)['access_token']}"}
    assert http.get("/v1/things", headers=headers).status_code == 200
    clock.advance(3600)
    response = http.get("/v1/things", headers=headers)
    assert (response.status_code, response.json()["reason"]) == (401, "TOKEN_EXPIRED")
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    headers = {"Authorization": f"Bearer {sign_in(http)['access_token']}"}
    fake.expire_access_tokens()
    assert http.get("/v1/things", headers=headers).json()["reason"] == "TOKEN_EXPIRED"
    assert fake.refused == ["TOKEN_EXPIRED", "TOKEN_EXPIRED"]


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (None, "MISSING_CREDENTIAL"),
        ("Basic abc", "MISSING_CREDENTIAL"),
        ("Bearer aw_test_unknown", "INVALID_KEY"),
        ("Bearer fake_at_unknown", "INVALID_TOKEN"),
    ],
)
def test_bad_credentials_are_refused_with_distinct_reasons(
    http: httpx.Client, authorization: str | None, reason: str
) -> None:
    """Each refusal names its case, as apiward does."""
    headers = {"Authorization": authorization} if authorization else {}
    response = http.get("/v1/things", headers=headers)
    assert (response.status_code, response.json()["reason"]) == (401, reason)


@pytest.mark.parametrize("style", ["default", "nested", "detail", "problem"])
def test_every_envelope_is_read_back_by_the_sdk(
    http: httpx.Client, fake: FakeApiward, style: ErrorStyle
) -> None:
    """The fake renders each envelope as the server does; the SDK reads each the same."""
    fake.error_style = style
    key = fake.add_api_key(scopes=["other:read"])
    response = http.get("/v1/things", headers={"Authorization": f"Bearer {key}"})
    error = APIError.from_response(response)
    assert isinstance(error, PermissionDeniedError)
    assert error.required_scope == "things:read"
    assert error.reason == "INSUFFICIENT_SCOPE"
    assert error.message == "API key does not have the required permission: things:read"
    assert error.request_id == response.headers["x-request-id"]
    problem = response.headers["content-type"] == "application/problem+json"
    assert problem == (style == "problem")


def test_rate_limit_answers_carry_the_rate_limit_headers(
    http: httpx.Client, fake: FakeApiward, clock: FakeClock
) -> None:
    """429s carry ``Retry-After`` and ``X-RateLimit-*``; then service resumes."""
    key = fake.add_api_key()
    fake.rate_limit(2, retry_after=30)
    headers = {"Authorization": f"Bearer {key}"}
    first = http.get("/v1/things", headers=headers)
    assert first.status_code == 429
    assert first.headers["retry-after"] == "30"
    assert first.headers["x-ratelimit-reset"] == str(int(clock.now) + 30)
    assert first.headers["x-ratelimit-remaining"] == "0"
    assert isinstance(APIError.from_response(first), RateLimitedError)
    assert http.get("/v1/things", headers=headers).status_code == 429
    assert http.get("/v1/things", headers=headers).status_code == 200


def test_unknown_routes_are_404_and_bad_pages_400(http: httpx.Client, fake: FakeApiward) -> None:
    """Routes that were not added are 404; page parameters out of bounds are 400."""
    key = fake.add_api_key()
    headers = {"Authorization": f"Bearer {key}"}
    assert http.get("/v1/unknown", headers=headers).status_code == 404
    for params in ({"page": "0"}, {"page_size": "101"}, {"page": "one"}):
        response = http.get("/v1/things", headers=headers, params=params)
        assert (response.status_code, response.json()["reason"]) == (400, "INVALID_INPUT")


def test_requests_are_recorded(http: httpx.Client, fake: FakeApiward) -> None:
    """``requests`` lists what was asked, to assert on in tests."""
    sign_in(http)
    http.get("/v1/things")
    assert [(r.method, r.url.path) for r in fake.requests] == [
        ("POST", "/v1/auth/token"),
        ("GET", "/v1/things"),
    ]
