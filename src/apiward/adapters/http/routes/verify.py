"""``POST /v1/keys/verify``: verification for services that cannot do more."""

from __future__ import annotations

import json
from dataclasses import replace

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from apiward.adapters.http import errors
from apiward.adapters.http.deps import AuthDep, LimitsDep, VerificationsDep, runtime_in
from apiward.adapters.http.edge import header
from apiward.adapters.http.schemas.verify import VerifyOut, VerifyPrincipal, VerifyRequest
from apiward.adapters.http.security import authenticate, request_context, require
from apiward.adapters.http.state import state_of
from apiward.core import errors as e
from apiward.core.analytics import WOULD_REFUSE, outcome_of
from apiward.core.models import Principal
from apiward.core.paths import canonical, original_method
from apiward.services.analytics import Verifications
from apiward.services.auth import Authenticator, require_scopes
from apiward.services.limiting import RequestLimits

router = APIRouter(tags=["API keys"])

PATH = "/v1/keys/verify"
SCOPE = "keys:verify"


def code_of(exc: e.ApiwardError) -> str:
    """The answer's code: the outcome analytics count (``apiward.core.analytics``)."""
    return outcome_of(exc)


@router.post(PATH, response_model=VerifyOut, summary="Verify an API key")
async def verify_key(
    body: VerifyRequest,
    request: Request,
    auth: AuthDep,
    limits: LimitsDep,
    counted: VerificationsDep,
    caller: Principal = require(SCOPE),
) -> VerifyOut:
    """200 for every key: `valid` and `code` say what the key may do. Keys of other
    organisations are `NOT_FOUND`. A `route` or `method` with no single meaning (a raw
    `\\`, `;` parameters: what forward auth refuses) is a 400, whatever the key."""
    answer = await _verify(body, request, caller, auth, limits, counted)
    state_of(request).verify_code = answer.code  # for metrics
    return answer


async def _verify(
    body: VerifyRequest,
    request: Request,
    caller: Principal,
    auth: Authenticator,
    request_limits: RequestLimits,
    counted: Verifications,
) -> VerifyOut:
    # Route rules see the route and method as forward auth sees a proxy's (docs/forward-auth.md).
    route = canonical(body.route) if body.route else None
    method = original_method(body.method)
    context = replace(
        request_context(request),
        ip=body.ip,
        space_id=body.space_id,
        route=route,
        method=method,
        asserted=True,
    )
    not_found = VerifyOut(valid=False, code="NOT_FOUND", message="No such key.")
    # Counted under the route rule the asked route falls under (a bounded name).
    rule = request_limits.default_plan.rule_for(route, method) if route else None
    where = {"route": rule or "/v1/keys/verify"}
    try:
        entry = await auth.verified(body.key)
    except e.ApiwardError:
        counted.count(caller.org_id, caller.environment, "NOT_FOUND", **where)
        return not_found
    key = entry.key
    # Another tenant's key is indistinguishable from no key, and nothing of it is
    # touched: no usage recorded, no limit or credit spent.
    if key.org_id != caller.org_id or not caller.sees(key.environment):
        counted.count(caller.org_id, caller.environment, "NOT_FOUND", **where)
        return not_found
    try:
        principal = await auth.authenticate_key(body.key, context)
        require_scopes(principal, body.scopes)
        principal = await auth.limited(entry, principal)
    except e.ApiwardError as exc:
        counted.count(key.org_id, key.environment, code_of(exc), key_id=key.id, **where)
        limits = exc.headers if isinstance(exc, e.RateLimited) else {}
        return VerifyOut(
            valid=False,
            code=code_of(exc),
            message=exc.message,
            key_id=key.id,
            name=key.name,
            expires_at=key.expires_at,
            external_id=key.external_id,
            meta=key.meta,
            ratelimit=_ratelimit(limits),
        )
    counted.count(key.org_id, key.environment, "VALID", key_id=key.id, **where)
    auth.address_tally.count(principal)  # the address the caller reports, as a prefix
    if body.scopes:  # the scopes the verified key was asked for, and held
        auth.scope_tally.count(principal, body.scopes)
    for _ in principal.would_refuse:  # limits in report mode
        counted.count(key.org_id, key.environment, WOULD_REFUSE, key_id=key.id, **where)
    return VerifyOut(
        valid=True,
        code="VALID",
        key_id=key.id,
        name=key.name,
        expires_at=key.expires_at,
        external_id=key.external_id,
        meta=key.meta,
        principal=VerifyPrincipal(
            org_id=principal.org_id,
            environment=principal.environment,
            space_id=principal.space_id,
            user_id=principal.user_id,
            scopes=principal.scopes.as_list(),
            api_version=principal.api_version,
        ),
        ratelimit=_ratelimit(principal.rate_limit),
        credits_remaining=principal.credits_remaining,
    )


def _ratelimit(fields: dict[str, str]) -> dict[str, object] | None:
    if "X-RateLimit-Limit" not in fields:
        return None
    return {
        "limit": int(fields["X-RateLimit-Limit"]),
        "remaining": int(fields["X-RateLimit-Remaining"]),
        "reset": int(fields["X-RateLimit-Reset"]),
        "policy": fields.get("RateLimit-Policy"),
    }


_ROUTE = next(r for r in router.routes if getattr(r, "path", None) == PATH)


async def fast_path(inner: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Answers ``POST /v1/keys/verify`` ahead of FastAPI (``apiward.adapters.http.edge``).

    A JSON body that is a valid ``VerifyRequest`` is answered here as the route would
    answer it; anything else (another method or media type, a body that does not
    parse or validate) goes on to the route, body included, for the route's own answer.
    """
    if scope["method"] != "POST" or not _is_json(scope):
        await inner(scope, receive, send)
        return
    body = await _read(receive)
    if body is None:  # the client went away (or the body limit answered 413)
        await inner(scope, _gone, send)  # the route's answer, as without this path
        return
    try:
        asked = VerifyRequest.model_validate(json.loads(body))
    except (ValueError, ValidationError, RecursionError):  # too deep for ``json``, say
        await inner(scope, _replay(body, receive), send)
        return
    scope["route"] = _ROUTE  # the route's identity, for metrics labels and route marks
    request = Request(scope, receive)
    try:
        runtime = runtime_in(scope)  # outside the dependency system
        caller = await authenticate(request, scopes=(SCOPE,))
        answer = await _verify(
            asked, request, caller, runtime.auth, runtime.limits, runtime.verifications
        )
        state_of(request).verify_code = answer.code  # for metrics
        response = Response(answer.model_dump_json(), media_type="application/json")
    except Exception as exc:  # what the route's error handlers would answer
        response = await errors.answer(request, exc)
    await response(scope, receive, send)


def _is_json(scope: Scope) -> bool:
    """The media type the route reads as JSON: ``application/json`` (with parameters)."""
    media_type = header(scope, b"content-type").split(b";", 1)[0].strip().lower()
    return media_type == b"application/json"


async def _read(receive: Receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _gone() -> Message:
    return {"type": "http.disconnect"}


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` with the body already read given back first."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed
