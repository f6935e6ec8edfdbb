"""``/docs``: the interactive reference (Swagger UI), served entirely by apiward.

The page loads Swagger UI's script and stylesheet from ``/docs/assets/``, copied from the
``fastapi-offline`` package that ships them, never from a CDN: the reference works in an
air-gapped deployment, and its Content-Security-Policy allows this origin only (no inline
script: the page's own start-up code is a file too).
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from apiward.adapters.http.access import PUBLIC, declare

router = APIRouter(include_in_schema=False)

_ASSETS = files("fastapi_offline") / "static"
_TYPES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon.png": "image/png",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
_START = b"""// Starts Swagger UI on the page's OpenAPI document (a file, so no inline script runs).
window.addEventListener("load", function () {
  var holder = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: holder.dataset.openapi,
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: true,
    tryItOutEnabled: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
    layout: "BaseLayout",
  });
});
"""
_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="icon" type="image/png" href="/docs/assets/favicon.png">
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi="/openapi.json"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/start.js"></script>
</body>
</html>
"""
_CACHE = {"Cache-Control": "public, max-age=86400"}
_NOSNIFF = {"X-Content-Type-Options": "nosniff"}


@router.get("/docs")
@declare(PUBLIC)
async def docs(request: Request) -> HTMLResponse:
    title = f"{request.app.title} - reference"
    headers = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"}
    return HTMLResponse(_PAGE.format(title=title.replace("<", "&lt;")), headers=headers)


@router.get("/docs/assets/{name}")
@declare(PUBLIC)
async def asset(name: str) -> Response:
    if name == "start.js":
        return Response(_START, media_type="text/javascript", headers=_CACHE)
    kind = _TYPES.get(name)
    if kind is None:
        raise HTTPException(404)
    return Response(_read(name), media_type=kind, headers={**_CACHE, **_NOSNIFF})


def _read(name: str) -> bytes:
    data: Any = (_ASSETS / name).read_bytes()
    return bytes(data)
