"""The dashboard: Settings > API keys, OAuth clients, members and roles, usage, audit log.

Server-rendered pages (Jinja2, one stylesheet, a few lines of JavaScript for the copy
buttons) mounted under ``/dashboard`` of the management app when
``APIWARD_DASHBOARD_ENABLED`` is true. People sign in with their email and password;
every page acts through the same services as the HTTP API, with a principal built from
the user's role, so a viewer sees everything and changes nothing.
"""

from __future__ import annotations

from apiward.adapters.dashboard.routes import router

__all__ = ["router"]
