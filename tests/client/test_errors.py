"""Error answers become typed exceptions, whichever envelope the server is set to use."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from apiward.client import (
    APIError,
    ApiwardError,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    TokenError,
    UnexpectedResponseError,
    ValidationError,
)
from apiward.client._headers import parse_bearer_challenge, parse_retry_after

REQUEST = httpx.Request("GET", "https://api.example.com/v1/things")
STYLES = ["default", "nested", "detail", "problem"]


def envelope(
    style: str,
    status: int,
    code: str,
    reason: str,
    message: str,
    request_id: str = "req_42",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> httpx.Response:
    """An error answer shaped as apiward's ``errors.render`` writes it."""
    media = "application/json"
    body: dict[str, Any]
    if style == "nested":
        body = {"error": {"message": message, "code": code, "reason": reason, **extra}}
        body["error"]["request_id"] = request_id
    elif style == "detail":
        body = {"detail": message}
    elif style == "problem":
        media = "application/problem+json"
        body = {
            "type": f"urn:apiward:error:{reason.lower()}",
            "title": "Title",
            "status": status,
            "detail": message,
            "code": code,
            "reason": reason,
            "request_id": request_id,
            **extra,
        }
    else:
        body = {
            "status_code": status,
            "code": code,
            "reason": reason,
            "message": message,
            "request_id": request_id,
            **extra,
        }
    all_headers = {"Content-Type": media, "X-Request-Id": request_id, **(headers or {})}
    return httpx.Response(
        status, content=json.dumps(body).encode(), headers=all_headers, request=REQUEST
    )


CASES = [
    (400, ValidationError, "BAD_REQUEST", "INVALID_INPUT", "Invalid request: name: required"),
    (401, AuthenticationError, "UNAUTHORIZED", "KEY_REVOKED", "API key has been revoked"),
    (401, AuthenticationError, "UNAUTHORIZED", "TOKEN_EXPIRED", "Access token has expired"),
    (
        403,
        PermissionDeniedError,
        "FORBIDDEN",
        "INSUFFICIENT_SCOPE",
        "API key does not have the required permission: customers:read",
    ),
    (404, NotFoundError, "NOT_FOUND", "NOT_FOUND", "No such key."),
    (409, ConflictError, "CONFLICT", "CONFLICT", "A space with this name exists."),
    (422, ValidationError, "BAD_REQUEST", "INVALID_INPUT", "Unprocessable."),
    (429, RateLimitedError, "RATE_LIMITED", "RATE_LIMITED", "Too many requests."),
    (500, ServerError, "INTERNAL_ERROR", "INTERNAL_ERROR", "An unexpected error occurred."),
    (503, ServerError, "SERVICE_UNAVAILABLE", "SERVICE_UNAVAILABLE", "Retry shortly."),
]


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize(("status", "cls", "code", "reason", "message"), CASES)
def test_each_envelope_gives_the_same_error(
    style: str, status: int, cls: type[APIError], code: str, reason: str, message: str
) -> None:
    """Class, status, code, message and request id agree across the four envelopes."""
    error = APIError.from_response(envelope(style, status, code, reason, message))
    assert type(error) is cls
    assert (error.status_code, error.code, error.message) == (status, code, message)
    assert error.request_id == "req_42"
    assert error.response is not None and error.response.status_code == status
    if style != "detail" or reason in ("KEY_REVOKED", "TOKEN_EXPIRED", "INSUFFICIENT_SCOPE"):
        assert error.reason == reason


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("Missing or invalid Authorization header. Use: Authorization: Bearer <api_key>",
         "MISSING_CREDENTIAL"),
        ("Invalid API key", "INVALID_KEY"),
        ("API key is disabled. Re-enable it or use another key.", "KEY_DISABLED"),
        ("API key has been revoked", "KEY_REVOKED"),
        ("API key has expired", "KEY_EXPIRED"),
        ("Access token has expired", "TOKEN_EXPIRED"),
        ("Access token is invalid. Obtain a new one from /v1/auth/token.", "INVALID_TOKEN"),
        ("Access token has been revoked", "TOKEN_REVOKED"),
        ("Something else entirely", None),
    ],
)  # fmt: skip
def test_detail_envelope_reason_is_read_from_the_server_message(
    message: str, reason: str | None
) -> None:
    """``{"detail": ...}`` names no reason; the server's stable messages still tell it."""
    error = APIError.from_response(envelope("detail", 401, "UNAUTHORIZED", "X", message))
    assert error.reason == reason
    assert error.code == "UNAUTHORIZED"


@pytest.mark.parametrize("style", STYLES)
def test_required_scope_is_read_from_the_body_or_the_message(style: str) -> None:
    """``required_scope`` comes from the body field, or from the message in ``detail``."""
    response = envelope(
        style,
        403,
        "FORBIDDEN",
        "INSUFFICIENT_SCOPE",
        "API key does not have the required permission: customers:read",
        required_scope="customers:read",
    )
    error = APIError.from_response(response)
    assert isinstance(error, PermissionDeniedError)
    assert error.required_scope == "customers:read"


def test_required_scope_is_read_from_the_bearer_challenge() -> None:
    """RFC 6750 ``error="insufficient_scope", scope=...`` names it when the body does not."""
    response = httpx.Response(
        403,
        json={"detail": "Forbidden"},
        headers={
            "WWW-Authenticate": 'Bearer realm="apiward", error="insufficient_scope", '
            'scope="users:read"'
        },
        request=REQUEST,
    )
    error = APIError.from_response(response)
    assert isinstance(error, PermissionDeniedError)
    assert (error.reason, error.required_scope) == ("INSUFFICIENT_SCOPE", "users:read")


def test_permission_denied_not_about_scope_has_no_required_scope() -> None:
    """An IP allow-list refusal is a 403 without a scope to ask for."""
    response = envelope("default", 403, "FORBIDDEN", "IP_NOT_ALLOWED", "Your IP is not allowed.")
    error = APIError.from_response(response)
    assert isinstance(error, PermissionDeniedError)
    assert error.required_scope is None


def test_request_id_falls_back_to_the_header() -> None:
    """``detail`` bodies carry no request id; ``X-Request-Id`` does."""
    response = httpx.Response(
        404, json={"detail": "Not Found"}, headers={"X-Request-Id": "req_h"}, request=REQUEST
    )
    assert APIError.from_response(response).request_id == "req_h"


@pytest.mark.parametrize(
    ("header", "expected"),
    [("30", 30.0), ("1.5", 1.5), ("Fri, 15 Jan 2027 08:00:45 GMT", 45.0), (None, None)],
)
def test_rate_limited_error_carries_retry_after(header: str | None, expected: float | None) -> None:
    """``retry_after`` reads seconds or an HTTP date (against ``now``), else ``None``."""
    headers = {"Retry-After": header} if header else {}
    response = envelope(
        "default", 429, "RATE_LIMITED", "RATE_LIMITED", "Slow down.", headers=headers
    )
    now = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
    error = APIError.from_response(response, now=now)
    assert isinstance(error, RateLimitedError)
    assert error.retry_after == expected


def test_oauth_error_body_becomes_a_token_error() -> None:
    """RFC 6749 section 5.2 bodies keep the OAuth ``error`` and its description."""
    response = httpx.Response(
        400,
        json={"error": "invalid_grant", "error_description": "Bad password.", "request_id": "r1"},
        request=REQUEST,
    )
    error = APIError.from_response(response)
    assert isinstance(error, TokenError) and isinstance(error, AuthenticationError)
    assert (error.error, error.message, error.reason, error.code) == (
        "invalid_grant",
        "Bad password.",
        "INVALID_GRANT",
        "BAD_REQUEST",
    )
    assert error.request_id == "r1"


def test_throttled_sign_in_is_a_token_error_with_retry_after() -> None:
    """429 ``temporarily_unavailable`` keeps ``Retry-After`` on the ``TokenError``."""
    response = httpx.Response(
        429,
        json={"error": "temporarily_unavailable", "error_description": "Too many attempts."},
        headers={"Retry-After": "60"},
        request=REQUEST,
    )
    error = APIError.from_response(response)
    assert isinstance(error, TokenError)
    assert (error.status_code, error.code, error.retry_after) == (429, "RATE_LIMITED", 60.0)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"upstream timed out", "upstream timed out"), (b"", "Bad Gateway"), (b"[1, 2]", "[1, 2]")],
)
def test_a_body_in_no_envelope_still_gives_a_message(content: bytes, message: str) -> None:
    """A proxy's plain-text 502 (or an empty one) is a ``ServerError`` all the same."""
    error = APIError.from_response(httpx.Response(502, content=content, request=REQUEST))
    assert isinstance(error, ServerError)
    assert (error.message, error.code, error.reason) == (message, "BAD_GATEWAY", None)


def test_fastapi_validation_detail_list_is_joined() -> None:
    """FastAPI's own ``{"detail": [...]}`` becomes one readable message."""
    body = {"detail": [{"msg": "field required"}, {"msg": "not an int"}]}
    error = APIError.from_response(httpx.Response(422, json=body, request=REQUEST))
    assert isinstance(error, ValidationError)
    assert error.message == "field required; not an int"


@pytest.mark.parametrize(
    ("status", "cls", "code"),
    [
        (405, APIError, "METHOD_NOT_ALLOWED"),
        (418, APIError, "IM_A_TEAPOT"),
        (499, APIError, "ERROR"),
        (504, ServerError, "GATEWAY_TIMEOUT"),
        (599, ServerError, "ERROR"),
    ],
)
def test_unmapped_status_gets_a_class_and_code_from_its_number(
    status: int, cls: type[APIError], code: str
) -> None:
    """Without a body code, the code is the status's name (``ERROR`` if it has none)."""
    error = APIError.from_response(httpx.Response(status, json={}, request=REQUEST))
    assert type(error) is cls
    assert (error.status_code, error.code) == (status, code)


def test_str_names_status_code_reason_and_request_id() -> None:
    """``str(error)`` is what a log line needs: message, status, code, reason, trace id."""
    response = envelope("nested", 401, "UNAUTHORIZED", "KEY_REVOKED", "API key has been revoked")
    assert str(APIError.from_response(response)) == (
        "API key has been revoked (401 UNAUTHORIZED KEY_REVOKED, request id req_42)"
    )


def test_errors_built_by_hand_default_their_status_and_code() -> None:
    """Each class knows its status, so the SDK can raise one without a response."""
    error = AuthenticationError("Sign in again.", reason="TOKEN_EXPIRED")
    assert (error.status_code, error.code, error.response) == (401, "UNAUTHORIZED", None)
    assert str(error) == "Sign in again. (401 UNAUTHORIZED TOKEN_EXPIRED)"


@pytest.mark.parametrize(
    ("cls", "parent"),
    [
        (APIError, ApiwardError),
        (UnexpectedResponseError, ApiwardError),
        (ValidationError, APIError),
        (AuthenticationError, APIError),
        (TokenError, AuthenticationError),
        (PermissionDeniedError, APIError),
        (NotFoundError, APIError),
        (ConflictError, APIError),
        (RateLimitedError, APIError),
        (ServerError, APIError),
    ],
)
def test_hierarchy_is_the_one_drawn_in_the_docstring(cls: type, parent: type) -> None:
    """Each class sits where ``apiward.client._errors``'s docstring draws it."""
    assert cls.__mro__[1] is parent
    assert cls.__name__ in __import__("apiward.client._errors").client._errors.__doc__


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("-5", 0.0),
        ("soon", None),
        ("inf", None),
        ("nan", None),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
        ("Thu, 01 Jan 1970 00:00:00", None),
        ("  12 ", 12.0),
    ],
)
def test_retry_after_values(value: str, expected: float | None) -> None:
    """Negative and past values mean now; unreadable ones, and dates without zone, None."""
    assert parse_retry_after(value, now=1_800_000_000.0) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            'Bearer realm="apiward", error="invalid_token", error_description="Token expired"',
            {"realm": "apiward", "error": "invalid_token", "error_description": "Token expired"},
        ),
        ('Bearer error=invalid_token', {"error": "invalid_token"}),
        ('Bearer realm="a \\"quoted\\" realm"', {"realm": 'a "quoted" realm'}),
        ('Basic realm="apiward"', {}),
        ("", {}),
        (None, {}),
    ],
)  # fmt: skip
def test_bearer_challenge_parameters(header: str | None, expected: dict[str, str]) -> None:
    """RFC 6750 challenges: quoted or bare values, escapes; other schemes give nothing."""
    assert parse_bearer_challenge(header) == expected
