"""An in-memory apiward, to test code that uses ``apiward.client`` without a server.

``FakeApiward`` is an ``httpx.MockTransport`` handler that speaks apiward's public
contract (the README's HTTP API): the token endpoints with password, client credentials
and single-use rotating refresh tokens; bearer API keys and access tokens with scopes;
paginated lists; the four error envelopes; 429 and 503 with ``Retry-After``. It can be
told to expire every access token now, to rate-limit or fail the next requests, and to
throttle sign-ins, and it records what it was asked.

```python
from apiward.client import Client
from apiward.client.testing import FakeApiward

fake = FakeApiward()
fake.add_user("ada@example.com", "s3cret", scopes=["things:read"])
fake.add_collection("/v1/things", [{"id": n} for n in range(250)], scope="things:read")

with Client(
    "https://api.example.com",
    username="ada@example.com",
    password="s3cret",
    transport=fake.transport(),
) as client:
    assert len(list(client.paginate("/v1/things"))) == 250
    fake.expire_access_tokens()
    client.get("/v1/things")  # refused, refreshed, retried
assert fake.grants["refresh_token"] == 1
```

It is thread-safe, and works with ``AsyncClient`` too (``MockTransport`` serves both).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import itertools
import json
import math
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote_plus

import httpx

from apiward.client._headers import parse_retry_after

__all__ = ["ErrorStyle", "FakeApiward", "Handler"]

ErrorStyle = Literal["default", "nested", "detail", "problem"]
Handler = Callable[[httpx.Request], httpx.Response]

TOKEN_PATH = "/v1/auth/token"
REFRESH_PATH = "/v1/auth/refresh"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@dataclass
class _Subject:
    kind: Literal["user", "client", "key"]
    name: str
    scopes: tuple[str, ...]


@dataclass
class _Access:
    subject: _Subject
    expires_at: float


@dataclass
class _Refresh:
    subject: _Subject
    family: int
    expires_at: float
    used: bool = False


@dataclass
class _Route:
    handler: Handler
    scope: str | None


@dataclass
class _Trouble:
    """Answers queued for the next requests: rate limits, outages, throttled sign-ins."""

    status: int
    retry_after: str | None
    count: int


@dataclass
class _ApiError(Exception):
    status: int
    code: str
    reason: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _OAuthError(Exception):
    status: int
    error: str
    description: str
    headers: dict[str, str] = field(default_factory=dict)


def _grants(held: Iterable[str], needed: str) -> bool:
    resource, _, _ = needed.partition(":")
    return any(s in ("*", needed, f"{resource}:*") for s in held)


def _retry_after(value: float | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)


class FakeApiward:
    """An in-memory apiward server: pass it to ``httpx.MockTransport``, or use ``transport()``.

    ```python
    fake = FakeApiward(error_style="nested", access_token_ttl=600)
    fake.add_client("svc", "svc-secret", scopes=["things:read"])
    fake.add_collection("/v1/things", [{"id": 1}], scope="things:read")
    client = Client(url, client_id="svc", client_secret="svc-secret", transport=fake.transport())
    ```

    Tell it how to misbehave: ``expire_access_tokens()``, ``rate_limit(n)``,
    ``unavailable(n)``, ``throttle_sign_in(n)``, or set ``error_style``. See what it
    was asked: ``grants`` counts tokens issued per grant (``"password"``,
    ``"client_credentials"``, ``"refresh_token"``), ``requests`` lists every request,
    ``refused`` the reason of every 401 it answered.

    ``clock`` (Unix seconds) decides expiry; share one with the client under test.
    """

    def __init__(
        self,
        *,
        error_style: ErrorStyle = "default",
        access_token_ttl: float = 3600.0,
        refresh_token_ttl: float = 86400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.error_style: ErrorStyle = error_style
        self.access_token_ttl = access_token_ttl
        self.refresh_token_ttl = refresh_token_ttl
        self.clock = clock
        self.grants: Counter[str] = Counter()
        self.requests: list[httpx.Request] = []
        self.refused: list[str] = []
        self._users: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._clients: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._keys: dict[str, _Subject] = {}
        self._revoked_keys: set[str] = set()
        self._access: dict[str, _Access] = {}
        self._refresh: dict[str, _Refresh] = {}
        self._revoked_families: set[int] = set()
        self._families = itertools.count(1)
        self._request_ids = itertools.count(1)
        self._routes: dict[tuple[str, str], _Route] = {}
        self._api_trouble: list[_Trouble] = []
        self._sign_in_trouble: list[_Trouble] = []
        self._lock = threading.Lock()

    # Setting it up.

    def add_user(self, username: str, password: str, *, scopes: Sequence[str] = ("*",)) -> None:
        """A user who can sign in with the password grant, holding ``scopes``."""
        self._users[username] = (password, tuple(scopes))

    def add_client(
        self, client_id: str, client_secret: str, *, scopes: Sequence[str] = ("*",)
    ) -> None:
        """An OAuth client for the client credentials grant, holding ``scopes``."""
        self._clients[client_id] = (client_secret, tuple(scopes))

    def add_api_key(self, key: str | None = None, *, scopes: Sequence[str] = ("*",)) -> str:
        """An API key holding ``scopes``; a new ``aw_test_...`` one unless given. Returns it."""
        key = key or f"aw_test_{secrets.token_urlsafe(24)}"
        self._keys[key] = _Subject("key", key, tuple(scopes))
        return key

    def revoke_api_key(self, key: str) -> None:
        """From now on ``key`` is answered 401 ``KEY_REVOKED``."""
        self._revoked_keys.add(key)

    def add_collection(self, path: str, items: Sequence[Any], *, scope: str | None = None) -> None:
        """``GET path`` answers ``items`` paginated (``?page=&page_size=``, at most 100)."""
        stored = list(items)

        def handler(request: httpx.Request) -> httpx.Response:
            page = self._int_param(request, "page", 1, 1, 1_000_000)
            size = self._int_param(request, "page_size", 20, 1, 100)
            start = (page - 1) * size
            body = {
                "items": stored[start : start + size],
                "total": len(stored),
                "page": page,
                "page_size": size,
            }
            return httpx.Response(200, json=body)

        self.add_route("GET", path, handler, scope=scope)

    def add_route(
        self, method: str, path: str, handler: Handler, *, scope: str | None = None
    ) -> None:
        """``method path`` is answered by ``handler`` for callers holding ``scope``."""
        self._routes[(method.upper(), path)] = _Route(handler, scope)

    # Making it misbehave.

    def expire_access_tokens(self) -> None:
        """Every access token issued so far is expired from now on (401 ``TOKEN_EXPIRED``)."""
        with self._lock:
            now = self.clock()
            for access in self._access.values():
                access.expires_at = min(access.expires_at, now)

    def rate_limit(self, count: int = 1, *, retry_after: float | str | None = 1) -> None:
        """Answer the next ``count`` API requests 429 ``RATE_LIMITED``.

        ``retry_after`` is sent as ``Retry-After``: seconds, an HTTP date, or ``None``.
        """
        self._api_trouble.append(_Trouble(429, _retry_after(retry_after), count))

    def unavailable(self, count: int = 1, *, retry_after: float | str | None = None) -> None:
        """Answer the next ``count`` API requests 503 ``SERVICE_UNAVAILABLE``."""
        self._api_trouble.append(_Trouble(503, _retry_after(retry_after), count))

    def throttle_sign_in(self, count: int = 1, *, retry_after: float = 60) -> None:
        """Answer the next ``count`` token requests 429 ``temporarily_unavailable``."""
        self._sign_in_trouble.append(_Trouble(429, _retry_after(retry_after), count))

    # Serving.

    def transport(self) -> httpx.MockTransport:
        """An ``httpx.MockTransport`` served by this fake, for ``Client(transport=...)``."""
        return httpx.MockTransport(self)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        with self._lock:
            self.requests.append(request)
            request_id = f"req_{next(self._request_ids):06d}"
            response = self._serve(request, request_id)
        response.headers["X-Request-Id"] = request_id
        return response

    def _serve(self, request: httpx.Request, request_id: str) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path in (TOKEN_PATH, REFRESH_PATH):
            try:
                return self._token_endpoint(request, refresh_only=path == REFRESH_PATH)
            except _OAuthError as exc:
                body = {
                    "error": exc.error,
                    "error_description": exc.description,
                    "request_id": request_id,
                }
                headers = {**NO_STORE, **exc.headers}
                return httpx.Response(exc.status, json=body, headers=headers)
        try:
            return self._api(request)
        except _ApiError as exc:
            if exc.status == 401:
                self.refused.append(exc.reason)
            return self._render(exc, request_id)

    # The token endpoints (RFC 6749).

    def _token_endpoint(self, request: httpx.Request, *, refresh_only: bool) -> httpx.Response:
        trouble = self._take(self._sign_in_trouble)
        if trouble is not None:
            raise _OAuthError(
                429,
                "temporarily_unavailable",
                "Too many sign-in attempts. Retry later.",
                {"Retry-After": trouble.retry_after} if trouble.retry_after else {},
            )
        params = self._params(request)
        grant = "refresh_token" if refresh_only else params.get("grant_type")
        if grant is None and "username" in params and "password" in params:
            grant = "password"
        if grant == "password":
            subject = self._password_subject(params)
            refresh = True
        elif grant == "client_credentials":
            subject = self._client_subject(request, params)
            refresh = False
        elif grant == "refresh_token":
            # apiward's /v1/auth/refresh refuses an unusable token with a 401, the token
            # endpoint with RFC 6749's 400.
            return self._rotate(params.get("refresh_token", ""), 401 if refresh_only else 400)
        elif grant is None:
            raise _OAuthError(400, "invalid_request", "Send grant_type (or username and password).")
        else:
            raise _OAuthError(
                400, "unsupported_grant_type", f"Grant type {grant!r} is not supported."
            )
        return self._issue(subject, grant, family=next(self._families) if refresh else None)

    def _password_subject(self, params: dict[str, str]) -> _Subject:
        username, password = params.get("username", ""), params.get("password", "")
        stored = self._users.get(username)
        expected = stored[0] if stored else secrets.token_hex(16)
        if not hmac.compare_digest(password.encode(), expected.encode()) or stored is None:
            raise _OAuthError(400, "invalid_grant", "Invalid username or password.")
        return _Subject("user", username, stored[1])

    def _client_subject(self, request: httpx.Request, params: dict[str, str]) -> _Subject:
        basic = self._basic(request)
        client_id, secret = basic or (params.get("client_id", ""), params.get("client_secret", ""))
        stored = self._clients.get(client_id)
        expected = stored[0] if stored else secrets.token_hex(16)
        if not hmac.compare_digest(secret.encode(), expected.encode()) or stored is None:
            headers = {"WWW-Authenticate": 'Basic realm="apiward"'} if basic else {}
            raise _OAuthError(401, "invalid_client", "Client authentication failed.", headers)
        return _Subject("client", client_id, stored[1])

    def _rotate(self, token: str, refused: int) -> httpx.Response:
        record = self._refresh.get(token)
        if record is None or record.family in self._revoked_families:
            raise _OAuthError(refused, "invalid_grant", "The refresh token is invalid or revoked.")
        if record.used:
            # A replayed refresh token means it leaked: end the whole session.
            self._revoked_families.add(record.family)
            raise _OAuthError(
                refused,
                "invalid_grant",
                "The refresh token was already used; the session is revoked.",
            )
        if self.clock() >= record.expires_at:
            raise _OAuthError(refused, "invalid_grant", "The refresh token has expired.")
        record.used = True
        return self._issue(record.subject, "refresh_token", family=record.family)

    def _issue(self, subject: _Subject, grant: str, *, family: int | None) -> httpx.Response:
        now = self.clock()
        access = f"fake_at_{secrets.token_urlsafe(24)}"
        self._access[access] = _Access(subject, now + self.access_token_ttl)
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": access,
            "expires_in": int(self.access_token_ttl),
            "scope": " ".join(subject.scopes),
        }
        if family is not None:
            refresh = f"fake_rt_{secrets.token_urlsafe(24)}"
            self._refresh[refresh] = _Refresh(subject, family, now + self.refresh_token_ttl)
            body["refresh_token"] = refresh
        self.grants[grant] += 1
        return httpx.Response(200, json=body, headers=NO_STORE)

    # Protected API routes.

    def _api(self, request: httpx.Request) -> httpx.Response:
        route = self._routes.get((request.method, request.url.path))
        if route is None:
            raise _ApiError(
                404,
                "NOT_FOUND",
                "NOT_FOUND",
                f"No route {request.method} {request.url.path}. See /docs for the API.",
            )
        trouble = self._take(self._api_trouble)
        if trouble is not None:
            headers = {"Retry-After": trouble.retry_after} if trouble.retry_after else {}
            if trouble.status == 429:
                now = self.clock()
                wait = parse_retry_after(trouble.retry_after, now)
                reset = math.ceil(now + (60 if wait is None else wait))
                headers.update(
                    {
                        "X-RateLimit-Limit": "100",
                        "X-RateLimit-Remaining": "0",
                        "X-RateLimit-Reset": str(reset),
                    }
                )
                raise _ApiError(
                    429, "RATE_LIMITED", "RATE_LIMITED", "Too many requests. Retry later.", headers
                )
            raise _ApiError(
                503,
                "SERVICE_UNAVAILABLE",
                "SERVICE_UNAVAILABLE",
                "The service is temporarily unavailable. Retry shortly.",
                headers,
            )
        subject = self._authenticate(request)
        if route.scope is not None and not _grants(subject.scopes, route.scope):
            what = "API key" if subject.kind == "key" else "Access token"
            raise _ApiError(
                403,
                "FORBIDDEN",
                "INSUFFICIENT_SCOPE",
                f"{what} does not have the required permission: {route.scope}",
                {
                    "WWW-Authenticate": 'Bearer realm="apiward", error="insufficient_scope", '
                    f'scope="{route.scope}"'
                },
                {"required_scope": route.scope},
            )
        return route.handler(request)

    def _authenticate(self, request: httpx.Request) -> _Subject:
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise _ApiError(
                401,
                "UNAUTHORIZED",
                "MISSING_CREDENTIAL",
                "Missing or invalid Authorization header. Use: Authorization: Bearer <api_key>",
                {"WWW-Authenticate": 'Bearer realm="apiward"'},
            )
        if credential in self._keys:
            if credential in self._revoked_keys:
                raise self._refuse("KEY_REVOKED", "API key has been revoked")
            return self._keys[credential]
        access = self._access.get(credential)
        if access is None:
            if credential.startswith("fake_at_"):
                raise self._refuse(
                    "INVALID_TOKEN",
                    "Access token is invalid. Obtain a new one from /v1/auth/token.",
                )
            raise self._refuse("INVALID_KEY", "Invalid API key")
        if self.clock() >= access.expires_at:
            raise self._refuse("TOKEN_EXPIRED", "Access token has expired")
        return access.subject

    @staticmethod
    def _refuse(reason: str, message: str) -> _ApiError:
        challenge = f'Bearer realm="apiward", error="invalid_token", error_description="{message}"'
        return _ApiError(401, "UNAUTHORIZED", reason, message, {"WWW-Authenticate": challenge})

    # Helpers.

    @staticmethod
    def _take(queue: list[_Trouble]) -> _Trouble | None:
        while queue and queue[0].count <= 0:
            queue.pop(0)
        if not queue:
            return None
        queue[0].count -= 1
        return queue[0]

    @staticmethod
    def _params(request: httpx.Request) -> dict[str, str]:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        raw = request.content
        if content_type == "application/x-www-form-urlencoded":
            return dict(parse_qsl(raw.decode(), keep_blank_values=True))
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            raise _OAuthError(400, "invalid_request", "The body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise _OAuthError(400, "invalid_request", "The body must be a JSON object.")
        return {str(k): str(v) for k, v in data.items() if v is not None}

    @staticmethod
    def _basic(request: httpx.Request) -> tuple[str, str] | None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise _OAuthError(
                401, "invalid_client", "The Basic credentials are malformed."
            ) from None
        client_id, _, secret = decoded.partition(":")
        return unquote_plus(client_id), unquote_plus(secret)

    def _int_param(
        self, request: httpx.Request, name: str, default: int, low: int, high: int
    ) -> int:
        raw = request.url.params.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise _ApiError(
                400,
                "BAD_REQUEST",
                "INVALID_INPUT",
                f"Invalid request: {name}: must be an integer from {low} to {high}",
            )
        return value

    def _render(self, exc: _ApiError, request_id: str) -> httpx.Response:
        """``exc`` in the envelope of ``error_style``, as apiward's ``ErrorStyle.render`` does."""
        style = self.error_style
        headers = dict(exc.headers)
        body: dict[str, Any]
        if style == "nested":
            body = {
                "error": {
                    "message": exc.message,
                    "code": exc.code,
                    "reason": exc.reason,
                    "request_id": request_id,
                    **exc.extra,
                }
            }
        elif style == "detail":
            body = {"detail": exc.message}
        elif style == "problem":
            body = {
                "type": f"urn:apiward:error:{exc.reason.lower()}",
                "title": HTTPStatus(exc.status).phrase,
                "status": exc.status,
                "detail": exc.message,
                "code": exc.code,
                "reason": exc.reason,
                "request_id": request_id,
                **exc.extra,
            }
        else:
            body = {
                "status_code": exc.status,
                "code": exc.code,
                "reason": exc.reason,
                "message": exc.message,
                "request_id": request_id,
                **exc.extra,
            }
        content_type = "application/problem+json" if style == "problem" else "application/json"
        headers["Content-Type"] = content_type
        return httpx.Response(exc.status, content=json.dumps(body).encode(), headers=headers)
