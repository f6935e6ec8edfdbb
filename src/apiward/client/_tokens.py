"""Token pairs and the token endpoint's answers (RFC 6749 sections 5.1 and 5.2)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import httpx

from apiward.client._errors import APIError, TokenError, UnexpectedResponseError
from apiward.client._redact import mask

__all__ = ["TokenPair", "read_token_response"]


@dataclass(frozen=True, slots=True, repr=False)
class TokenPair:
    """An access token, the refresh token that renews it, and when the access token expires.

    ``expires_at`` is in Unix seconds (``None`` when the server did not say);
    ``refresh_token`` is ``None`` for client credentials, which renew by running the
    grant again. Save the pairs a client hands to ``on_tokens`` and give the last one
    back as ``tokens=`` to resume without signing in again.

    ```python
    pair = TokenPair("eyJhbGciOi...", "rt_9f8e...", expires_at=1767225600.0)
    client = Client("https://api.example.com", tokens=pair, on_tokens=save)
    ```

    The tokens never appear whole in its ``repr``.
    """

    access_token: str
    refresh_token: str | None = None
    expires_at: float | None = None
    scope: str | None = None

    def __repr__(self) -> str:
        refresh = mask(self.refresh_token) if self.refresh_token else None
        return (
            f"TokenPair(access_token={mask(self.access_token)!r}, refresh_token={refresh!r}, "
            f"expires_at={self.expires_at!r}, scope={self.scope!r})"
        )

    def expired(self, now: float) -> bool:
        """Whether the access token has expired at ``now`` (Unix seconds).

        ```python
        if pair.expired(time.time()):
            ...
        ```
        """
        return self.expires_at is not None and now >= self.expires_at


def read_token_response(
    response: httpx.Response, *, now: float, previous: TokenPair | None = None
) -> tuple[TokenPair, float | None]:
    """The pair in a token answer and its lifetime in seconds, or the error it carries.

    A refresh answer without a ``refresh_token`` keeps the previous one: RFC 6749
    section 6 lets the server decide whether to rotate.
    """
    if response.is_error:
        raise APIError.from_response(response, now=now)
    try:
        data: Any = response.json()
    except ValueError:
        data = None
    access = data.get("access_token") if isinstance(data, dict) else None
    if not isinstance(access, str) or not access:
        raise UnexpectedResponseError(
            f"The token endpoint answered {response.status_code} without an access_token.",
            response=response,
        )
    token_type = data.get("token_type", "Bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise TokenError(
            f"The token endpoint issued a {token_type!r} token; only Bearer is supported.",
            error="unsupported_token_type",
            status_code=response.status_code,
            response=response,
        )
    expires_in = data.get("expires_in")
    lifetime: float | None = None
    if isinstance(expires_in, int | float | str) and not isinstance(expires_in, bool):
        try:
            lifetime = float(expires_in)
        except ValueError:
            lifetime = None
        if lifetime is not None and (not math.isfinite(lifetime) or lifetime < 0):
            lifetime = None
    refresh = data.get("refresh_token")
    if not isinstance(refresh, str) or not refresh:
        refresh = previous.refresh_token if previous else None
    scope = data.get("scope")
    pair = TokenPair(
        access_token=access,
        refresh_token=refresh,
        expires_at=None if lifetime is None else now + lifetime,
        scope=scope if isinstance(scope, str) else None,
    )
    return pair, lifetime
