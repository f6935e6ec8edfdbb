"""``POST /v1/leaks/github``: GitHub secret scanning partner reports of leaked credentials.

GitHub posts a JSON array of matches, signed with ECDSA P-256 / SHA-256 over the raw
body (``Github-Public-Key-Signature``, base64 DER) with the key named by
``Github-Public-Key-Identifier``. The keys are configured, not fetched
(``APIWARD_LEAK_REPORT_PUBLIC_KEYS``). The answer is GitHub's feedback format.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from apiward.adapters.http.access import SIGNED, declare
from apiward.adapters.http.deps import LeaksDep
from apiward.adapters.http.schemas.leaks import (
    LeakLabel,
    LeakMatch,
)
from apiward.adapters.http.security import request_context
from apiward.services.leaks import GITHUB_REPORTER, parse_reports

router = APIRouter(tags=["Leaked credentials"])


@router.post(
    "/v1/leaks/github",
    response_model=list[LeakLabel],
    summary="Report leaked credentials (GitHub secret scanning)",
    openapi_extra={
        "parameters": [
            {
                "name": "Github-Public-Key-Identifier",
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
            },
            {
                "name": "Github-Public-Key-Signature",
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
                "description": "Base64 DER ECDSA P-256 SHA-256 signature of the raw body.",
            },
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"type": "array", "items": LeakMatch.model_json_schema()}
                }
            },
        },
    },
)
@declare(SIGNED)
async def github_leak_report(request: Request, leaks: LeaksDep) -> JSONResponse:
    """Verify the signature, check each token's format and checksum offline, revoke the
    live credentials among them (with a `key.leaked` audit event and webhook), and
    label each token `true_positive` or `false_positive`. A wrong or unknown signature
    is a 401 and changes nothing."""
    body = await request.body()
    leaks.verify(
        request.headers.get("github-public-key-identifier"),
        request.headers.get("github-public-key-signature"),
        body,
    )
    verdicts = await leaks.report(
        parse_reports(body), request_context(request), reporter=GITHUB_REPORTER
    )
    answer = [
        LeakLabel(token_raw=v.report.token, token_type=v.report.type, label=v.label).model_dump()
        for v in verdicts
    ]
    # The tokens are echoed back, as GitHub's format asks: never cached.
    return JSONResponse(answer, headers={"Cache-Control": "no-store"})
