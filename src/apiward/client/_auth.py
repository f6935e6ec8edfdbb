"""Credentials on requests: ``ApiKeyAuth``, and ``ApiwardAuth`` for the token lifecycle.

``ApiwardAuth`` is written once, as the generator ``_flow``, for both the sync and the
async client (the httpx ``Auth`` docstring's advice for flows that need I/O and a
lock). The flow yields the requests to send (the caller's, and token requests) and,
around the part that may renew the token, a ``_Lock`` step. ``sync_auth_flow`` and
``async_auth_flow`` are the two small drivers that carry those steps out, with a
``threading.Lock`` or an ``anyio.Lock``; nothing else differs.

Under that lock a request first checks whether another one renewed the token while it
waited, so a crowd of requests meeting an expiring token triggers one renewal, and a
rotated refresh token is sent once at most.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass, replace
from typing import Any, Protocol

import anyio
import httpx

from apiward.client._errors import APIError, AuthenticationError, TokenError
from apiward.client._headers import parse_bearer_challenge
from apiward.client._redact import mask
from apiward.client._tokens import TokenPair, read_token_response

__all__ = ["ApiKeyAuth", "ApiwardAuth", "OnTokens", "build_auth"]

logger = logging.getLogger("apiward.client")


class OnTokens(Protocol):
    """The ``on_tokens=`` callback: called with every pair obtained or rotated.

    Persist the pair there, so that the next run resumes with ``tokens=`` instead of
    signing in again. It runs while other requests wait for the new token: keep it
    short, and do not make requests with the same client from it.

    ```python
    def save(pair: TokenPair) -> None:
        keyring.set_password("my-app", "apiward", json.dumps(dataclasses.asdict(pair)))

    client = Client(url, username=user, password=pw, on_tokens=save)
    ```
    """

    def __call__(self, pair: TokenPair, /) -> None: ...


# 401 reasons saying the access token, not the request, is the problem (RFC 6750
# section 3.1 ``invalid_token``); renewing the token may cure them.
_RENEWABLE = frozenset({"TOKEN_EXPIRED", "INVALID_TOKEN", "TOKEN_REVOKED"})


class ApiKeyAuth(httpx.Auth):
    """Sends an apiward API key as ``Authorization: Bearer <key>``. Keys are not renewed.

    Works with any httpx client:

    ```python
    with httpx.Client(base_url=url, auth=ApiKeyAuth(os.environ["APIWARD_KEY"])) as client:
        client.get("/v1/keys")
    ```
    """

    def __init__(self, api_key: str) -> None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise ValueError("ApiKeyAuth needs a non-empty API key.")
        self._api_key = api_key.strip()

    def __repr__(self) -> str:
        return f"ApiKeyAuth(api_key={mask(self._api_key)!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._api_key}"
        yield request


class _Lock(enum.Enum):
    """Steps of the flow that the drivers carry out with their own kind of lock."""

    ACQUIRE = "acquire"
    RELEASE = "release"


@dataclass(frozen=True, slots=True)
class _Fetch:
    """A token request: the driver sends it and reads the answer's body."""

    request: httpx.Request


@dataclass(frozen=True, slots=True)
class _Held:
    """The pair in use, when to renew it, and whether the server has refused it.

    Replaced whole, never changed, so a reader without the lock sees a consistent one.
    """

    pair: TokenPair
    renew_at: float | None
    refused: bool = False


_Step = httpx.Request | _Fetch | _Lock


class ApiwardAuth(httpx.Auth):
    """Signs in to apiward, sends the access token, and keeps it fresh.

    Give it a username and password (password grant), a client id and secret (client
    credentials), or a saved ``TokenPair`` (optionally with credentials to fall back
    on). It renews the access token ``refresh_margin`` seconds before it expires
    (proactively) and once when the server answers 401 ``invalid_token``
    (reactively), then retries that request once. A refresh token refused with
    ``invalid_grant`` leads to a new sign-in when credentials allow it, else to a
    ``TokenError``; client credentials, which have no refresh token, simply run the
    grant again. ``on_tokens`` receives every new pair, to persist it.

    Usually built for you by ``Client``; it works with any httpx client too:

    ```python
    auth = ApiwardAuth(username="ada@example.com", password=os.environ["PASSWORD"])
    with httpx.Client(base_url="https://api.example.com", auth=auth) as client:
        client.get("/v1/things")
    ```

    ``base_url`` locates the token endpoints (default: the origin of each request).
    Request bodies are read into memory, so that a request can be sent again after
    its token was renewed.
    """

    requires_request_body = True

    def __init__(
        self,
        *,
        username: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        tokens: TokenPair | None = None,
        on_tokens: OnTokens | None = None,
        scope: str | None = None,
        refresh_margin: float = 60.0,
        base_url: httpx.URL | str | None = None,
        token_path: str = "/v1/auth/token",  # noqa: S107 - a path, not a secret
        refresh_path: str = "/v1/auth/refresh",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if (username is None) != (password is None):
            raise TypeError("Pass username= and password= together.")
        if (client_id is None) != (client_secret is None):
            raise TypeError("Pass client_id= and client_secret= together.")
        if username is not None and client_id is not None:
            raise TypeError(
                "Pass username= and password=, or client_id= and client_secret=: not both."
            )
        if username is None and client_id is None and tokens is None:
            raise TypeError(
                "ApiwardAuth needs username= and password=, client_id= and client_secret=, "
                "or tokens=TokenPair(...)."
            )
        if tokens is not None and not isinstance(tokens, TokenPair):
            raise TypeError(f"tokens= takes a TokenPair, not {type(tokens).__name__}.")
        if on_tokens is not None and not callable(on_tokens):
            raise TypeError("on_tokens= takes a function of one TokenPair.")
        if refresh_margin < 0:
            raise ValueError("refresh_margin= is a number of seconds, at least 0.")
        self._username = username
        self._password = password
        self._client_id = client_id
        self._client_secret = client_secret
        self._on_tokens = on_tokens
        self._scope = scope
        self._margin = float(refresh_margin)
        self._base_url = httpx.URL(base_url) if base_url is not None else None
        self._token_path = token_path
        self._refresh_path = refresh_path
        self._clock = clock
        self._held: _Held | None = None
        if tokens is not None:
            self._held = _Held(tokens, self._renew_at(tokens, lifetime=None))
        self._thread_lock = threading.Lock()
        self._async_lock = anyio.Lock()

    def __repr__(self) -> str:
        if self._username is not None:
            who = f"grant='password', username={self._username!r}"
        elif self._client_id is not None:
            who = (
                f"grant='client_credentials', client_id={self._client_id!r}, "
                f"client_secret={mask(self._client_secret)!r}"
            )
        else:
            who = "grant='refresh_token'"
        return f"ApiwardAuth({who}, tokens={self.tokens!r})"

    @property
    def tokens(self) -> TokenPair | None:
        """The pair in use, or ``None`` before the first sign-in.

        ```python
        save(client.auth.tokens)
        ```
        """
        held = self._held
        return held.pair if held else None

    # The drivers: the only code that differs between sync and async.

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """The flow for callers driving an ``httpx.Auth`` by hand: the sync driver."""
        yield from self.sync_auth_flow(request)

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        request.read()  # requires_request_body: a refused request is sent again
        flow = self._flow(request)
        locked = False
        try:
            step = next(flow)
            while True:
                if step is _Lock.ACQUIRE:
                    self._thread_lock.acquire()
                    locked = True
                    step = next(flow)
                elif step is _Lock.RELEASE:
                    self._thread_lock.release()
                    locked = False
                    step = next(flow)
                elif isinstance(step, _Fetch):
                    response = yield step.request
                    response.read()
                    step = flow.send(response)
                else:
                    response = yield step
                    if response.status_code == 401:
                        response.read()  # small, and the flow reads why
                    step = flow.send(response)
        except StopIteration:
            return
        finally:
            flow.close()  # first, so that the flow cleans up while it still holds the lock
            if locked:
                self._thread_lock.release()

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        await request.aread()
        flow = self._flow(request)
        locked = False
        try:
            step = next(flow)
            while True:
                if step is _Lock.ACQUIRE:
                    await self._async_lock.acquire()
                    locked = True
                    step = next(flow)
                elif step is _Lock.RELEASE:
                    self._async_lock.release()
                    locked = False
                    step = next(flow)
                elif isinstance(step, _Fetch):
                    response = yield step.request
                    await response.aread()
                    step = flow.send(response)
                else:
                    response = yield step
                    if response.status_code == 401:
                        await response.aread()
                    step = flow.send(response)
        except StopIteration:
            return
        finally:
            flow.close()
            if locked:
                self._async_lock.release()

    # The flow, shared by both drivers. It does no I/O and never blocks.

    def _flow(self, request: httpx.Request) -> Generator[_Step, httpx.Response, None]:
        held = self._held
        if self._due(held, self._clock()):
            yield _Lock.ACQUIRE
            held = yield from self._renew(request, held, refused=False)
            yield _Lock.RELEASE
        assert held is not None
        self._authorize(request, held.pair)
        response = yield request
        if not self._token_refused(response):
            return
        logger.debug("The server refused the access token (HTTP 401); renewing it once.")
        yield _Lock.ACQUIRE
        renewed = yield from self._renew(request, held, refused=True)
        yield _Lock.RELEASE
        if renewed is None:
            return  # nothing to renew with: the 401 is the answer
        self._authorize(request, renewed.pair)
        yield request

    def _renew(
        self, request: httpx.Request, seen: _Held | None, *, refused: bool
    ) -> Generator[_Fetch, httpx.Response, _Held | None]:
        """Under the lock: a pair to use instead of ``seen``, renewed only if still needed.

        Returns ``None`` when ``seen`` was refused and nothing can replace it.
        """
        now = self._clock()
        current = self._held
        if current is not None and current is not seen and not self._due(current, now):
            return current  # renewed by another request while this one waited
        if refused and current is not None and current is seen:
            current = self._held = replace(current, refused=True)
        if current is not None and current.pair.refresh_token:
            try:
                pair, lifetime = yield from self._refresh(request, current)
            except TokenError as exc:
                if exc.error != "invalid_grant":
                    raise
                self._drop_refresh_token(current, dead=True)
                if not self._can_sign_in:
                    raise TokenError(
                        f"The refresh token was refused ({exc.message}) and no username and "
                        "password or client credentials are configured to sign in again. "
                        "Sign in again and pass the new TokenPair as tokens=.",
                        error=exc.error,
                        status_code=exc.status_code,
                        request_id=exc.request_id,
                        response=exc.response,
                    ) from exc
                logger.info("The refresh token was refused (invalid_grant); signing in again.")
                pair, lifetime = yield from self._sign_in(request)
        elif self._can_sign_in:
            pair, lifetime = yield from self._sign_in(request)
        elif refused:
            return None
        elif current is not None and not current.refused and not current.pair.expired(now):
            return current  # due for renewal but still valid, and nothing to renew it with
        else:
            raise AuthenticationError(
                "The access token has expired or was refused, and there is no refresh token "
                "or credential to obtain a new one. Sign in again.",
                status_code=401,
                reason="TOKEN_EXPIRED",
            )
        return self._store(pair, lifetime)

    def _refresh(
        self, request: httpx.Request, held: _Held
    ) -> Generator[_Fetch, httpx.Response, tuple[TokenPair, float | None]]:
        refresh_token = held.pair.refresh_token
        assert refresh_token is not None
        body = {"refresh_token": refresh_token}
        try:
            response = yield _Fetch(self._token_request(request, self._refresh_path, body))
        except GeneratorExit:
            # The request failed on the way: the server may have rotated the token
            # without our hearing of it, and a rotated token must not be sent again.
            self._drop_refresh_token(held, dead=False)
            raise
        if response.status_code >= 500:
            self._drop_refresh_token(held, dead=False)
        result = read_token_response(response, now=self._clock(), previous=held.pair)
        logger.debug("Refreshed the access token.")
        return result

    def _sign_in(
        self, request: httpx.Request
    ) -> Generator[_Fetch, httpx.Response, tuple[TokenPair, float | None]]:
        body: dict[str, str]
        if self._username is not None and self._password is not None:
            body = {
                "grant_type": "password",
                "username": self._username,
                "password": self._password,
            }
        else:
            assert self._client_id is not None and self._client_secret is not None
            body = {
                "grant_type": "client_credentials",
                "client_id": self._client_id,
                "client_secret": self._client_secret,
            }
        if self._scope:
            body["scope"] = self._scope
        response = yield _Fetch(self._token_request(request, self._token_path, body))
        result = read_token_response(response, now=self._clock())
        logger.debug("Obtained an access token with the %s grant.", body["grant_type"])
        return result

    # Helpers without I/O.

    @property
    def _can_sign_in(self) -> bool:
        return self._password is not None or self._client_secret is not None

    def _due(self, held: _Held | None, now: float) -> bool:
        """Whether ``held`` must not be sent as it is: missing, refused, or about to expire."""
        if held is None or held.refused:
            return True
        return held.renew_at is not None and now >= held.renew_at

    def _renew_at(self, pair: TokenPair, lifetime: float | None) -> float | None:
        if pair.expires_at is None:
            return None
        # A margin longer than half the token's life would renew it on every request.
        margin = self._margin if lifetime is None else min(self._margin, lifetime / 2)
        return pair.expires_at - margin

    def _store(self, pair: TokenPair, lifetime: float | None) -> _Held:
        held = self._held = _Held(pair, self._renew_at(pair, lifetime))
        if self._on_tokens is not None:
            self._on_tokens(pair)
        return held

    def _drop_refresh_token(self, held: _Held, *, dead: bool) -> None:
        """Never send this refresh token again: it was refused (``dead``), or it may have
        been used, and credentials can replace it (without them it is the only hope)."""
        if self._held is held and (dead or self._can_sign_in):
            self._held = replace(held, pair=replace(held.pair, refresh_token=None))

    def _token_refused(self, response: httpx.Response) -> bool:
        if response.status_code != 401:
            return False
        error = APIError.from_response(response, now=self._clock())
        if error.reason in _RENEWABLE:
            return True
        challenge = parse_bearer_challenge(response.headers.get("www-authenticate"))
        return error.reason is None and challenge.get("error") == "invalid_token"

    def _authorize(self, request: httpx.Request, pair: TokenPair) -> None:
        request.headers["Authorization"] = f"Bearer {pair.access_token}"

    def _token_request(
        self, request: httpx.Request, path: str, body: dict[str, str]
    ) -> httpx.Request:
        """A token request made like ``request``: same origin (unless ``base_url`` says
        otherwise), ``User-Agent`` and timeouts."""
        base = self._base_url
        if base is None:
            url = request.url.copy_with(path=path, query=None, fragment=None)
        else:
            url = base.copy_with(path=base.path.rstrip("/") + path, query=None, fragment=None)
        headers = {"Accept": "application/json"}
        if "user-agent" in request.headers:
            headers["User-Agent"] = request.headers["user-agent"]
        extensions: dict[str, Any] = {}
        if "timeout" in request.extensions:
            extensions["timeout"] = request.extensions["timeout"]
        return httpx.Request("POST", url, json=body, headers=headers, extensions=extensions)


def build_auth(
    *,
    api_key: str | None,
    username: str | None,
    password: str | None,
    client_id: str | None,
    client_secret: str | None,
    tokens: TokenPair | None,
    on_tokens: OnTokens | None,
    scope: str | None,
    refresh_margin: float,
    base_url: httpx.URL | str,
    clock: Callable[[], float],
) -> httpx.Auth:
    """The auth that ``Client(...)``'s credential arguments describe."""
    if api_key is not None:
        others = {
            "username": username,
            "password": password,
            "client_id": client_id,
            "client_secret": client_secret,
            "tokens": tokens,
            "on_tokens": on_tokens,
            "scope": scope,
        }
        given = [name for name, value in others.items() if value is not None]
        if given:
            raise TypeError(f"api_key= cannot be combined with {', '.join(given)}=.")
        return ApiKeyAuth(api_key)
    if all(v is None for v in (username, password, client_id, client_secret, tokens)):
        raise TypeError(
            "Pass one credential: api_key=, username= and password=, "
            "client_id= and client_secret=, or tokens=TokenPair(...)."
        )
    return ApiwardAuth(
        username=username,
        password=password,
        client_id=client_id,
        client_secret=client_secret,
        tokens=tokens,
        on_tokens=on_tokens,
        scope=scope,
        refresh_margin=refresh_margin,
        base_url=base_url or None,
        clock=clock,
    )
