"""``POST /v1/keys/verify``: Unkey-style verification for services that cannot do more."""

from __future__ import annotations

from fastapi import APIRouter, Request

from apiward.adapters.http.schemas import VerifyOut, VerifyPrincipal, VerifyRequest
from apiward.adapters.http.security import check_scopes, request_context, require, runtime_of
from apiward.core import errors as e
from apiward.core.models import Principal, RequestContext

router = APIRouter(tags=["API keys"])

# Each refusal's answer code; anything that says "no such key here" is NOT_FOUND, so a
# caller never learns whether a key exists in another organisation or instance.
CODES: dict[type[e.ApiwardError], str] = {
    e.DisabledCredential: "DISABLED",
    e.ExpiredCredential: "EXPIRED",
    e.RevokedCredential: "REVOKED",
    e.InsufficientScope: "INSUFFICIENT_PERMISSIONS",
    e.PermissionDenied: "FORBIDDEN",
    e.AuthenticationError: "NOT_FOUND",
}


def code_of(exc: e.ApiwardError) -> str:
    for cls in type(exc).__mro__:
        if cls in CODES:
            return CODES[cls]
    return "NOT_FOUND"


@router.post("/v1/keys/verify", response_model=VerifyOut, summary="Verify an API key")
async def verify_key(
    body: VerifyRequest, request: Request, caller: Principal = require("keys:verify")
) -> VerifyOut:
    """Always 200: `valid` and `code` say what the key may do. Keys of other
    organisations are `NOT_FOUND`."""
    runtime = runtime_of(request)
    context = request_context(request)
    context = RequestContext(
        ip=body.ip,
        user_agent=context.user_agent,
        request_id=context.request_id,
        space_id=body.space_id,
        api_version=context.api_version,
    )
    try:
        principal = await runtime.auth.authenticate_key(body.key, context)
        if principal.org_id != caller.org_id or principal.environment != caller.environment:
            raise e.InvalidCredential()
        check_scopes(principal, body.scopes)
    except e.ApiwardError as exc:
        code = code_of(exc)
        if code == "NOT_FOUND":
            return VerifyOut(valid=False, code=code, message="No such key.")
        entry = await runtime.auth.verified(body.key)
        if entry.key.org_id != caller.org_id or entry.key.environment != caller.environment:
            return VerifyOut(valid=False, code="NOT_FOUND", message="No such key.")
        return VerifyOut(
            valid=False,
            code=code,
            message=exc.message,
            key_id=entry.key.id,
            name=entry.key.name,
            expires_at=entry.key.expires_at,
        )
    entry = await runtime.auth.verified(body.key)
    return VerifyOut(
        valid=True,
        code="VALID",
        key_id=entry.key.id,
        name=entry.key.name,
        expires_at=entry.key.expires_at,
        principal=VerifyPrincipal(
            org_id=principal.org_id,
            environment=principal.environment,
            space_id=principal.space_id,
            user_id=principal.user_id,
            scopes=principal.scopes.as_list(),
            api_version=principal.api_version,
        ),
    )
