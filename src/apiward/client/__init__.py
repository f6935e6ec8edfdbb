"""The Python client of APIs protected by apiward.

It needs httpx only (none of the server's dependencies), and handles the token
lifecycle (sign-in, proactive and reactive renewal, one renewal for many concurrent
requests), retries of 429 and 503, typed errors for every error envelope, and
pagination.

```python
from apiward.client import Client

with Client("https://api.example.com", username="ada@example.com", password=pw) as client:
    things = client.get("/v1/things").json()
```

``apiward.client.testing`` holds an in-memory apiward to test code that uses it.
"""

from apiward.client._auth import ApiKeyAuth, ApiwardAuth, OnTokens
from apiward.client._client import AsyncClient, Client
from apiward.client._errors import (
    APIError,
    ApiwardError,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    TokenError,
    UnexpectedResponseError,
    ValidationError,
)
from apiward.client._retry import OnRetry, RetryPolicy
from apiward.client._tokens import TokenPair

__all__ = [
    "APIError",
    "ApiKeyAuth",
    "ApiwardAuth",
    "ApiwardError",
    "AsyncClient",
    "AuthenticationError",
    "Client",
    "ConflictError",
    "NotFoundError",
    "OnRetry",
    "OnTokens",
    "PermissionDeniedError",
    "RateLimitedError",
    "RetryPolicy",
    "ServerError",
    "TokenError",
    "TokenPair",
    "UnexpectedResponseError",
    "ValidationError",
]

# Public names belong to this package, as in httpx: tracebacks and docs show
# ``apiward.client.Client``, not the private module that defines it.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
