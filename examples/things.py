"""A small business API protected by apiward: Monogoto's SIM cards ("things").

    make example        # serves on http://127.0.0.1:8001

Then, in another shell, bootstrap an organisation and call it as Monogoto's quickstart
does:

    APIWARD_DATABASE_URL=sqlite+aiosqlite:///./things.db .venv/bin/apiward init \\
        --org-name Demo --email you@example.com --password 'a long passphrase'
    curl -s -X POST localhost:8001/v1/auth/token -H 'content-type: application/json' \\
        -d '{"username": "you@example.com", "password": "a long passphrase"}'
    curl -s localhost:8001/v1/things -H "Authorization: Bearer <access_token>"
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel

from apiward.server import Apiward, Principal, require


class Thing(BaseModel):
    iccid: str
    name: str
    status: str


# One fleet per organisation: data is keyed by the principal's org, never shared.
FLEETS: dict[str, list[Thing]] = {}


def fleet(principal: Principal) -> list[Thing]:
    return FLEETS.setdefault(
        principal.org_id,
        [
            Thing(iccid=f"8937010000247156{n:04d}", name=f"Device-{n:03d}", status="active")
            for n in range(1, 46)
        ],
    )


app = FastAPI(title="Things API (protected by apiward)")
Apiward().init_app(app, management_routes=True, meta_routes=True)


@app.get("/v1/things")
async def list_things(
    principal: Annotated[Principal, require("things:read")],
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    """List SIM cards, paginated as in the Monogoto quickstart."""
    items = fleet(principal)
    start = (page - 1) * page_size
    return {
        "items": items[start : start + page_size],
        "total": len(items),
        "page": page,
        "page_size": page_size,
    }


@app.post("/v1/things/{iccid}/suspend")
async def suspend(iccid: str, principal: Annotated[Principal, require("things:write")]) -> Thing:
    """Suspend a SIM card (a write: needs things:write)."""
    for thing in fleet(principal):
        if thing.iccid == iccid:
            thing.status = "suspended"
            return thing
    raise HTTPException(404, f"No thing {iccid} in your fleet.")
