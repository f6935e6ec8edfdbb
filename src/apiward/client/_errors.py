"""Errors raised by the apiward client.

Every exception the SDK raises on purpose is an ``ApiwardError``; an error answer
of the server is an ``APIError`` of the class that matches its status:

    ApiwardError                    anything this package raises on purpose
    ├── UnexpectedResponseError     a success answer the SDK cannot read
    └── APIError                    the server answered an error
        ├── ValidationError         400, 422
        ├── AuthenticationError     401: the credential was refused
        │   └── TokenError          the token endpoint refused a token (RFC 6749 §5.2)
        ├── PermissionDeniedError   403, with ``required_scope``
        ├── NotFoundError           404
        ├── ConflictError           409
        ├── RateLimitedError        429, with ``retry_after``
        └── ServerError             5xx

Network failures stay httpx's own exceptions (``httpx.TransportError`` and its
subclasses), as with any httpx client.

``APIError.from_response`` reads whichever envelope the server is configured with
(``APIWARD_ERROR_STYLE``, docs/compatibility.md): the flat default, ``nested``,
``detail`` and RFC 9457 ``problem``, and the RFC 6749 body of the token endpoints.
"""

from __future__ import annotations

import re
import time
from http import HTTPStatus
from typing import Any, ClassVar

import httpx

from apiward.client._headers import parse_bearer_challenge, parse_retry_after

__all__ = [
    "APIError",
    "ApiwardError",
    "AuthenticationError",
    "ConflictError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ServerError",
    "TokenError",
    "UnexpectedResponseError",
    "ValidationError",
]

_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "BAD_REQUEST",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
    503: "SERVICE_UNAVAILABLE",
}

# The ``detail`` envelope carries the message alone. These are the server's stable
# messages (the wording in docs/compatibility.md), so the reason can
# still be told apart when the body does not name it.
_REASONS_BY_MESSAGE = (
    ("Missing or invalid Authorization header", "MISSING_CREDENTIAL"),
    ("Invalid API key", "INVALID_KEY"),
    ("API key is disabled", "KEY_DISABLED"),
    ("API key has been revoked", "KEY_REVOKED"),
    ("API key has expired", "KEY_EXPIRED"),
    ("Access token has expired", "TOKEN_EXPIRED"),
    ("Access token is invalid", "INVALID_TOKEN"),
    ("Access token has been revoked", "TOKEN_REVOKED"),
    ("does not have the required permission", "INSUFFICIENT_SCOPE"),
)
_SCOPE_IN_MESSAGE = re.compile(r"required permission:\s*(\S+?)\.?$")


def _default_code(status: int) -> str:
    if status in _CODES:
        return _CODES[status]
    try:
        return HTTPStatus(status).name
    except ValueError:
        return "ERROR"


class ApiwardError(Exception):
    """Base class of every error the apiward client raises on purpose.

    ```python
    try:
        client.get("/v1/things")
    except apiward.client.ApiwardError as exc:
        log.error("apiward call failed: %s", exc)
    ```

    ``message`` is the explanation alone, without the status and ids ``str()`` adds.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnexpectedResponseError(ApiwardError):
    """The server answered a success the SDK cannot read (not JSON, or missing a field).

    ```python
    try:
        items = list(client.paginate("/v1/not-a-list"))
    except UnexpectedResponseError as exc:
        print(exc.response.status_code)
    ```
    """

    def __init__(self, message: str, *, response: httpx.Response) -> None:
        super().__init__(message)
        self.response = response


class APIError(ApiwardError):
    """The server answered with an error status.

    ``status_code`` is the HTTP status; ``code`` the broad category clients branch on
    (``UNAUTHORIZED``, ``FORBIDDEN``, ``RATE_LIMITED``...); ``reason`` the specific case
    (``TOKEN_EXPIRED``, ``KEY_REVOKED``, ``INSUFFICIENT_SCOPE``...) or ``None`` when the
    server did not say; ``message`` the server's human explanation; ``request_id`` the
    trace id to quote to support; ``response`` the ``httpx.Response`` (``None`` when the
    SDK refused to send a request, e.g. with an expired token it cannot renew).

    ```python
    try:
        client.delete(f"/v1/keys/{key_id}")
    except APIError as exc:
        print(exc.status_code, exc.code, exc.reason, exc.request_id)
    ```
    """

    default_status: ClassVar[int] = 400

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        reason: str | None = None,
        request_id: str | None = None,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code if status_code is not None else self.default_status
        self.code = code or _default_code(self.status_code)
        self.reason = reason
        self.request_id = request_id
        self.response = response

    def __str__(self) -> str:
        what = " ".join(p for p in (str(self.status_code), self.code, self.reason) if p)
        trace = f", request id {self.request_id}" if self.request_id else ""
        return f"{self.message} ({what}{trace})"

    @classmethod
    def from_response(cls, response: httpx.Response, *, now: float | None = None) -> APIError:
        """The error of the class matching ``response``'s status, whatever its envelope.

        ``now`` (Unix seconds, default the current time) reads a ``Retry-After`` date.
        The response body must have been read.

        ```python
        response = client.get("/v1/keys")  # with raise_for_status=False
        if response.is_error:
            raise APIError.from_response(response)
        ```
        """
        fields = _read_error(response)
        status = response.status_code
        kwargs: dict[str, Any] = {
            "status_code": status,
            "code": fields.get("code"),
            "reason": fields.get("reason"),
            "request_id": fields.get("request_id"),
            "response": response,
        }
        message = fields.get("message") or response.reason_phrase or f"HTTP {status}"
        retry_after = parse_retry_after(
            response.headers.get("retry-after"), time.time() if now is None else now
        )
        if "oauth_error" in fields:
            return TokenError(
                message, error=fields["oauth_error"], retry_after=retry_after, **kwargs
            )
        if status == 401:
            return AuthenticationError(message, **kwargs)
        if status == 403:
            return PermissionDeniedError(
                message, required_scope=fields.get("required_scope"), **kwargs
            )
        if status == 404:
            return NotFoundError(message, **kwargs)
        if status == 409:
            return ConflictError(message, **kwargs)
        if status in (400, 422):
            return ValidationError(message, **kwargs)
        if status == 429:
            return RateLimitedError(message, retry_after=retry_after, **kwargs)
        if status >= 500:
            return ServerError(message, **kwargs)
        return APIError(message, **kwargs)


class ValidationError(APIError):
    """400 or 422: the request was malformed or its values invalid; ``message`` says what.

    ```python
    try:
        client.post("/v1/keys", json={"scopes": ["not a scope"]})
    except ValidationError as exc:
        print(exc.message)
    ```
    """


class AuthenticationError(APIError):
    """401: the credential was missing, invalid, expired, revoked or could not be renewed.

    ```python
    try:
        client.get("/v1/things")
    except AuthenticationError as exc:
        if exc.reason == "KEY_REVOKED":
            rotate_api_key()
    ```
    """

    default_status = 401


class TokenError(AuthenticationError):
    """The token endpoint refused to issue a token (RFC 6749 section 5.2).

    ``error`` is the OAuth error code: ``invalid_grant`` (wrong password, or a refresh
    token that is expired, used or revoked), ``invalid_client``, ``invalid_scope``,
    ``temporarily_unavailable`` (sign-in throttled: see ``retry_after``)...
    ``status_code`` is the real status (400, 401 or 429).

    ```python
    try:
        client = Client(url, username="ada@example.com", password="wrong")
        client.get("/v1/things")
    except TokenError as exc:
        assert exc.error == "invalid_grant"
    ```
    """

    def __init__(
        self,
        message: str,
        *,
        error: str,
        retry_after: float | None = None,
        status_code: int | None = None,
        code: str | None = None,
        reason: str | None = None,
        request_id: str | None = None,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(
            message,
            status_code=status_code,
            code=code,
            reason=reason or error.upper(),
            request_id=request_id,
            response=response,
        )
        self.error = error
        self.retry_after = retry_after


class PermissionDeniedError(APIError):
    """403: the credential is valid but may not do this; ``required_scope`` names what
    was missing (``None`` when the refusal is not about a scope, e.g. an IP allow-list).

    ```python
    try:
        client.get("/v1/users")
    except PermissionDeniedError as exc:
        print(f"ask an admin for {exc.required_scope}")
    ```
    """

    default_status = 403

    def __init__(
        self,
        message: str,
        *,
        required_scope: str | None = None,
        status_code: int | None = None,
        code: str | None = None,
        reason: str | None = None,
        request_id: str | None = None,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(
            message,
            status_code=status_code,
            code=code,
            reason=reason,
            request_id=request_id,
            response=response,
        )
        self.required_scope = required_scope


class NotFoundError(APIError):
    """404: no such resource (or one this credential may not know about).

    ```python
    try:
        client.get("/v1/keys/key_missing")
    except NotFoundError:
        ...
    ```
    """

    default_status = 404


class ConflictError(APIError):
    """409: the request conflicts with the resource's current state.

    ```python
    try:
        client.post("/v1/spaces", json={"name": "existing"})
    except ConflictError as exc:
        print(exc.message)
    ```
    """

    default_status = 409


class RateLimitedError(APIError):
    """429 after the retry policy gave up; ``retry_after`` is how long the server asked
    to wait, in seconds, or ``None`` when it did not say.

    ```python
    try:
        client.get("/v1/things")
    except RateLimitedError as exc:
        schedule_later(delay=exc.retry_after or 60)
    ```
    """

    default_status = 429

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        status_code: int | None = None,
        code: str | None = None,
        reason: str | None = None,
        request_id: str | None = None,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(
            message,
            status_code=status_code,
            code=code,
            reason=reason,
            request_id=request_id,
            response=response,
        )
        self.retry_after = retry_after


class ServerError(APIError):
    """5xx: the server failed; safe requests were already retried on 503.

    ```python
    try:
        client.get("/v1/things")
    except ServerError as exc:
        alert(f"apiward is down: {exc.request_id}")
    ```
    """

    default_status = 500


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)


def _detail_message(detail: Any) -> str | None:
    """FastAPI's own ``detail`` is a string, or a list of validation errors."""
    if isinstance(detail, list):
        parts = [str(e.get("msg", e)) if isinstance(e, dict) else str(e) for e in detail]
        return "; ".join(parts) or None
    return _text(detail)


def _read_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:  # not JSON (UnicodeDecodeError and JSONDecodeError are both)
        return None


def _read_envelope(response: httpx.Response, body: Any) -> dict[str, str]:
    """Fields of whichever envelope ``body`` is in, as strings; absent ones left out."""
    if not isinstance(body, dict):
        text = response.text.strip() if response.content else ""
        return {"message": text[:500]} if text else {}
    content_type = response.headers.get("content-type", "")
    error = body.get("error")
    source: dict[str, Any]
    fields: dict[str, str | None]
    if isinstance(error, dict):  # nested: {"error": {"message", "code", ...}}
        source = error
        fields = {"message": _text(error.get("message"))}
    elif isinstance(error, str):  # RFC 6749 section 5.2: {"error", "error_description"}
        source = body
        fields = {"message": _text(body.get("error_description")) or error, "oauth_error": error}
    elif "application/problem+json" in content_type or "title" in body:  # RFC 9457
        source = body
        fields = {"message": _detail_message(body.get("detail")) or _text(body.get("title"))}
    elif "message" in body:  # the flat default
        source = body
        fields = {"message": _text(body.get("message"))}
    else:  # detail: {"detail": "..."}
        source = body
        fields = {"message": _detail_message(body.get("detail"))}
    for name in ("code", "reason", "request_id", "required_scope"):
        fields.setdefault(name, _text(source.get(name)))
    return {k: v for k, v in fields.items() if v}


_OAUTH_REASONS = frozenset(
    {
        "INVALID_REQUEST",
        "INVALID_CLIENT",
        "INVALID_GRANT",
        "UNAUTHORIZED_CLIENT",
        "UNSUPPORTED_GRANT_TYPE",
        "INVALID_SCOPE",
        "TEMPORARILY_UNAVAILABLE",
    }
)


def _read_error(response: httpx.Response) -> dict[str, str]:
    """The envelope's fields, completed from the headers and the message where absent."""
    fields = _read_envelope(response, _read_body(response))
    challenge = parse_bearer_challenge(response.headers.get("www-authenticate"))
    message = fields.get("message") or challenge.get("error_description", "")
    if message:
        fields["message"] = message
    if "request_id" not in fields and response.headers.get("x-request-id"):
        fields["request_id"] = response.headers["x-request-id"]
    if "oauth_error" not in fields and fields.get("reason") in _OAUTH_REASONS:
        # A token endpoint answering in the deployment's envelope (its reason is the
        # RFC 6749 error in upper case): still a TokenError.
        fields["oauth_error"] = fields["reason"].lower()
    if "reason" not in fields and "oauth_error" not in fields:
        for fragment, reason in _REASONS_BY_MESSAGE:
            if fragment in message:
                fields["reason"] = reason
                break
        else:
            if challenge.get("error") == "insufficient_scope":
                fields["reason"] = "INSUFFICIENT_SCOPE"
    if "required_scope" not in fields:
        scope = challenge.get("scope") if challenge.get("error") == "insufficient_scope" else None
        match = _SCOPE_IN_MESSAGE.search(message)
        if scope or match:
            fields["required_scope"] = scope or (match.group(1) if match else "")
    return fields
