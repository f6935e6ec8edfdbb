"""The public surface for protecting a FastAPI app with apiward in-process.

from apiward.server import Principal, create_app, require

app = create_app()

@app.get("/v1/customers")
async def customers(principal: Principal = require("customers:read")) -> dict[str, str]:
    return {"org": principal.org_id}
"""

from apiward.adapters.http.app import create_app
from apiward.adapters.http.security import authenticate, require
from apiward.adapters.settings import Settings
from apiward.core.models import Principal

__all__ = ["Principal", "Settings", "authenticate", "create_app", "require"]
