"""Signing and verifying apiward webhook deliveries (for receivers, standard library only).

Every delivery carries ``Apiward-Signature: t=<unix seconds>,v1=<hex>``, where ``v1`` is
the HMAC-SHA256, keyed with the endpoint's secret (``whsec_...``), of ``"<t>.<body>"``
(a common scheme). The timestamp is signed with the body, so a captured delivery cannot
be replayed later than ``tolerance`` seconds. A header may carry several ``v1`` values
(while a secret is being rolled); one match is enough.

A receiver checks the raw body before parsing it::

    from apiward.webhooks import WebhookSignatureError, verify_signature

    @app.post("/hooks/apiward")
    async def hook(request: Request) -> Response:
        body = await request.body()
        try:
            verify_signature(SECRET, request.headers.get("Apiward-Signature", ""), body)
        except WebhookSignatureError:
            return Response(status_code=400)
        event = json.loads(body)  # {"id", "type", "created_at", "data", ...}
        ...
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = ["SIGNATURE_HEADER", "WebhookSignatureError", "sign", "verify_signature"]

SIGNATURE_HEADER = "Apiward-Signature"


class WebhookSignatureError(ValueError):
    """The signature header is missing, malformed, too old, or does not match the body."""


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``Apiward-Signature`` header value for ``body``, signed at ``timestamp`` (now)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},v1={_digest(secret, t, body)}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    tolerance: int = 300,
    *,
    now: float | None = None,
) -> None:
    """Raise ``WebhookSignatureError`` unless ``header`` signs ``body`` with ``secret``
    within ``tolerance`` seconds of ``now``.

    ``body`` must be the raw bytes received, not a re-serialised JSON document.
    """
    timestamp: int | None = None
    candidates: list[str] = []
    for part in (header or "").split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise WebhookSignatureError("The Apiward-Signature header is missing or malformed.")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookSignatureError(
            f"The signature timestamp is more than {tolerance} seconds away from now."
        )
    expected = _digest(secret, timestamp, body)
    # Every candidate is compared, in constant time, whatever the earlier ones gave.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise WebhookSignatureError("The signature does not match the body.")
