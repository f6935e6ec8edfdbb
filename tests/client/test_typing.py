"""Realistic SDK usage that must pass ``mypy --strict`` (and run, against the fake).

``assert_type`` lines are checked by mypy and are no-ops at run time: if a public
signature loses or changes its types, ``mypy tests/client`` fails here.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, assert_type

import httpx
import pytest

from apiward.client import (
    APIError,
    ApiKeyAuth,
    ApiwardAuth,
    AsyncClient,
    AuthenticationError,
    Client,
    OnRetry,
    OnTokens,
    PermissionDeniedError,
    RateLimitedError,
    RetryPolicy,
    TokenError,
    TokenPair,
)
from apiward.client.testing import FakeApiward
from tests.client.conftest import BASE_URL, CLIENT_ID, CLIENT_SECRET, PASSWORD, USER

log = logging.getLogger("my_app")


class TokenFile:
    """A caller's token store: what ``on_tokens`` is for."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> TokenPair | None:
        if not self.path.exists():
            return None
        return TokenPair(**json.loads(self.path.read_text()))

    def save(self, pair: TokenPair) -> None:
        self.path.write_text(json.dumps(dataclasses.asdict(pair)))


def report_retry(attempt: int, wait: float, response: httpx.Response) -> None:
    log.info("retry %d in %.1fs (HTTP %d)", attempt, wait, response.status_code)


def list_thing_names(client: Client) -> list[str]:
    names: list[str] = []
    for thing in client.paginate("/v1/things", params={"status": "active"}, page_size=50):
        names.append(str(thing["name"]))
    return names


def describe(error: APIError) -> str:
    if isinstance(error, PermissionDeniedError):
        scope: str | None = error.required_scope
        return f"missing {scope}"
    if isinstance(error, RateLimitedError):
        delay: float | None = error.retry_after
        return f"retry in {delay}"
    if isinstance(error, TokenError):
        oauth: str = error.error
        return f"sign-in refused: {oauth}"
    if isinstance(error, AuthenticationError):
        return f"refused: {error.reason}"
    status: int = error.status_code
    request_id: str | None = error.request_id
    return f"{status} {error.code} {request_id}"


def test_sync_usage_with_a_token_file(fake: FakeApiward, tmp_path: Path) -> None:
    """Sign in once, persist the pair, resume from it in a second run."""
    store = TokenFile(tmp_path / "tokens.json")
    on_tokens: OnTokens = store.save
    on_retry: OnRetry = report_retry
    policy = RetryPolicy(max_attempts=5, deadline=30.0)
    with Client(
        BASE_URL,
        username=USER,
        password=PASSWORD,
        on_tokens=on_tokens,
        retry=policy,
        on_retry=on_retry,
        timeout=httpx.Timeout(10.0),
        transport=fake.transport(),
    ) as client:
        assert_type(client, Client)
        assert_type(client.tokens, TokenPair | None)
        response = client.get("/v1/things")
        assert_type(response, httpx.Response)
        assert len(list_thing_names(client)) == 45
    saved = store.load()
    assert saved is not None
    with Client(BASE_URL, tokens=saved, on_tokens=store.save, transport=fake.transport()) as again:
        again.get("/v1/things")
    assert fake.grants == {"password": 1}


def test_errors_are_described_by_type(fake: FakeApiward) -> None:
    """``except APIError`` narrows to the subclasses' own attributes."""
    fake.add_collection("/v1/admin", [], scope="admin:read")
    key = fake.add_api_key(scopes=["things:read"])
    with Client(BASE_URL, api_key=key, transport=fake.transport()) as client:
        with pytest.raises(APIError) as caught:
            client.get("/v1/admin")
        assert describe(caught.value) == "missing admin:read"
    with Client(BASE_URL, api_key=key, transport=fake.transport(), raise_for_status=False) as c:
        response = c.get("/v1/admin")
        assert describe(APIError.from_response(response)) == "missing admin:read"


@pytest.mark.anyio
async def test_async_usage(fake: FakeApiward) -> None:
    """``AsyncClient`` with client credentials, ``await`` and ``async for``."""
    async with AsyncClient(
        BASE_URL,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        transport=fake.transport(),
    ) as client:
        assert_type(client, AsyncClient)
        response = await client.get("/v1/things")
        assert_type(response, httpx.Response)
        body: dict[str, Any] = response.json()
        assert body["total"] == 45
        count = 0
        async for thing in client.paginate("/v1/things"):
            assert_type(thing, Any)
            count += 1
        assert count == 45


def test_auth_objects_fit_plain_httpx(fake: FakeApiward) -> None:
    """The auth classes are ``httpx.Auth``: a plain ``httpx.Client`` takes them."""
    auth: httpx.Auth = ApiwardAuth(username=USER, password=PASSWORD)
    key_auth: httpx.Auth = ApiKeyAuth(fake.add_api_key())
    for each in (auth, key_auth):
        with httpx.Client(base_url=BASE_URL, auth=each, transport=fake.transport()) as client:
            assert client.get("/v1/things").status_code == 200
