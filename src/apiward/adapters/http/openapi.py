"""The OpenAPI document: FastAPI's, with apiward's real error answers.

FastAPI documents a 422 ``HTTPValidationError`` that apiward never sends (bad input is
a 400 in the deployment's error envelope). This replaces it with the answers every
operation can give, in the envelope ``APIWARD_ERROR_STYLE`` selects, so that clients
generated from the document, and schema checkers, see what the server really says.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from fastapi import FastAPI

ERRORS = {
    "400": "Bad input: malformed JSON, wrong types, invalid values. The message says what to fix.",
    "401": "Missing, invalid, disabled, revoked or expired credential.",
    "403": "Valid credential without the required scope, IP, space or environment.",
    "404": "No such resource in the caller's organisation.",
    "409": "The change conflicts with the current state.",
    "413": "The body is larger than APIWARD_MAX_BODY_BYTES.",
    "429": "A rate limit or the usage credits are exhausted; see Retry-After.",
    "503": "The database (or Redis, when failing closed) is unreachable; retry shortly.",
}
OAUTH_ERRORS = {
    "400": "RFC 6749 error: invalid_request, invalid_grant, invalid_scope, ...",
    "401": "invalid_client",
    "413": "The body is larger than APIWARD_MAX_BODY_BYTES.",
    "429": "Too many failed sign-ins; see Retry-After.",
    "503": "The database is unreachable; retry shortly.",
}
_FIELDS: dict[str, Any] = {
    "code": {"type": "string", "examples": ["UNAUTHORIZED"]},
    "reason": {"type": "string", "examples": ["KEY_REVOKED"]},
    "message": {"type": "string"},
    "request_id": {"type": "string"},
}


def error_schema(style: str) -> tuple[str, dict[str, Any]]:
    """The media type and JSON Schema of an error answer in ``style``."""
    if style == "nested":
        inner = {"type": "object", "required": ["message", "code"], "properties": _FIELDS}
        return "application/json", {
            "type": "object",
            "required": ["error"],
            "properties": {"error": inner},
        }
    if style == "detail":
        return "application/json", {
            "type": "object",
            "required": ["detail"],
            "properties": {"detail": {"type": "string"}},
        }
    if style == "problem":
        props = {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            **_FIELDS,
        }
        return "application/problem+json", {
            "type": "object",
            "required": ["type", "title", "status", "detail"],
            "properties": props,
        }
    props = {"status_code": {"type": "integer"}, **_FIELDS, "required_scope": {"type": "string"}}
    return "application/json", {
        "type": "object",
        "required": ["status_code", "code", "message", "request_id"],
        "properties": props,
    }


OAUTH_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "examples": ["invalid_grant"]},
        "error_description": {"type": "string"},
        "request_id": {"type": "string"},
    },
}


def document_errors(
    app: FastAPI,
    style: str,
    api_scopes: Mapping[str, str] = MappingProxyType({}),
    groups: Mapping[str, list[str]] = MappingProxyType({}),
) -> None:
    """Make ``app.openapi()`` describe apiward's error answers, and list the protected
    API's scopes (``APIWARD_API_SCOPES``) as ``x-apiward-api-scopes``."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        media, error = error_schema(style)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Error"] = error
        components["OAuthError"] = OAUTH_ERROR
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        error_ref: dict[str, Any] = {"$ref": "#/components/schemas/Error"}
        oauth_ref: dict[str, Any] = {"$ref": "#/components/schemas/OAuthError"}
        body: dict[str, Any]
        for path, operations in schema.get("paths", {}).items():
            if path == "/v1/auth/introspect":
                # A bearer caller gets API errors; a client with bad Basic credentials,
                # an RFC 6749 invalid_client.
                table, body, kind = ERRORS, {"anyOf": [error_ref, oauth_ref]}, media
            elif path.startswith("/v1/auth/") and path != "/v1/auth/check":
                table, body, kind = OAUTH_ERRORS, oauth_ref, "application/json"
            else:
                table, body, kind = ERRORS, error_ref, media
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)
                for status, description in table.items():
                    responses.setdefault(
                        status,
                        {"description": description, "content": {kind: {"schema": body}}},
                    )
        if api_scopes:
            group_of = {s: name for name, scopes in groups.items() for s in scopes}
            schema["x-apiward-api-scopes"] = [
                {"scope": scope, "description": description}
                | ({"group": group_of[scope]} if scope in group_of else {})
                for scope, description in api_scopes.items()
            ]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
