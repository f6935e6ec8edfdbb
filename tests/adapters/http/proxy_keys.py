"""What the proxy tests (nginx, Envoy) judge requests with: the route rules, and keys
(readers and writers of /v1/things, a key of another scope, an admin, a rate-limited key
and a metered one)."""

from __future__ import annotations

from apiward.adapters.runtime import Runtime
from apiward.core.limits import Credits
from apiward.core.models import RateOverride

CREDITS = 1000
"""The metered key's credits."""
THINGS_ROUTE = {"name": "things-route", "rate": "4/minute", "key": "credential"}
THINGS_DELETES = {"name": "things-deletes", "rate": "1/minute", "key": "credential"}
ROUTES = [
    {"route": "/v1/things", "methods": ["DELETE"], "limits": [THINGS_DELETES]},
    {"route": "/v1/things", "limits": [THINGS_ROUTE]},
    {"route": "/v1/events*", "methods": ["GET"], "exempt": True},
]
"""The deployment's route rules: a limit on /v1/things, a stricter one on its deletes,
and reads of /v1/events exempt."""


async def proxy_keys(
    runtime: Runtime, org_id: str, *, metered_scopes: tuple[str, ...] = ("things:read",)
) -> tuple[dict[str, str], dict[str, str]]:
    """Each key's plaintext and id by name, made by the organisation's owner."""
    owner = await runtime.operators.principal(org_id)
    wanted = {
        "reader": ["things:read"],
        "other": ["invoices:read"],
        "admin": ["*"],
        **{f"writer-{m}": ["things:read"] for m in ("GET", "POST", "DELETE")},
    }
    made = [await runtime.keys.create(owner, name=n, scopes=s) for n, s in wanted.items()]
    made.append(
        await runtime.keys.create(
            owner,
            name="limited",
            scopes=["things:read"],
            rate_limits=[RateOverride("per-key", "2/minute", "credential")],
        )
    )
    made.append(
        await runtime.keys.create(
            owner, name="metered", scopes=list(metered_scopes), credits=Credits(CREDITS)
        )
    )
    return {m.key.name: m.plaintext for m in made}, {m.key.name: m.key.id for m in made}
