"""Token endpoints: `/v1/auth/*` and `/.well-known/*` (RFC 6749, 7009, 7517, 7662, 8414)."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any
from urllib.parse import unquote_plus

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from apiward.adapters.http.access import CLIENT, PUBLIC, Door, Needs, declare
from apiward.adapters.http.deps import KeyringDep, SettingsDep, TokensDep, runtime_of
from apiward.adapters.http.schemas.oauth import (
    TokenRequest,
    TokenResponse,
)
from apiward.adapters.http.security import authenticate, client_ip, request_context
from apiward.adapters.http.state import state_of
from apiward.adapters.runtime import Runtime
from apiward.core import jsontext
from apiward.core.errors import (
    InsufficientScope,
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    RefreshRefused,
    UnsupportedGrantType,
)
from apiward.core.models import OAuthClient
from apiward.services.tokens import EXCHANGE_SCOPE, Tokens

router = APIRouter(tags=["OAuth 2.0"])

GRANT_PASSWORD = "password"
GRANT_REFRESH = "refresh_token"
GRANT_CLIENT = "client_credentials"
GRANT_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
METADATA_CACHE = {"Cache-Control": "public, max-age=3600"}


async def _params(request: Request) -> dict[str, str]:
    """JSON or form body, as strings; anything else is an ``invalid_request``."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    if content_type == "application/json" or (not content_type and raw.startswith(b"{")):
        try:
            data = jsontext.load(raw or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise InvalidRequest(
                f"The body is not valid JSON (objects and arrays nest at most "
                f"{jsontext.MAX_DEPTH} levels)."
            ) from None
        if not isinstance(data, dict):
            raise InvalidRequest("The body must be a JSON object.")
    elif content_type == "application/x-www-form-urlencoded":
        data = form_fields(raw)
    elif not content_type:
        data = {}  # a body of no declared type is read as no parameters, not as a form
    else:
        raise InvalidRequest(
            "Send the parameters as application/json or application/x-www-form-urlencoded."
        )
    params: dict[str, str] = {}
    for key, value in data.items():
        if value is None:
            continue
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise InvalidRequest(f"Parameter {key!r} must be a string.")
        if len(str(value)) > 4096:
            raise InvalidRequest(f"Parameter {key!r} is too long.")
        params[key] = str(value)
    return params


MAX_FORM_FIELDS = 1000
MAX_FORM_FIELD_BYTES = 1024 * 1024
_FIELD = re.compile("[^&]+")


def form_fields(raw: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body's fields, the last of a repeated
    name winning: what Starlette's form parser reads, at about a third of its cost on a
    grant's body (one ``unquote_plus`` per name and value, the body read as latin-1 as
    it does). Empty
    fields between ``&`` are skipped; more than 1000 fields, or one over 1 MiB, is an
    ``invalid_request``."""
    fields: dict[str, str] = {}
    for count, part in enumerate(_FIELD.finditer(raw.decode("latin-1")), 1):
        if count > MAX_FORM_FIELDS:  # refused at the first field too many, as it comes
            raise InvalidRequest("The form body cannot be parsed.")
        name, _, value = part.group().partition("=")
        if len(name) + len(value) > MAX_FORM_FIELD_BYTES:
            raise InvalidRequest("The form body cannot be parsed.")
        fields[unquote_plus(name)] = unquote_plus(value)
    return fields


def _basic(request: Request) -> tuple[str, str] | None:
    """Client credentials from HTTP Basic (RFC 6749 section 2.3.1: form-encoded parts)."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidClient("The Basic credentials are malformed.", basic=True) from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise InvalidClient("The Basic credentials are malformed.", basic=True)
    return unquote_plus(client_id), unquote_plus(secret)


async def _client(
    params: dict[str, str], request: Request, tokens: Tokens
) -> tuple[str, str, bool]:
    """The client's id and secret, and whether they came as HTTP Basic. Malformed or
    missing credentials fail the client's authentication like a wrong secret does:
    they count against the address's failure limit (``Tokens.client_failed``)."""
    try:
        return _credentials(params, request)
    except InvalidClient:
        await tokens.client_failed(_ip(request))
        raise


def _ip(request: Request) -> str | None:
    return client_ip(request, runtime_of(request).trusted_proxies)


def _credentials(params: dict[str, str], request: Request) -> tuple[str, str, bool]:
    basic = _basic(request)
    if basic is not None:
        if "client_secret" in params:
            raise InvalidRequest("Authenticate the client with Basic or the body, not both.")
        return basic[0], basic[1], True
    client_id, secret = params.get("client_id"), params.get("client_secret")
    if not client_id or not secret:
        raise InvalidClient("Send client_id and client_secret, in the body or as HTTP Basic.")
    return client_id, secret, False


async def _optional_client(
    params: dict[str, str], request: Request, tokens: Tokens
) -> OAuthClient | None:
    """The client authenticating this request (HTTP Basic, or ``client_id`` and
    ``client_secret`` in the body: RFC 6749 section 2.3.1), if it sent credentials."""
    if "client_secret" not in params and not _says_basic(request):
        return None
    client_id, secret, basic = await _client(params, request, tokens)
    return await tokens.authenticate_client(client_id, secret, ip=_ip(request), basic=basic)


def _says_basic(request: Request) -> bool:
    scheme, _, _ = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "basic"


def _answer(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, headers=NO_STORE)


@router.post(
    "/v1/auth/token",
    response_model=TokenResponse,
    summary="Obtain a token",
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {"schema": TokenRequest.model_json_schema()},
                "application/x-www-form-urlencoded": {"schema": TokenRequest.model_json_schema()},
            }
        }
    },
)
@declare(CLIENT)
async def token(request: Request, tokens: TokensDep) -> JSONResponse:
    """The OAuth 2.0 token endpoint: password, refresh_token, client_credentials and
    RFC 8693 token exchange. `{"username", "password"}` alone is a password grant."""
    params = await _params(request)
    context = request_context(request)
    grant = params.get("grant_type")
    if grant is None and "username" in params and "password" in params:
        grant = GRANT_PASSWORD
    state_of(request).grant_type = grant or "none"  # for metrics
    scope = params.get("scope")
    if grant == GRANT_PASSWORD:
        answer = await tokens.password_grant(
            params.get("username", ""),
            params.get("password", ""),
            scope=scope,
            org_id=params.get("org_id"),
            environment=params.get("environment"),
            context=context,
        )
    elif grant == GRANT_REFRESH:
        answer = await tokens.refresh(params.get("refresh_token", ""), scope=scope, context=context)
    elif grant == GRANT_CLIENT:
        client_id, secret, basic = await _client(params, request, tokens)
        answer = await tokens.client_credentials(
            client_id, secret, scope=scope, context=context, basic=basic
        )
    elif grant == GRANT_EXCHANGE:
        client_id, secret, basic = await _client(params, request, tokens)
        answer = await tokens.exchange(
            client_id,
            secret,
            subject_token=params.get("subject_token", ""),
            subject_token_type=params.get("subject_token_type", ""),
            space_id=params.get("space_id"),
            scope=scope,
            context=context,
            basic=basic,
        )
    elif grant is None:
        raise InvalidRequest("Send grant_type (or username and password).")
    else:
        raise UnsupportedGrantType(f"Grant type {grant[:64]!r} is not supported.")
    return _answer(answer.as_dict())


@router.post("/v1/auth/refresh", response_model=TokenResponse, summary="Refresh a token pair")
@declare(CLIENT)
async def refresh(request: Request, tokens: TokensDep) -> JSONResponse:
    """`{"refresh_token"}` → a fresh pair; the old refresh token stops working."""
    params = await _params(request)
    state_of(request).grant_type = GRANT_REFRESH  # for metrics
    try:
        answer = await tokens.refresh(
            params.get("refresh_token", ""),
            scope=params.get("scope"),
            context=request_context(request),
        )
    except InvalidGrant as exc:
        raise RefreshRefused(exc.message) from None
    return _answer(answer.as_dict())


async def _token(request: Request, runtime: Runtime) -> JSONResponse:
    return await token(request, runtime.tokens)


async def _refresh(request: Request, runtime: Runtime) -> JSONResponse:
    return await refresh(request, runtime.tokens)


DIRECT = {"/v1/auth/token": _token, "/v1/auth/refresh": _refresh}
"""The token endpoints the edge calls straight (``apiward.adapters.http.edge.direct``):
each route's own function, with the runtime's token service."""


@router.post("/v1/auth/revoke", summary="Revoke a token (RFC 7009)")
@declare(CLIENT)
async def revoke(request: Request, tokens: TokensDep) -> JSONResponse:
    """Revoke an access token (by its id) or a refresh token (with its whole session).
    Unknown tokens are answered 200 as RFC 7009 section 2.2 asks."""
    params = await _params(request)
    client = await _optional_client(params, request, tokens)
    token_value = params.get("token")
    if not token_value:
        raise InvalidRequest("Send the token to revoke.")
    await tokens.revoke(
        token_value,
        params.get("token_type_hint"),
        request_context(request),
        owner=(client.org_id, client.environment) if client else None,
    )
    return _answer({})


@router.post("/v1/auth/introspect", summary="Introspect a token (RFC 7662)")
@declare(Needs(Door.CLIENT, ("tokens:introspect",)))
async def introspect(request: Request, tokens: TokensDep) -> JSONResponse:
    """What a token is. The caller authenticates with a bearer credential holding
    `tokens:introspect`, or as an OAuth client with HTTP Basic; only tokens of the
    caller's own organisation and environment are ever reported active."""
    params = await _params(request)
    token_value = params.get("token")
    client = await _optional_client(params, request, tokens)
    if client is not None:
        org_id, environment = client.org_id, client.environment
    else:
        principal = await authenticate(request)
        if not principal.grants("tokens:introspect"):
            raise InsufficientScope("tokens:introspect")
        org_id, environment = principal.org_id, principal.environment
    if not token_value:
        raise InvalidRequest("Send the token to introspect.")
    return _answer(await tokens.introspect(org_id, environment, token_value))


@router.get("/.well-known/jwks.json", summary="Public signing keys (RFC 7517)")
@declare(PUBLIC)
async def jwks(keyring: KeyringDep) -> JSONResponse:
    return JSONResponse(keyring.jwks(), headers={"Cache-Control": "public, max-age=300"})


@router.get(
    "/.well-known/oauth-authorization-server", summary="Authorization server metadata (RFC 8414)"
)
@declare(PUBLIC)
async def metadata(settings: SettingsDep) -> JSONResponse:
    """Built from ``APIWARD_PUBLIC_URL``, never from the request's ``Host`` (a poisoned
    cache would otherwise hand out someone else's endpoints); cacheable for an hour."""
    base = settings.base_url
    return JSONResponse(_metadata(settings, base), headers=METADATA_CACHE)


def _metadata(settings: Any, base: str) -> dict[str, Any]:
    return {
        "issuer": settings.token_issuer,
        "token_endpoint": f"{base}/v1/auth/token",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "revocation_endpoint": f"{base}/v1/auth/revoke",
        "introspection_endpoint": f"{base}/v1/auth/introspect",
        "grant_types_supported": [GRANT_PASSWORD, GRANT_REFRESH, GRANT_CLIENT, GRANT_EXCHANGE],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": [
            "none",
            "client_secret_basic",
            "client_secret_post",
        ],
        # Or a bearer credential holding tokens:introspect.
        "introspection_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
        ],
        "token_endpoint_auth_signing_alg_values_supported": [settings.token_algorithm],
        "scopes_supported": [EXCHANGE_SCOPE, "tokens:introspect"],
        "service_documentation": f"{base}/docs",
    }
