"""Secrets never appear whole in a ``repr``, a log record or an exception message."""

from __future__ import annotations

import logging

import httpx
import pytest

from apiward.client import (
    ApiKeyAuth,
    ApiwardAuth,
    ApiwardError,
    AsyncClient,
    Client,
    RetryPolicy,
    TokenPair,
)
from apiward.client._redact import mask
from apiward.client.testing import FakeApiward
from tests.client.conftest import (
    BASE_URL,
    CLIENT_ID,
    CLIENT_SECRET,
    PASSWORD,
    USER,
    FakeClock,
    MakeClient,
)

API_KEY = "aw_live_5Yq2mT9pLr8Kx3Vz7Nw4Bc6Hd1Jf0Gs"
ACCESS = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyIn0.sig"
REFRESH = "awrt_live_Qm4Xn8Tp2Lw6Zr0Vk3Yb7Hc5Jd9Fs1Ga"


@pytest.mark.parametrize(
    ("secret", "shown"),
    [
        (API_KEY, "aw_live_…"),
        (ACCESS, "eyJhbGci…"),
        ("short-secret", "shor…"),
        ("abc", "a…"),
        ("ab", "…"),
        ("", "…"),
        (None, "…"),
    ],
)
def test_mask_shows_at_most_eight_characters_and_a_third(secret: str | None, shown: str) -> None:
    """Long secrets show their first 8 characters, short ones less, empty ones nothing."""
    assert mask(secret) == shown


def test_reprs_show_secrets_masked() -> None:
    """Pairs, auths and clients are safe to print."""
    pair = TokenPair(ACCESS, REFRESH, expires_at=1.0, scope="things:read")
    objects: list[object] = [
        pair,
        ApiKeyAuth(API_KEY),
        ApiwardAuth(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, tokens=pair),
        ApiwardAuth(username=USER, password=PASSWORD),
        ApiwardAuth(tokens=pair),
        Client(BASE_URL, api_key=API_KEY),
        AsyncClient(BASE_URL, client_id=CLIENT_ID, client_secret=CLIENT_SECRET),
    ]
    text = "\n".join(repr(o) for o in objects)
    for secret in (ACCESS, REFRESH, API_KEY, CLIENT_SECRET, PASSWORD):
        assert secret not in text
        assert secret[:8] not in text or mask(secret) in text
    assert repr(pair) == (
        "TokenPair(access_token='eyJhbGci…', refresh_token='awrt_liv…', expires_at=1.0, "
        "scope='things:read')"
    )
    assert repr(objects[1]) == "ApiKeyAuth(api_key='aw_live_…')"
    assert repr(objects[5]) == (
        "<Client base_url='https://api.example.com' auth=ApiKeyAuth(api_key='aw_live_…')>"
    )
    assert "client_secret='cs_live_…'" in repr(objects[2])
    assert "password" not in repr(objects[3]).replace("grant='password'", "")
    for client in objects[5:]:
        if isinstance(client, Client):
            client.close()


def test_a_full_flow_never_logs_or_raises_a_secret(
    make_client: MakeClient,
    fake: FakeApiward,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Sign-ins, refreshes, retries and failures: no secret in any log record or error."""
    caplog.set_level(logging.DEBUG)
    fake.add_collection("/v1/admin", [], scope="admin:read")
    api_key = fake.add_api_key(API_KEY, scopes=["things:read"])
    pairs: list[TokenPair] = []
    errors: list[ApiwardError] = []

    def attempt(client: Client, path: str = "/v1/things") -> None:
        try:
            client.get(path)
        except ApiwardError as exc:
            errors.append(exc)

    user = make_client(on_tokens=pairs.append, retry=RetryPolicy(max_attempts=2))
    attempt(user)
    fake.expire_access_tokens()
    attempt(user)
    clock.advance(3600)
    attempt(user)
    fake.rate_limit(2, retry_after=1)
    attempt(user)
    attempt(user, "/v1/admin")
    service = make_client(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, on_tokens=pairs.append)
    attempt(service)
    attempt(make_client(client_id=CLIENT_ID, client_secret="cs_wrong_Zx9Yw8Vu7Ts6"))
    attempt(make_client(password="wrong horse battery staple"))
    attempt(make_client(tokens=TokenPair(ACCESS, REFRESH, expires_at=clock.now)))
    fake.revoke_api_key(api_key)
    attempt(make_client(api_key=api_key))

    secrets = {PASSWORD, "wrong horse battery staple", CLIENT_SECRET, "cs_wrong_Zx9Yw8Vu7Ts6"}
    secrets |= {API_KEY, ACCESS, REFRESH}
    for pair in pairs:
        secrets.add(pair.access_token)
        if pair.refresh_token:
            secrets.add(pair.refresh_token)
    assert len(pairs) == 4
    assert [type(e).__name__ for e in errors] == [
        "RateLimitedError",
        "PermissionDeniedError",
        "TokenError",
        "TokenError",
        "TokenError",
        "AuthenticationError",
    ]
    told = caplog.text + "\n".join(f"{e!s}\n{e!r}\n{e.message}" for e in errors)
    assert "Retrying GET" in told  # the logs were captured
    for secret in secrets:
        assert secret not in told


def test_plain_httpx_logging_of_a_flow_holds_no_secret(
    fake: FakeApiward, caplog: pytest.LogCaptureFixture
) -> None:
    """httpx's own request log names URLs only; credentials travel in headers and bodies."""
    caplog.set_level(logging.DEBUG)
    auth = ApiwardAuth(username=USER, password=PASSWORD, clock=fake.clock)
    with httpx.Client(base_url=BASE_URL, auth=auth, transport=fake.transport()) as client:
        client.get("/v1/things")
    assert auth.tokens is not None
    for secret in (PASSWORD, auth.tokens.access_token, auth.tokens.refresh_token or "-"):
        assert secret not in caplog.text
