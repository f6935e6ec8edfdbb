"""The public surface for protecting an application with apiward in-process.

from fastapi import FastAPI
from apiward.server import Apiward, Principal, require

app = FastAPI()
Apiward().init_app(app)

@app.get("/v1/customers")
async def customers(principal: Principal = require("customers:read")) -> dict[str, str]:
    return {"org": principal.org_id}
"""

from apiward.adapters.http.app import create_app
from apiward.adapters.http.embed import Apiward, ApiwardMiddleware
from apiward.adapters.http.security import authenticate, public, require
from apiward.adapters.settings import Settings
from apiward.core.models import CredentialKind, Principal

__all__ = [
    "Apiward",
    "ApiwardMiddleware",
    "CredentialKind",
    "Principal",
    "Settings",
    "authenticate",
    "create_app",
    "public",
    "require",
]
