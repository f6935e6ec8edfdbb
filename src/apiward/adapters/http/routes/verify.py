"""``POST /v1/keys/verify``: verification for services that cannot do more."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from apiward.adapters.http import errors
from apiward.adapters.http.context import AUTHORIZATION, reading_of, scope_context
from apiward.adapters.http.deps import AuthDep, LimitsDep, runtime_in
from apiward.adapters.http.edge import header
from apiward.adapters.http.schemas.verify import VerifyOut, VerifyPrincipal, VerifyRequest
from apiward.adapters.http.security import remember, require
from apiward.adapters.http.state import state_of
from apiward.core.models import Principal
from apiward.core.paths import canonical, original_method
from apiward.services.auth import Authenticator
from apiward.services.limiting import RequestLimits

router = APIRouter(tags=["API keys"])

PATH = "/v1/keys/verify"
SCOPE = "keys:verify"


@router.post(PATH, response_model=VerifyOut, summary="Verify an API key")
async def verify_key(
    body: VerifyRequest,
    request: Request,
    auth: AuthDep,
    limits: LimitsDep,
    caller: Principal = require(SCOPE),
) -> VerifyOut:
    """200 for every key: `valid` and `code` say what the key may do. Keys of other
    organisations are `NOT_FOUND`. A `route` or `method` with no single meaning (a raw
    `\\`, `;` parameters: what forward auth refuses) is a 400, whatever the key."""
    answer = await _verify(body, caller, auth, limits)
    state_of(request).verify_code = answer.code  # for metrics
    return answer


async def _verify(
    body: VerifyRequest, caller: Principal, auth: Authenticator, request_limits: RequestLimits
) -> VerifyOut:
    """The request's body and the caller's principal turned into the service's question,
    and its verdict into the answer (``Authenticator.verify``). The question's context is
    the caller's request's, with what the body asserts of the end client's."""
    # Route rules see the route and method as forward auth sees a proxy's (docs/forward-auth.md).
    route = canonical(body.route) if body.route else None
    method = original_method(body.method)
    # Counted under the route rule the asked route falls under (a bounded name).
    rule = request_limits.default_plan.rule_for(route, method) if route else None
    context = replace(
        caller.context,
        ip=body.ip,
        space_id=body.space_id,
        route=route,
        method=method,
        asserted=True,
        counted_route=rule or PATH,
        country=None,  # a country header tells of the caller, not of the end client at ``ip``
    )
    verdict = await auth.verify(caller, body.key, context, body.scopes)
    key, principal = verdict.key, verdict.principal
    return VerifyOut(
        valid=verdict.valid,
        code=verdict.code,
        message=verdict.message,
        key_id=key.id if key else None,
        name=key.name if key else None,
        expires_at=key.expires_at if key else None,
        external_id=key.external_id if key else None,
        meta=key.meta if key else None,
        principal=VerifyPrincipal(
            org_id=principal.org_id,
            environment=principal.environment,
            space_id=principal.space_id,
            user_id=principal.user_id,
            scopes=principal.scopes.as_list(),
            api_version=principal.api_version,
        )
        if principal
        else None,
        ratelimit=_ratelimit(verdict.rate_limit),
        credits_remaining=principal.credits_remaining if principal else None,
    )


def _ratelimit(fields: Mapping[str, str]) -> dict[str, object] | None:
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
    try:
        runtime = runtime_in(scope)  # outside the dependency system
        heard, context = scope_context(scope, reading_of(runtime), route=PATH)
        caller = await runtime.auth.authenticate(
            heard.first.get(AUTHORIZATION), context, scopes=(SCOPE,)
        )
        answer = await _verify(asked, remember(scope, caller), runtime.auth, runtime.limits)
        state_of(scope).verify_code = answer.code  # for metrics
        payload = answer.model_dump_json().encode()
    except Exception as exc:  # what the route's error handlers would answer
        response = await errors.answer(Request(scope, receive), exc)
        await response(scope, receive, send)
        return
    headers = [(b"content-length", b"%d" % len(payload)), (b"content-type", _JSON)]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


_JSON = b"application/json"


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
