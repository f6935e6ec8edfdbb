"""``Client`` and ``AsyncClient``: httpx clients that authenticate, retry and raise.

Both are ``httpx`` clients (``client.get("/v1/things")`` works as in httpx) with three
additions: the credential arguments build the auth (``_auth``), answers 429 and 503
are retried by the ``RetryPolicy`` (``_retry``), and an error answer is raised as the
matching ``APIError`` (``_errors``). What differs between the two is only how they
sleep and ``await``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any

import anyio
import httpx

from apiward.client._auth import ApiwardAuth, OnTokens, build_auth
from apiward.client._errors import APIError
from apiward.client._pagination import MAX_PAGE_SIZE, Pages
from apiward.client._retry import OnRetry, Retrying, RetryPolicy
from apiward.client._tokens import TokenPair

__all__ = ["AsyncClient", "Client"]

USER_AGENT = f"apiward-client python-httpx/{httpx.__version__}"

QueryParams = httpx.QueryParams | Mapping[str, Any] | None


def _auth_and_headers(
    base_url: httpx.URL | str,
    auth: httpx.Auth | None,
    kwargs: dict[str, Any],
    credentials: dict[str, Any],
    refresh_margin: float,
    clock: Callable[[], float],
) -> httpx.Auth:
    """The auth the arguments describe; sets the default ``User-Agent`` in ``kwargs``."""
    headers = httpx.Headers(kwargs.pop("headers", None))
    headers.setdefault("User-Agent", USER_AGENT)
    kwargs["headers"] = headers
    if auth is not None:
        given = [name for name, value in credentials.items() if value is not None]
        if given:
            raise TypeError(f"auth= cannot be combined with {', '.join(given)}=.")
        return auth
    return build_auth(base_url=base_url, refresh_margin=refresh_margin, clock=clock, **credentials)


def _describe(client: httpx.Client | httpx.AsyncClient) -> str:
    return f"<{type(client).__name__} base_url={str(client.base_url)!r} auth={client.auth!r}>"


def _tokens_of(auth: httpx.Auth | None) -> TokenPair | None:
    return auth.tokens if isinstance(auth, ApiwardAuth) else None


class Client(httpx.Client):
    """An apiward client: an ``httpx.Client`` that authenticates, retries and raises.

    Give it the API's ``base_url`` and one credential: ``api_key=``;
    ``username=`` and ``password=``; ``client_id=`` and ``client_secret=``; or a saved
    ``tokens=TokenPair(...)`` (which may be combined with a username and password or a
    client id and secret to sign in again when the refresh token dies).
    ``on_tokens=`` is called with every new or rotated pair so that you can save it.

    ```python
    from apiward.client import Client

    with Client("https://api.example.com", username="ada@example.com", password=pw) as client:
        for thing in client.paginate("/v1/things"):
            print(thing["name"])
        client.post("/v1/things", json={"name": "sensor-7"}, headers={"Idempotency-Key": "k1"})
    ```

    Other arguments:

    - ``scope``: space-separated scopes to ask for when signing in.
    - ``refresh_margin``: renew the access token this many seconds before it expires (60).
    - ``retry``: a ``RetryPolicy`` for answers 429 and 503; ``on_retry(attempt, wait,
      response)`` is called before each wait.
    - ``raise_for_status``: raise ``APIError`` subclasses for error answers (default);
      ``False`` returns them like httpx does.
    - ``clock`` (Unix seconds) and ``sleep``: replace them in tests so nothing waits.
    - ``auth``: an ``httpx.Auth`` of your own instead of the credential arguments.
    - anything else (``timeout``, ``headers``, ``transport``...) goes to ``httpx.Client``.
    """

    def __init__(
        self,
        base_url: httpx.URL | str,
        *,
        api_key: str | None = None,
        username: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        tokens: TokenPair | None = None,
        on_tokens: OnTokens | None = None,
        scope: str | None = None,
        refresh_margin: float = 60.0,
        retry: RetryPolicy | None = None,
        on_retry: OnRetry | None = None,
        raise_for_status: bool = True,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        auth: httpx.Auth | None = None,
        **kwargs: Any,
    ) -> None:
        credentials = {
            "api_key": api_key,
            "username": username,
            "password": password,
            "client_id": client_id,
            "client_secret": client_secret,
            "tokens": tokens,
            "on_tokens": on_tokens,
            "scope": scope,
        }
        auth = _auth_and_headers(base_url, auth, kwargs, credentials, refresh_margin, clock)
        super().__init__(base_url=base_url, auth=auth, **kwargs)
        self._retry_policy = retry if retry is not None else RetryPolicy()
        self._on_retry = on_retry
        self._raise_errors = raise_for_status
        self._clock = clock
        self._sleep = sleep

    def __repr__(self) -> str:
        return _describe(self)

    @property
    def tokens(self) -> TokenPair | None:
        """The token pair in use (``None`` with an API key, or before signing in).

        ```python
        save_for_next_run(client.tokens)
        ```
        """
        return _tokens_of(self.auth)

    def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: Any = httpx.USE_CLIENT_DEFAULT,
        follow_redirects: Any = httpx.USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        """Send ``request``, retrying 429 and 503 as the policy allows, and raise the
        final answer if it is an error (unless ``raise_for_status=False``).

        ```python
        response = client.send(client.build_request("GET", "/v1/things"))
        ```
        """
        retrying = Retrying(self._retry_policy, request, self._clock())
        while True:
            response = super().send(
                request, stream=True, auth=auth, follow_redirects=follow_redirects
            )
            delay = retrying.wait(response, self._clock())
            if delay is None:
                break
            response.read()
            retrying.announce(delay, response, self._on_retry)
            self._sleep(delay)
        try:
            if not stream or (self._raise_errors and response.is_error):
                response.read()
            if self._raise_errors and response.is_error:
                raise APIError.from_response(response, now=self._clock())
        except BaseException:
            response.close()
            raise
        return response

    def paginate(
        self,
        url: httpx.URL | str,
        *,
        params: QueryParams = None,
        page_size: int = MAX_PAGE_SIZE,
        **kwargs: Any,
    ) -> Iterator[Any]:
        """Every item of a paginated list, fetching ``page_size`` items per request.

        ```python
        for key in client.paginate("/v1/keys", params={"environment": "live"}):
            print(key["id"], key["name"])
        ```

        Other arguments (``headers``, ``timeout``...) go to each ``client.get``.
        """
        pages = Pages(httpx.QueryParams(params), page_size)

        def walk() -> Iterator[Any]:
            while not pages.done:
                yield from pages.read(self.get(url, params=pages.params(), **kwargs))

        return walk()


class AsyncClient(httpx.AsyncClient):
    """The asynchronous apiward client: an ``httpx.AsyncClient``; see ``Client``.

    ```python
    from apiward.client import AsyncClient

    async with AsyncClient("https://api.example.com", client_id=cid, client_secret=cs) as client:
        response = await client.get("/v1/things")
        async for key in client.paginate("/v1/keys"):
            print(key["id"])
    ```

    ``sleep`` is an async function (default ``anyio.sleep``, which works under asyncio
    and trio).
    """

    def __init__(
        self,
        base_url: httpx.URL | str,
        *,
        api_key: str | None = None,
        username: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        tokens: TokenPair | None = None,
        on_tokens: OnTokens | None = None,
        scope: str | None = None,
        refresh_margin: float = 60.0,
        retry: RetryPolicy | None = None,
        on_retry: OnRetry | None = None,
        raise_for_status: bool = True,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        auth: httpx.Auth | None = None,
        **kwargs: Any,
    ) -> None:
        credentials = {
            "api_key": api_key,
            "username": username,
            "password": password,
            "client_id": client_id,
            "client_secret": client_secret,
            "tokens": tokens,
            "on_tokens": on_tokens,
            "scope": scope,
        }
        auth = _auth_and_headers(base_url, auth, kwargs, credentials, refresh_margin, clock)
        super().__init__(base_url=base_url, auth=auth, **kwargs)
        self._retry_policy = retry if retry is not None else RetryPolicy()
        self._on_retry = on_retry
        self._raise_errors = raise_for_status
        self._clock = clock
        self._sleep = sleep

    def __repr__(self) -> str:
        return _describe(self)

    @property
    def tokens(self) -> TokenPair | None:
        """The token pair in use (``None`` with an API key, or before signing in).

        ```python
        save_for_next_run(client.tokens)
        ```
        """
        return _tokens_of(self.auth)

    async def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: Any = httpx.USE_CLIENT_DEFAULT,
        follow_redirects: Any = httpx.USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        """Send ``request``, retrying 429 and 503 as the policy allows, and raise the
        final answer if it is an error (unless ``raise_for_status=False``).

        ```python
        response = await client.send(client.build_request("GET", "/v1/things"))
        ```
        """
        retrying = Retrying(self._retry_policy, request, self._clock())
        while True:
            response = await super().send(
                request, stream=True, auth=auth, follow_redirects=follow_redirects
            )
            delay = retrying.wait(response, self._clock())
            if delay is None:
                break
            await response.aread()
            retrying.announce(delay, response, self._on_retry)
            await self._sleep(delay)
        try:
            if not stream or (self._raise_errors and response.is_error):
                await response.aread()
            if self._raise_errors and response.is_error:
                raise APIError.from_response(response, now=self._clock())
        except BaseException:
            await response.aclose()
            raise
        return response

    def paginate(
        self,
        url: httpx.URL | str,
        *,
        params: QueryParams = None,
        page_size: int = MAX_PAGE_SIZE,
        **kwargs: Any,
    ) -> AsyncIterator[Any]:
        """Every item of a paginated list, for ``async for``; see ``Client.paginate``.

        ```python
        async for key in client.paginate("/v1/keys", page_size=50):
            print(key["id"])
        ```
        """
        pages = Pages(httpx.QueryParams(params), page_size)

        async def walk() -> AsyncIterator[Any]:
            while not pages.done:
                for item in pages.read(await self.get(url, params=pages.params(), **kwargs)):
                    yield item

        return walk()
