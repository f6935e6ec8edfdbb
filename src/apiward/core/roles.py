"""Built-in roles and the scopes apiward's own management API is guarded by."""

from __future__ import annotations

from apiward.core.models import Role

# Scopes of the management API. Reading is ``:read``; changing people and access
# is ``:manage``, so that ``*:write`` (a developer) cannot grant itself more.
MANAGEMENT_SCOPES: dict[str, str] = {
    "keys:read": "List and read API keys",
    "keys:write": "Create, update, disable, revoke and roll API keys",
    "keys:verify": "Verify API keys through POST /v1/keys/verify",
    "clients:read": "List and read OAuth clients",
    "clients:write": "Create, update and revoke OAuth clients",
    "tokens:exchange": "Exchange client credentials for entity-user tokens (RFC 8693)",
    "tokens:introspect": "Introspect tokens through POST /v1/auth/introspect",
    "spaces:read": "List and read spaces",
    "spaces:manage": "Create, rename and archive spaces",
    "users:read": "List and read users and their memberships",
    "users:manage": "Create and disable users, grant and remove roles",
    "roles:read": "List and read roles",
    "roles:manage": "Create, change and delete custom roles",
    "audit:read": "Read the audit log",
    "analytics:read": "Read the counts of authentication decisions (GET /v1/analytics/...)",
    "webhooks:read": "List webhook endpoints, the event types and the delivery history",
    "webhooks:manage": "Register, change, test and delete webhook endpoints; roll their secrets",
    "org:read": "Read the organisation and its rate-limit plan",
    "org:manage": "Rename the organisation, move it to another rate-limit tier",
    "projects:read": "List the projects of the caller's portal account",
    "projects:manage": "Create projects owned by the caller's portal account",
}

OWNER = "owner"

BUILTIN_ROLES: dict[str, Role] = {
    role.name: role
    for role in (
        Role(
            OWNER,
            ("*", "owner:*"),
            "Everything, including acting on owners and granting the owner role.",
            builtin=True,
        ),
        Role("admin", ("*",), "Everything except granting or removing the owner role.", True),
        Role(
            "developer",
            ("*:read", "*:write", "keys:*", "clients:*"),
            "Reads everything, writes the API's resources, manages credentials.",
            True,
        ),
        Role("viewer", ("*:read",), "Reads everything, changes nothing.", True),
    )
}
