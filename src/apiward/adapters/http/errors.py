"""The one place where errors become HTTP answers.

``STATUS`` maps each domain error class to a status code; ``ErrorStyle``, the settings
that shape an error answer read once, writes the body in the envelope style the
deployment chose (``APIWARD_ERROR_STYLE``):

- ``default``: ``{"status_code", "code", "reason", "message", "request_id"}`` (a
  superset of the flat shapes in docs/compatibility.md)
- ``nested``: ``{"error": {"message", "code", "reason", "request_id"}}``
- ``detail``: ``{"detail": message}``
- ``problem``: RFC 9457 ``application/problem+json``

Every door answers through one ``ErrorStyle``: the exception handlers (``install``, and
so ``require()``), ``ApiwardMiddleware`` and the fast paths (``answer``,
``error_response``), the request envelope (413) and the connection's head limits
(408, 431).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from string import Template
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from apiward.adapters.http.state import state_of
from apiward.adapters.logging import get_logger
from apiward.core import errors as e

if TYPE_CHECKING:
    from apiward.adapters.settings import Settings

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


@dataclass(frozen=True, slots=True)
class ErrorStyle:
    """How this deployment answers errors: the settings that shape an error answer, read
    once (``Apiward`` builds one when it is made) and handed to whatever answers one (the
    exception handlers, ``require()`` through them, ``ApiwardMiddleware``, the fast
    paths, the request envelope and the connection's head limits), so that every way in
    gives the same body, headers and request id (docs/architecture.md, "Errors")."""

    envelope: str = "default"
    """``APIWARD_ERROR_STYLE``: ``default``, ``nested``, ``detail`` or ``problem``."""
    messages: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """``APIWARD_ERROR_MESSAGES``: a deployment's own wording, by reason (read-only)."""
    fields: tuple[str, ...] | None = None
    """``APIWARD_ERROR_FIELDS``: the envelope's fields kept (all when None)."""
    token: str = "oauth"
    """``APIWARD_TOKEN_ERROR_STYLE``: the token endpoint's errors in OAuth's shape
    (RFC 6749 section 5.2) or, ``deployment``, in the envelope."""

    @classmethod
    def of(cls, settings: Settings) -> ErrorStyle:
        return cls(
            settings.error_style,
            MappingProxyType(dict(settings.error_messages)),
            tuple(settings.error_fields) if settings.error_fields else None,
            settings.token_error_style,
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # ``apiward serve --workers`` hands the head limits, and this style in them, to
        # worker processes by pickling, which a read-only mapping refuses.
        return (_error_style, (self.envelope, dict(self.messages), self.fields, self.token))

    def render(
        self,
        status: int,
        code: str,
        reason: str,
        message: str,
        request_id: str,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Response:
        """An error answer in the deployment's envelope (``envelope``), its message
        replaced when ``messages`` has one for the ``reason``: a template in which
        ``$message`` is apiward's own text, ``$scope`` the missing scope and
        ``$retry_after`` the seconds to wait. ``fields`` keeps only those fields of the
        envelope, for a contract that names them exactly. The request id is sent as
        ``X-Request-Id`` too."""
        if reason in self.messages:
            message = Template(self.messages[reason]).safe_substitute(
                message=message,
                scope=(extra or {}).get("required_scope", ""),
                retry_after=(headers or {}).get("Retry-After", ""),
            )
        style = self.envelope
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
        fields = self.fields
        if fields and style in ("default", "nested"):  # RFC 9457 and "detail" name their own
            inner = body["error"] if style == "nested" else body
            for name in [k for k in inner if k not in fields]:
                del inner[name]
        return Response(
            json.dumps(body),  # ASCII: the body may travel in a header (nginx)
            status_code=status,
            headers={**(headers or {}), "X-Request-Id": request_id},
            media_type=media_type,
        )

    def refusal(self, exc: e.ApiwardError, request_id: str) -> Response:
        """The answer to a domain error: its status, its challenge (RFC 6750 section 3),
        the scope a 403 lacked (``required_scope``), and for the token endpoint's errors
        the shape ``token`` chooses."""
        if isinstance(exc, e.OAuthError):
            return self._oauth(exc, request_id)
        extra: dict[str, Any] = {}
        if isinstance(exc, e.PermissionDenied) and exc.scope is not None:
            extra["required_scope"] = exc.scope
        return self.render(
            status_of(exc), exc.code, exc.reason, exc.message, request_id, challenge(exc), extra
        )

    def _oauth(self, exc: e.OAuthError, request_id: str) -> Response:
        headers = {"Cache-Control": "no-store", "X-Request-Id": request_id}
        if isinstance(exc, e.InvalidClient) and exc.basic:
            headers["WWW-Authenticate"] = 'Basic realm="apiward"'
        if isinstance(exc, e.LoginThrottled):
            headers["Retry-After"] = str(exc.retry_after)
        if self.token == "deployment":
            return self.render(
                status_of(exc), exc.code, exc.reason, exc.message, request_id, headers
            )
        body = {"error": exc.error, "error_description": exc.message, "request_id": request_id}
        return Response(
            json.dumps(body),
            status_code=status_of(exc),
            headers=headers,
            media_type="application/json",
        )


def style_of(request: Request) -> ErrorStyle:
    """The error style of the app serving ``request`` (``install`` hangs it there); an
    app without one was not set up by ``init_app``, and is told so."""
    style = getattr(request.app.state, "error_style", None)
    if not isinstance(style, ErrorStyle):
        raise RuntimeError(
            "This app answers apiward's errors without apiward's error handlers: "
            "call Apiward.init_app(app), or protect it with ApiwardMiddleware."
        )
    return style


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


def error_response(
    request: Request, exc: e.ApiwardError, style: ErrorStyle | None = None
) -> Response:
    """The answer to a domain error raised while serving ``request``, in ``style`` (the
    app's, by default): what every door answers a refusal with. A 5xx is logged, and the
    error kept for the request's metrics (adapters/metrics.py)."""
    if status_of(exc) >= 500:
        log.warning(
            "request_failed", reason=exc.reason, error=exc.message, cause=repr(exc.__cause__)
        )
    state_of(request).error = exc
    return (style or style_of(request)).refusal(exc, request_id_of(request))


def _describe(errors: list[Any]) -> str:
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


async def answer(request: Request, exc: Exception, style: ErrorStyle | None = None) -> Response:
    """The answer the app's exception handlers give for ``exc``, for code that answers
    outside them (the fast paths, ahead of the router; ``ApiwardMiddleware``, in a host
    app without them), in ``style`` (the app's, by default)."""
    if isinstance(exc, e.ApiwardError):
        return error_response(request, exc, style)
    return unexpected(request, exc, style or style_of(request))


async def _domain(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, e.ApiwardError)
    return error_response(request, exc)


async def _validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    state = state_of(request)
    spent = state.principal.spent if state.principal is not None else None
    # The runtime that metered it, else the app's.
    runtime = state.runtime or getattr(request.app.state, "runtime", None)
    limits = getattr(runtime, "limits", None)
    if spent is not None and limits is not None:  # metered before the input was read
        await limits.refund(spent)
    errors = list(exc.errors())
    style = style_of(request)
    if any(err.get("type") == "json_invalid" for err in errors):
        return style.render(
            400,
            "BAD_REQUEST",
            "MALFORMED_JSON",
            "The request body is not valid JSON. Send a JSON object with "
            "Content-Type: application/json.",
            request_id_of(request),
        )
    return style.render(
        400,
        "BAD_REQUEST",
        "INVALID_INPUT",
        f"Invalid request: {_describe(errors)}",
        request_id_of(request),
    )


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code, reason = _HTTP_CODES.get(exc.status_code, ("ERROR", "ERROR"))
    message = str(exc.detail) if exc.detail else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and message == "Not Found":
        message = f"No route {request.method} {request.url.path}. See /docs for the API."
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}."
    return style_of(request).render(
        exc.status_code, code, reason, message, request_id_of(request), dict(exc.headers or {})
    )


def unexpected(request: Request, exc: Exception, style: ErrorStyle) -> Response:
    """A 500 for an error nothing expected: logged with the request id, and answered
    without a word of what failed."""
    # Logged outside the request middleware, whose context binding has ended by now.
    log.error("unhandled_error", request_id=request_id_of(request), exc_info=exc)
    return style.render(
        500,
        "INTERNAL_ERROR",
        "INTERNAL_ERROR",
        "An unexpected error occurred. Quote the request id when you contact support.",
        request_id_of(request),
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    return unexpected(request, exc, style_of(request))


def install(app: FastAPI, style: ErrorStyle) -> None:
    """The app's exception handlers, answering in ``style``."""
    app.state.error_style = style
    app.add_exception_handler(e.ApiwardError, _domain)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)


def json_response(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)


def _error_style(
    envelope: str, messages: dict[str, str], fields: tuple[str, ...] | None, token: str
) -> ErrorStyle:
    """An error style as pickled (``ErrorStyle.__reduce__``), its messages read-only again."""
    return ErrorStyle(envelope, MappingProxyType(messages), fields, token)
