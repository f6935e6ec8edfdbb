"""The one place where errors become HTTP answers.

``STATUS`` maps each domain error class to a status code; ``render`` writes the body in
the envelope style the deployment chose (``APIWARD_ERROR_STYLE``):

- ``default``: ``{"status_code", "code", "reason", "message", "request_id"}`` (a
  superset of the flat shapes in docs/compatibility.md)
- ``nested``: ``{"error": {"message", "code", "reason", "request_id"}}``
- ``detail``: ``{"detail": message}``
- ``problem``: RFC 9457 ``application/problem+json``
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from string import Template
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from apiward.adapters.http.state import state_of
from apiward.adapters.logging import get_logger
from apiward.core import errors as e

log = get_logger("apiward.http")

STATUS: dict[type[e.ApiwardError], int] = {
    e.AuthenticationError: 401,
    e.PermissionDenied: 403,
    e.NotFound: 404,
    e.Conflict: 409,
    e.InvalidInput: 400,
    e.ServiceUnavailable: 503,
    e.RateLimited: 429,
    e.OAuthError: 400,
    e.InvalidClient: 401,
    e.RefreshRefused: 401,
    e.LoginThrottled: 429,
}

_HTTP_CODES = {
    400: ("BAD_REQUEST", "INVALID_INPUT"),
    401: ("UNAUTHORIZED", "UNAUTHORIZED"),
    403: ("FORBIDDEN", "FORBIDDEN"),
    404: ("NOT_FOUND", "NOT_FOUND"),
    405: ("METHOD_NOT_ALLOWED", "METHOD_NOT_ALLOWED"),
    413: ("PAYLOAD_TOO_LARGE", "PAYLOAD_TOO_LARGE"),
    415: ("UNSUPPORTED_MEDIA_TYPE", "UNSUPPORTED_MEDIA_TYPE"),
    429: ("RATE_LIMITED", "RATE_LIMITED"),
}


def status_of(exc: e.ApiwardError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def request_id_of(request: Request) -> str:
    return state_of(request).request_id or "-"


def render(
    style: str,
    status: int,
    code: str,
    reason: str,
    message: str,
    request_id: str,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
    *,
    messages: Mapping[str, str] | None = None,
    fields: Sequence[str] | None = None,
) -> Response:
    """An error answer in the deployment's envelope (``APIWARD_ERROR_STYLE``), its message
    replaced when ``messages`` (``APIWARD_ERROR_MESSAGES``) has one for the ``reason``:
    a template in which ``$message`` is apiward's own text, ``$scope`` the missing scope
    and ``$retry_after`` the seconds to wait. ``fields`` (``APIWARD_ERROR_FIELDS``) keeps
    only those fields of the envelope, for a contract that names them exactly."""
    if messages and reason in messages:
        message = Template(messages[reason]).safe_substitute(
            message=message,
            scope=(extra or {}).get("required_scope", ""),
            retry_after=(headers or {}).get("Retry-After", ""),
        )
    media_type = "application/json"
    body: dict[str, Any]
    if style == "nested":
        body = {
            "error": {
                "message": message,
                "code": code,
                "reason": reason,
                "request_id": request_id,
                **(extra or {}),
            }
        }
    elif style == "detail":
        body = {"detail": message}
    elif style == "problem":
        media_type = "application/problem+json"
        body = {
            "type": f"urn:apiward:error:{reason.lower()}",
            "title": HTTPStatus(status).phrase,
            "status": status,
            "detail": message,
            "code": code,
            "reason": reason,
            "request_id": request_id,
            **(extra or {}),
        }
    else:
        body = {
            "status_code": status,
            "code": code,
            "reason": reason,
            "message": message,
            "request_id": request_id,
            **(extra or {}),
        }
    if fields and style in ("default", "nested"):  # RFC 9457 and "detail" name their own
        inner = body["error"] if style == "nested" else body
        for name in [k for k in inner if k not in fields]:
            del inner[name]
    headers = {**(headers or {}), "X-Request-Id": request_id}
    return Response(
        json.dumps(body),  # ASCII: the body may travel in a header (nginx)
        status_code=status,
        headers=headers,
        media_type=media_type,
    )


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', "'")


def challenge(exc: e.ApiwardError) -> dict[str, str]:
    """The headers an error answer carries: RFC 6750's ``WWW-Authenticate`` challenge of
    a 401 or 403, a 429's ``Retry-After`` and rate-limit fields, a 503's ``Retry-After``."""
    if isinstance(exc, e.ServiceUnavailable):
        return {"Retry-After": str(exc.retry_after)}
    if isinstance(exc, e.UsageExceeded):
        return {}
    if isinstance(exc, e.RateLimited):
        return dict(exc.headers) or {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    if isinstance(exc, e.MissingCredential):
        return {"WWW-Authenticate": 'Bearer realm="apiward"'}
    if isinstance(exc, e.AuthenticationError):
        return {
            "WWW-Authenticate": 'Bearer realm="apiward", error="invalid_token", '
            f'error_description="{_quote(exc.message)}"'
        }
    if isinstance(exc, e.InsufficientScope):
        return {
            "WWW-Authenticate": 'Bearer realm="apiward", error="insufficient_scope", '
            f'scope="{_quote(exc.scope or "")}"'
        }
    return {}


def oauth_response(request: Request, exc: e.OAuthError) -> Response:
    """RFC 6749 section 5.2: token endpoint errors keep the shape OAuth clients expect, or,
    with ``APIWARD_TOKEN_ERROR_STYLE=deployment``, the deployment's error envelope."""
    status = status_of(exc)
    headers = {"Cache-Control": "no-store", "X-Request-Id": request_id_of(request)}
    if isinstance(exc, e.InvalidClient) and exc.basic:
        headers["WWW-Authenticate"] = 'Basic realm="apiward"'
    if isinstance(exc, e.LoginThrottled):
        headers["Retry-After"] = str(exc.retry_after)
    if request.app.state.settings.token_error_style == "deployment":
        return _in_style(request, exc, headers, {})
    body = {
        "error": exc.error,
        "error_description": exc.message,
        "request_id": request_id_of(request),
    }
    return Response(
        json.dumps(body), status_code=status, headers=headers, media_type="application/json"
    )


def error_response(request: Request, exc: e.ApiwardError) -> Response:
    state_of(request).error = exc  # for the request's metrics (adapters/metrics.py)
    if isinstance(exc, e.OAuthError):
        return oauth_response(request, exc)
    extra: dict[str, Any] = {}
    if isinstance(exc, e.PermissionDenied) and exc.scope is not None:
        extra["required_scope"] = exc.scope
    return _in_style(request, exc, challenge(exc), extra)


def _in_style(
    request: Request, exc: e.ApiwardError, headers: dict[str, str], extra: dict[str, Any]
) -> Response:
    """A domain error in the deployment's error style, messages and fields."""
    settings = request.app.state.settings
    return render(
        settings.error_style,
        status_of(exc),
        exc.code,
        exc.reason,
        exc.message,
        request_id_of(request),
        headers,
        extra,
        messages=settings.error_messages,
        fields=settings.error_fields,
    )


def _describe(errors: list[Any]) -> str:
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


async def answer(request: Request, exc: Exception) -> Response:
    """The answer the app's exception handlers give for ``exc``, for code that answers
    before the router (the forward-auth fast path)."""
    if isinstance(exc, e.ApiwardError):
        return await _domain(request, exc)
    return await _unexpected(request, exc)


async def _domain(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, e.ApiwardError)
    if status_of(exc) >= 500:
        log.warning(
            "request_failed", reason=exc.reason, error=exc.message, cause=repr(exc.__cause__)
        )
    return error_response(request, exc)


async def _validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    principal = state_of(request).principal
    spent = principal.spent if principal is not None else None
    runtime = getattr(request.app.state, "runtime", None)
    if spent is not None and runtime is not None:  # metered before the input was read
        await runtime.limits.refund(spent)
    errors = list(exc.errors())
    settings = request.app.state.settings
    if any(err.get("type") == "json_invalid" for err in errors):
        return render(
            settings.error_style,
            400,
            "BAD_REQUEST",
            "MALFORMED_JSON",
            "The request body is not valid JSON. Send a JSON object with "
            "Content-Type: application/json.",
            request_id_of(request),
            messages=settings.error_messages,
            fields=settings.error_fields,
        )
    return render(
        settings.error_style,
        400,
        "BAD_REQUEST",
        "INVALID_INPUT",
        f"Invalid request: {_describe(errors)}",
        request_id_of(request),
        messages=settings.error_messages,
        fields=settings.error_fields,
    )


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code, reason = _HTTP_CODES.get(exc.status_code, ("ERROR", "ERROR"))
    message = str(exc.detail) if exc.detail else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and message == "Not Found":
        message = f"No route {request.method} {request.url.path}. See /docs for the API."
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}."
    settings = request.app.state.settings
    return render(
        settings.error_style,
        exc.status_code,
        code,
        reason,
        message,
        request_id_of(request),
        dict(exc.headers or {}),
        messages=settings.error_messages,
        fields=settings.error_fields,
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    # Logged outside the request middleware, whose context binding has ended by now.
    log.error("unhandled_error", request_id=request_id_of(request), exc_info=exc)
    settings = request.app.state.settings
    return render(
        settings.error_style,
        500,
        "INTERNAL_ERROR",
        "INTERNAL_ERROR",
        "An unexpected error occurred. Quote the request id when you contact support.",
        request_id_of(request),
        messages=settings.error_messages,
        fields=settings.error_fields,
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(e.ApiwardError, _domain)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)


def json_response(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)
