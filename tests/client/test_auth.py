"""The token lifecycle: sign-in, proactive and reactive renewal, fallbacks, API keys."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from apiward.client import (
    ApiKeyAuth,
    ApiwardAuth,
    AuthenticationError,
    Client,
    ServerError,
    TokenError,
    TokenPair,
    UnexpectedResponseError,
)
from apiward.client.testing import FakeApiward
from tests.client.conftest import (
    BASE_URL,
    CLIENT_ID,
    CLIENT_SECRET,
    PASSWORD,
    USER,
    FakeClock,
    MakeAsyncClient,
    MakeClient,
)


def token_requests(fake: FakeApiward) -> list[httpx.Request]:
    return [r for r in fake.requests if r.url.path.startswith("/v1/auth/")]


def api_tokens(fake: FakeApiward) -> list[str]:
    """The bearer credential of every API request the fake received, in order."""
    return [
        r.headers["authorization"].removeprefix("Bearer ")
        for r in fake.requests
        if not r.url.path.startswith("/v1/auth/")
    ]


def body(request: httpx.Request) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(request.content)
    return data


def test_password_grant_signs_in_once_and_sends_the_bearer_token(
    make_client: MakeClient, fake: FakeApiward
) -> None:
    """The first request signs in with the contract's JSON body; later ones reuse the token."""
    client = make_client()
    assert client.get("/v1/things").status_code == 200
    assert client.get("/v1/things").status_code == 200
    [login] = token_requests(fake)
    assert (login.method, login.url.path) == ("POST", "/v1/auth/token")
    assert body(login) == {"grant_type": "password", "username": USER, "password": PASSWORD}
    assert client.tokens is not None
    assert api_tokens(fake) == [client.tokens.access_token] * 2
    assert fake.grants == {"password": 1}


def test_client_credentials_grant_has_no_refresh_token(
    make_client: MakeClient, fake: FakeApiward
) -> None:
    """Client credentials are sent in the JSON body; the pair has no refresh token."""
    client = make_client(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    client.get("/v1/things")
    [login] = token_requests(fake)
    assert body(login) == {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    assert client.tokens is not None and client.tokens.refresh_token is None


def test_client_credentials_run_the_grant_again_when_expiring(
    make_client: MakeClient, fake: FakeApiward, clock: FakeClock
) -> None:
    """Without a refresh token, renewal is a new client credentials grant."""
    client = make_client(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    client.get("/v1/things")
    clock.advance(3600 - 59)
    client.get("/v1/things")
    assert fake.grants == {"client_credentials": 2}


@pytest.mark.parametrize(
    ("margin", "advance", "refreshes"),
    [(60, 3600 - 61, 0), (60, 3600 - 60, 1), (300, 3600 - 301, 0), (300, 3600 - 299, 1)],
)
def test_proactive_refresh_happens_refresh_margin_before_expiry(
    make_client: MakeClient,
    fake: FakeApiward,
    clock: FakeClock,
    margin: float,
    advance: float,
    refreshes: int,
) -> None:
    """The token is renewed ``refresh_margin`` seconds before ``expires_in`` runs out."""
    client = make_client(refresh_margin=margin)
    client.get("/v1/things")
    clock.advance(advance)
    client.get("/v1/things")
    assert fake.grants["refresh_token"] == refreshes
    assert fake.refused == []


def test_margin_is_capped_at_half_the_token_lifetime(
    make_client: MakeClient, fake: FakeApiward, clock: FakeClock
) -> None:
    """A 60 s margin on a 60 s token would renew on every request; half the life is used."""
    fake.access_token_ttl = 60
    client = make_client()
    client.get("/v1/things")
    clock.advance(29)
    client.get("/v1/things")
    assert fake.grants["refresh_token"] == 0
    clock.advance(1)
    client.get("/v1/things")
    assert fake.grants["refresh_token"] == 1


def test_expired_token_is_refreshed_and_the_request_retried_once(
    make_client: MakeClient, fake: FakeApiward
) -> None:
    """A 401 ``TOKEN_EXPIRED`` leads to one refresh and one retry with the new token."""
    client = make_client()
    client.get("/v1/things")
    old = client.tokens
    fake.expire_access_tokens()
    response = client.get("/v1/things")
    assert response.status_code == 200
    assert fake.refused == ["TOKEN_EXPIRED"]
    assert fake.grants == {"password": 1, "refresh_token": 1}
    assert client.tokens is not None and old is not None
    assert api_tokens(fake)[-1] == client.tokens.access_token != old.access_token
    assert [r.status_code for r in response.history] == [401, 200]


@pytest.mark.parametrize("style", ["default", "nested", "detail", "problem"])
def test_reactive_refresh_works_with_every_error_envelope(
    make_client: MakeClient, fake: FakeApiward, style: Any
) -> None:
    """The 401 is recognised whatever envelope the server answers in."""
    fake.error_style = style
    client = make_client()
    client.get("/v1/things")
    fake.expire_access_tokens()
    assert client.get("/v1/things").status_code == 200
    assert fake.grants["refresh_token"] == 1


def always(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body, headers=headers)

    return handler


EXPIRED = {
    "status_code": 401,
    "code": "UNAUTHORIZED",
    "reason": "TOKEN_EXPIRED",
    "message": "Access token has expired",
}


def test_a_second_401_after_refreshing_is_raised_not_retried_again(
    make_client: MakeClient, fake: FakeApiward
) -> None:
    """One refresh and one retry only: a route that keeps refusing ends in an error."""
    fake.add_route("GET", "/v1/stubborn", always(401, EXPIRED))
    client = make_client()
    with pytest.raises(AuthenticationError) as caught:
        client.get("/v1/stubborn")
    assert caught.value.reason == "TOKEN_EXPIRED"
    assert fake.grants == {"password": 1, "refresh_token": 1}
    assert len(api_tokens(fake)) == 2


@pytest.mark.parametrize(
    ("body", "headers", "renews"),
    [
        ({"detail": "Go away"}, {"WWW-Authenticate": 'Bearer error="invalid_token"'}, True),
        ({"detail": "Go away"}, {"WWW-Authenticate": 'Bearer realm="apiward"'}, False),
        ({"code": "UNAUTHORIZED", "reason": "INVALID_TOKEN", "message": "m"}, {}, True),
        ({"code": "UNAUTHORIZED", "reason": "TOKEN_REVOKED", "message": "m"}, {}, True),
        (
            {"code": "UNAUTHORIZED", "reason": "MISSING_CREDENTIAL", "message": "m"},
            {"WWW-Authenticate": 'Bearer error="invalid_token"'},
            False,
        ),
        ({"message": "no"}, {}, False),
    ],
)
def test_only_a_401_about_the_token_renews_it(
    make_client: MakeClient,
    fake: FakeApiward,
    body: dict[str, Any],
    headers: dict[str, str],
    renews: bool,
) -> None:
    """Renewal needs the body's reason or the challenge's ``invalid_token`` to say so."""
    fake.add_route("GET", "/v1/refusing", always(401, body, headers))
    client = make_client()
    with pytest.raises(AuthenticationError):
        client.get("/v1/refusing")
    assert fake.grants["refresh_token"] == (1 if renews else 0)


def test_api_key_is_never_refreshed(make_client: MakeClient, fake: FakeApiward) -> None:
    """A refused API key is an error at once: no token endpoint call, no retry."""
    key = fake.add_api_key(scopes=["things:read"])
    client = make_client(api_key=key)
    assert client.get("/v1/things").status_code == 200
    fake.revoke_api_key(key)
    with pytest.raises(AuthenticationError) as caught:
        client.get("/v1/things")
    assert caught.value.reason == "KEY_REVOKED"
    assert token_requests(fake) == []
    assert len(api_tokens(fake)) == 2
    assert client.tokens is None


def test_saved_pair_resumes_without_signing_in_and_reports_rotation(
    make_client: MakeClient, fake: FakeApiward, clock: FakeClock
) -> None:
    """``tokens=`` is used as is; its rotation is handed to ``on_tokens``."""
    first = make_client()
    first.get("/v1/things")
    saved = first.tokens
    assert saved is not None
    seen: list[TokenPair] = []
    client = make_client(tokens=saved, on_tokens=seen.append)
    client.get("/v1/things")
    assert fake.grants == {"password": 1}
    clock.advance(3600)
    client.get("/v1/things")
    [rotated] = seen
    assert rotated == client.tokens
    assert rotated.refresh_token != saved.refresh_token
    assert rotated.expires_at == clock.now + 3600
    refresh = token_requests(fake)[-1]
    assert refresh.url.path == "/v1/auth/refresh"
    assert body(refresh) == {"refresh_token": saved.refresh_token}


def test_on_tokens_receives_every_new_pair(make_client: MakeClient, fake: FakeApiward) -> None:
    """Sign-in and each refresh are reported, in order."""
    seen: list[TokenPair] = []
    client = make_client(on_tokens=seen.append)
    client.get("/v1/things")
    fake.expire_access_tokens()
    client.get("/v1/things")
    assert len(seen) == 2
    assert seen[-1] == client.tokens


def test_rotated_refresh_tokens_are_each_sent_once(
    make_client: MakeClient, fake: FakeApiward, clock: FakeClock
) -> None:
    """Across many renewals, no refresh token is ever presented twice."""
    client = make_client()
    for _ in range(10):
        client.get("/v1/things")
        clock.advance(3600)
    sent = [body(r)["refresh_token"] for r in token_requests(fake) if "refresh" in r.url.path]
    assert len(sent) == 9
    assert len(set(sent)) == 9
    assert fake.refused == []


@pytest.mark.parametrize(
    ("credentials", "grant"),
    [
        ({"username": USER, "password": PASSWORD}, "password"),
        ({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}, "client_credentials"),
    ],
)
def test_refused_refresh_token_falls_back_to_signing_in(
    make_client: MakeClient,
    fake: FakeApiward,
    clock: FakeClock,
    credentials: dict[str, str],
    grant: str,
) -> None:
    """``invalid_grant`` on refresh, with credentials at hand, means: sign in again."""
    dead = TokenPair("fake_at_unknown", "fake_rt_unknown", expires_at=clock.now + 10)
    client = make_client(tokens=dead, **credentials)
    assert client.get("/v1/things").status_code == 200
    assert fake.grants == {grant: 1}
    assert [r.url.path for r in token_requests(fake)] == ["/v1/auth/refresh", "/v1/auth/token"]


def test_refused_refresh_token_without_credentials_raises_a_clear_error(
    make_client: MakeClient, fake: FakeApiward, clock: FakeClock
) -> None:
    """With only a pair, a dead refresh token is a ``TokenError`` saying what to do."""
    dead = TokenPair("fake_at_unknown", "fake_rt_unknown", expires_at=clock.now + 10)
    client = make_client(tokens=dead)
    with pytest.raises(TokenError) as caught:
        client.get("/v1/things")
    error = caught.value
    assert isinstance(error, AuthenticationError)
    assert error.error == "invalid_grant"
    assert "Sign in again" in error.message
    assert error.request_id is not None
    assert api_tokens(fake) == []


def test_refused_refresh_token_is_not_sent_again(
    make_client: MakeClient, fake: FakeApiward, clock: FakeClock
) -> None:
    """After ``invalid_grant`` the still-valid access token serves until it expires."""
    fake.add_api_key("fake_at_still_valid", scopes=["things:read"])  # accepted as a bearer
    dead = TokenPair("fake_at_still_valid", "fake_rt_unknown", expires_at=clock.now + 30)
    client = make_client(tokens=dead)
    with pytest.raises(TokenError):
        client.get("/v1/things")
    assert client.get("/v1/things").status_code == 200
    clock.advance(30)
    with pytest.raises(AuthenticationError) as caught:
        client.get("/v1/things")
    assert caught.value.response is None
    assert len(token_requests(fake)) == 1


def test_expired_pair_without_refresh_token_raises_before_sending(
    make_client: MakeClient, fake: FakeApiward, clock: FakeClock
) -> None:
    """A token known to be expired is never sent; the error says why."""
    client = make_client(tokens=TokenPair("fake_at_old", None, expires_at=clock.now - 1))
    with pytest.raises(AuthenticationError) as caught:
        client.get("/v1/things")
    assert caught.value.reason == "TOKEN_EXPIRED"
    assert caught.value.response is None
    assert fake.requests == []


def test_pair_without_expiry_is_renewed_only_when_refused(
    make_client: MakeClient, fake: FakeApiward
) -> None:
    """``expires_at=None``: no proactive renewal, the 401 drives it."""
    first = make_client()
    first.get("/v1/things")
    assert first.tokens is not None
    pair = TokenPair(first.tokens.access_token, first.tokens.refresh_token, expires_at=None)
    client = make_client(tokens=pair)
    client.get("/v1/things")
    assert fake.grants["refresh_token"] == 0
    fake.expire_access_tokens()
    client.get("/v1/things")
    assert fake.grants["refresh_token"] == 1


def test_refused_pair_without_renewal_is_not_sent_again(
    make_client: MakeClient, fake: FakeApiward
) -> None:
    """Once the server refused a token nothing can renew, the next call fails locally."""
    first = make_client(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    first.get("/v1/things")
    assert first.tokens is not None
    client = make_client(tokens=first.tokens)
    fake.expire_access_tokens()
    with pytest.raises(AuthenticationError) as caught:
        client.get("/v1/things")
    assert caught.value.response is not None
    sent = len(fake.requests)
    with pytest.raises(AuthenticationError) as again:
        client.get("/v1/things")
    assert again.value.response is None
    assert len(fake.requests) == sent


def test_refresh_answer_without_refresh_token_keeps_the_old_one(clock: FakeClock) -> None:
    """RFC 6749 section 6: the server may choose not to rotate."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/auth/refresh":
            seen.append(json.loads(request.content)["refresh_token"])
            return httpx.Response(200, json={"access_token": f"at{len(seen)}", "expires_in": 100})
        return httpx.Response(200, json={})

    pair = TokenPair("at0", "rt_keep", expires_at=clock.now)
    with Client(BASE_URL, tokens=pair, transport=httpx.MockTransport(handler), clock=clock) as c:
        c.get("/x")
        clock.advance(100)
        c.get("/x")
        assert c.tokens == TokenPair("at2", "rt_keep", expires_at=clock.now + 100, scope=None)
    assert seen == ["rt_keep", "rt_keep"]


def failing_once(
    fake: FakeApiward, path: str, failure: Callable[[httpx.Request], httpx.Response]
) -> httpx.MockTransport:
    """The fake, except that the first request to ``path`` gets ``failure``."""
    state = {"failed": False}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == path and not state["failed"]:
            state["failed"] = True
            return failure(request)
        return fake(request)

    return httpx.MockTransport(handler)


def connection_lost(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadError("connection reset", request=request)


def server_error(request: httpx.Request) -> httpx.Response:
    return httpx.Response(502, text="bad gateway")


@pytest.mark.parametrize(
    ("failure", "raised"), [(connection_lost, httpx.ReadError), (server_error, ServerError)]
)
def test_refresh_with_unknown_outcome_signs_in_instead_of_reusing_the_token(
    make_client: MakeClient,
    fake: FakeApiward,
    clock: FakeClock,
    failure: Callable[[httpx.Request], httpx.Response],
    raised: type[Exception],
) -> None:
    """A refresh lost on the way may have rotated the token: credentials replace it."""
    client = make_client(transport=failing_once(fake, "/v1/auth/refresh", failure))
    client.get("/v1/things")
    clock.advance(3600)
    with pytest.raises(raised):
        client.get("/v1/things")
    assert client.get("/v1/things").status_code == 200
    assert fake.grants == {"password": 2}
    assert [r.url.path for r in token_requests(fake)] == ["/v1/auth/token", "/v1/auth/token"]


def test_refresh_with_unknown_outcome_keeps_the_token_when_nothing_else_can_sign_in(
    make_client: MakeClient, fake: FakeApiward, clock: FakeClock
) -> None:
    """Without credentials, the refresh token is the only hope: it is tried again."""
    first = make_client()
    first.get("/v1/things")
    client = make_client(
        tokens=first.tokens, transport=failing_once(fake, "/v1/auth/refresh", connection_lost)
    )
    clock.advance(3600)
    with pytest.raises(httpx.ReadError):
        client.get("/v1/things")
    assert client.get("/v1/things").status_code == 200
    assert fake.grants == {"password": 1, "refresh_token": 1}


def test_wrong_password_is_a_token_error(make_client: MakeClient, fake: FakeApiward) -> None:
    """RFC 6749 ``invalid_grant`` for a bad password surfaces as ``TokenError``."""
    client = make_client(password="wrong")
    with pytest.raises(TokenError) as caught:
        client.get("/v1/things")
    assert (caught.value.error, caught.value.status_code) == ("invalid_grant", 400)
    assert api_tokens(fake) == []


def test_unknown_client_is_a_token_error(make_client: MakeClient) -> None:
    """``invalid_client`` (401) for a bad secret surfaces as ``TokenError``."""
    client = make_client(client_id=CLIENT_ID, client_secret="cs_wrong_secret_value")
    with pytest.raises(TokenError) as caught:
        client.get("/v1/things")
    assert (caught.value.error, caught.value.status_code) == ("invalid_client", 401)


def test_throttled_sign_in_is_a_token_error_with_retry_after(
    make_client: MakeClient, fake: FakeApiward
) -> None:
    """A 429 from the token endpoint is not waited on: it says when to come back."""
    fake.throttle_sign_in(retry_after=120)
    client = make_client()
    with pytest.raises(TokenError) as caught:
        client.get("/v1/things")
    assert (caught.value.error, caught.value.retry_after) == ("temporarily_unavailable", 120.0)
    assert client.get("/v1/things").status_code == 200


def test_scope_is_asked_for_when_signing_in(make_client: MakeClient, fake: FakeApiward) -> None:
    """``scope=`` goes into the grant's body."""
    make_client(scope="things:read").get("/v1/things")
    assert body(token_requests(fake)[0])["scope"] == "things:read"


def test_token_endpoints_live_under_the_base_url_path(fake: FakeApiward, clock: FakeClock) -> None:
    """With ``base_url=https://host/api``, tokens come from ``/api/v1/auth/token``."""
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        inner = httpx.Request(
            request.method,
            request.url.copy_with(path=request.url.path.removeprefix("/api")),
            headers=request.headers,
            content=request.content,
        )
        return fake(inner)

    transport = httpx.MockTransport(handler)
    url = f"{BASE_URL}/api/"
    with Client(url, username=USER, password=PASSWORD, transport=transport, clock=clock) as c:
        c.get("/v1/things")
    assert paths == ["/api/v1/auth/token", "/api/v1/things"]


def test_token_requests_keep_the_user_agent_and_timeout(
    make_client: MakeClient, fake: FakeApiward
) -> None:
    """Token calls are made like the request that needed them."""
    client = make_client(timeout=7.0, headers={"User-Agent": "monitor/2.0"})
    client.get("/v1/things")
    login = token_requests(fake)[0]
    assert login.headers["user-agent"] == "monitor/2.0"
    assert login.extensions["timeout"] == {"connect": 7.0, "read": 7.0, "write": 7.0, "pool": 7.0}


def test_default_user_agent_names_the_sdk(make_client: MakeClient, fake: FakeApiward) -> None:
    """Without a ``User-Agent`` of the caller's, the SDK names itself."""
    make_client().get("/v1/things")
    assert fake.requests[-1].headers["user-agent"].startswith("apiward-client ")


def test_request_body_is_sent_again_after_refresh(
    make_client: MakeClient, fake: FakeApiward
) -> None:
    """A POST refused for its token is retried with the same body."""
    bodies: list[bytes] = []

    def create(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        return httpx.Response(201, json={"id": "thing_1"})

    fake.add_route("POST", "/v1/things", create, scope="things:write")
    client = make_client()
    client.get("/v1/things")
    fake.expire_access_tokens()
    response = client.post("/v1/things", content=iter([b'{"name":', b' "sensor"}']))
    assert response.status_code == 201
    assert bodies == [b'{"name": "sensor"}']
    assert fake.refused == ["TOKEN_EXPIRED"]
    assert [r.content for r in fake.requests if r.method == "POST" and "things" in str(r.url)] == [
        b'{"name": "sensor"}',
        b'{"name": "sensor"}',
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"token_type": "Bearer", "expires_in": 60},
        {"token_type": "Bearer", "access_token": ""},
        "not json",
    ],
)
def test_token_answer_without_access_token_is_unexpected(clock: FakeClock, body: Any) -> None:
    """A 200 from the token endpoint that holds no token is not silently accepted."""

    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(200, text=body)
        return httpx.Response(200, json=body)

    transport = httpx.MockTransport(handler)
    with (
        Client(BASE_URL, username=USER, password=PASSWORD, transport=transport, clock=clock) as c,
        pytest.raises(UnexpectedResponseError),
    ):
        c.get("/v1/things")


@pytest.mark.parametrize("expires_in", [None, "soon", -5, True, float("inf"), "120"])
def test_odd_expires_in_values(clock: FakeClock, expires_in: Any) -> None:
    """Only a finite, non-negative number (or numeric string) of seconds sets an expiry."""

    def handler(request: httpx.Request) -> httpx.Response:
        answer = {"access_token": "at", "expires_in": expires_in}
        return httpx.Response(200, content=json.dumps(answer).encode())

    transport = httpx.MockTransport(handler)
    with Client(BASE_URL, username=USER, password=PASSWORD, transport=transport, clock=clock) as c:
        c.get("/x")
        assert c.tokens is not None
        expected = clock.now + 120 if expires_in == "120" else None
        assert c.tokens.expires_at == expected


def test_non_bearer_token_type_is_refused(clock: FakeClock) -> None:
    """A MAC or DPoP token cannot be sent as a bearer token."""
    answer = {"access_token": "at", "token_type": "DPoP", "expires_in": 60}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=answer))
    with (
        Client(BASE_URL, username=USER, password=PASSWORD, transport=transport, clock=clock) as c,
        pytest.raises(TokenError) as caught,
    ):
        c.get("/x")
    assert caught.value.error == "unsupported_token_type"


def test_apiward_auth_works_with_a_plain_httpx_client(fake: FakeApiward) -> None:
    """``ApiwardAuth`` is an ``httpx.Auth``: plain httpx clients sign in and refresh too."""
    auth = ApiwardAuth(username=USER, password=PASSWORD, clock=fake.clock)
    with httpx.Client(base_url=BASE_URL, auth=auth, transport=fake.transport()) as client:
        assert client.get("/v1/things").status_code == 200
        fake.expire_access_tokens()
        assert client.get("/v1/things").status_code == 200
    assert fake.grants == {"password": 1, "refresh_token": 1}


@pytest.mark.anyio
async def test_apiward_auth_works_with_a_plain_httpx_async_client(fake: FakeApiward) -> None:
    """The same auth object drives ``httpx.AsyncClient``."""
    auth = ApiwardAuth(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, clock=fake.clock)
    async with httpx.AsyncClient(base_url=BASE_URL, auth=auth, transport=fake.transport()) as c:
        assert (await c.get("/v1/things")).status_code == 200
        fake.expire_access_tokens()
        assert (await c.get("/v1/things")).status_code == 200
    assert fake.grants == {"client_credentials": 2}


def test_api_key_auth_works_with_a_plain_httpx_client(fake: FakeApiward) -> None:
    """``ApiKeyAuth`` sends ``Authorization: Bearer <key>``."""
    key = fake.add_api_key(scopes=["things:read"])
    with httpx.Client(
        base_url=BASE_URL, auth=ApiKeyAuth(key), transport=fake.transport()
    ) as client:
        assert client.get("/v1/things").status_code == 200
    assert fake.requests[0].headers["authorization"] == f"Bearer {key}"


def test_auth_flow_can_be_driven_by_hand(fake: FakeApiward) -> None:
    """``auth_flow`` is the full flow for code that drives an ``httpx.Auth`` itself."""
    auth = ApiwardAuth(username=USER, password=PASSWORD, clock=fake.clock)
    flow = auth.auth_flow(httpx.Request("GET", f"{BASE_URL}/v1/things"))
    request = next(flow)
    assert request.url.path == "/v1/auth/token"
    request = flow.send(fake(request))
    assert request.url.path == "/v1/things"
    with pytest.raises(StopIteration):
        flow.send(fake(request))


@pytest.mark.anyio
async def test_async_client_signs_in_and_refreshes(
    make_async_client: MakeAsyncClient, fake: FakeApiward, clock: FakeClock
) -> None:
    """``AsyncClient`` runs the same flow: sign-in, proactive and reactive renewal."""
    client = make_async_client()
    assert (await client.get("/v1/things")).status_code == 200
    clock.advance(3600)
    await client.get("/v1/things")
    fake.expire_access_tokens()
    await client.get("/v1/things")
    assert fake.grants == {"password": 1, "refresh_token": 2}
    assert client.tokens is not None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "Pass one credential"),
        ({"username": USER}, "username= and password= together"),
        ({"client_secret": "x"}, "client_id= and client_secret= together"),
        (
            {"username": USER, "password": "p", "client_id": "c", "client_secret": "s"},
            "not both",
        ),
        ({"api_key": "aw_live_x", "username": USER, "password": "p"}, "cannot be combined"),
        ({"api_key": "aw_live_x", "scope": "things:read"}, "cannot be combined"),
        ({"auth": ApiKeyAuth("aw_live_x"), "api_key": "aw_live_y"}, "cannot be combined"),
        ({"tokens": ("at", "rt", 0.0)}, "takes a TokenPair"),
        ({"username": USER, "password": "p", "on_tokens": "save"}, "on_tokens"),
    ],
)
def test_misused_arguments_fail_at_once(kwargs: dict[str, Any], message: str) -> None:
    """Wrong combinations of credentials raise ``TypeError`` naming the fix."""
    with pytest.raises(TypeError, match=message):
        Client(BASE_URL, **kwargs)


@pytest.mark.parametrize(
    ("make", "message", "error"),
    [
        (lambda: ApiKeyAuth("  "), "non-empty", ValueError),
        (lambda: ApiwardAuth(), "ApiwardAuth needs", TypeError),
        (
            lambda: ApiwardAuth(username=USER, password="p", refresh_margin=-1),
            "at least 0",
            ValueError,
        ),
    ],
)
def test_auths_refuse_misuse_at_once(
    make: Callable[[], object], message: str, error: type[Exception]
) -> None:
    """No credential, an empty key or a negative margin fail when the auth is built."""
    with pytest.raises(error, match=message):
        make()


def test_client_accepts_an_auth_of_its_own(fake: FakeApiward, clock: FakeClock) -> None:
    """``auth=`` replaces the credential arguments, e.g. to share one auth between clients."""
    auth = ApiwardAuth(username=USER, password=PASSWORD, clock=clock)
    transport = fake.transport()
    with (
        Client(BASE_URL, auth=auth, transport=transport) as a,
        Client(BASE_URL, auth=auth, transport=transport) as b,
    ):
        a.get("/v1/things")
        b.get("/v1/things")
        assert a.tokens is b.tokens is auth.tokens
    assert fake.grants == {"password": 1}


def test_refresh_refused_for_another_reason_keeps_the_refresh_token(
    make_client: MakeClient, fake: FakeApiward, clock: FakeClock
) -> None:
    """Only ``invalid_grant`` kills a refresh token; a throttled refresh is tried again later."""
    first = make_client()
    first.get("/v1/things")
    client = make_client(tokens=first.tokens)
    clock.advance(3600)
    fake.throttle_sign_in(retry_after=5)
    with pytest.raises(TokenError) as caught:
        client.get("/v1/things")
    assert caught.value.error == "temporarily_unavailable"
    assert client.tokens == first.tokens
    assert client.get("/v1/things").status_code == 200
    assert fake.grants == {"password": 1, "refresh_token": 1}


def test_a_failure_while_renewing_releases_the_lock(
    make_client: MakeClient, fake: FakeApiward
) -> None:
    """A transport error during sign-in leaves the lock free for the next request."""
    client = make_client(transport=failing_once(fake, "/v1/auth/token", connection_lost))
    with pytest.raises(httpx.ReadError):
        client.get("/v1/things")
    assert isinstance(client.auth, ApiwardAuth)
    assert not client.auth._thread_lock.locked()
    assert client.get("/v1/things").status_code == 200


@pytest.mark.anyio
async def test_a_failure_while_renewing_releases_the_async_lock(
    make_async_client: MakeAsyncClient, fake: FakeApiward, clock: FakeClock
) -> None:
    """The async driver releases its lock too when the renewal fails on the way."""
    client = make_async_client(transport=failing_once(fake, "/v1/auth/refresh", connection_lost))
    await client.get("/v1/things")
    clock.advance(3600)
    with pytest.raises(httpx.ReadError):
        await client.get("/v1/things")
    assert isinstance(client.auth, ApiwardAuth)
    assert not client.auth._async_lock.locked()
    assert (await client.get("/v1/things")).status_code == 200
    assert fake.grants == {"password": 2}
