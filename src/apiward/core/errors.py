"""Domain errors.

They know nothing of HTTP: the HTTP adapter maps each class to a status code in one
table (``apiward.adapters.http.errors``). Every error carries a broad ``code`` (the
category a client branches on, as docs/compatibility.md lists them: ``UNAUTHORIZED``,
``FORBIDDEN``...) and a specific, stable ``reason`` that tells the cases apart.

    ApiwardError
    ├── AuthenticationError                code UNAUTHORIZED
    │   ├── MissingCredential              reason MISSING_CREDENTIAL
    │   ├── InvalidCredential              reason INVALID_KEY
    │   ├── DisabledCredential             reason KEY_DISABLED
    │   ├── RevokedCredential              reason KEY_REVOKED
    │   ├── ExpiredCredential              reason KEY_EXPIRED
    │   ├── WrongEnvironment               reason WRONG_ENVIRONMENT
    │   ├── WrongInstance                  reason WRONG_INSTANCE
    │   ├── InvalidToken                   reason INVALID_TOKEN
    │   ├── ExpiredToken                   reason TOKEN_EXPIRED
    │   ├── RevokedToken                   reason TOKEN_REVOKED
    │   ├── InvalidSignature               reason INVALID_SIGNATURE
    │   ├── WrongPassword                  reason WRONG_PASSWORD
    │   ├── SignInFailed                   reason INVALID_LOGIN
    │   ├── ConfirmFirst                   reason EMAIL_NOT_CONFIRMED
    │   └── SignInRequired                 reason SIGN_IN_REQUIRED
    ├── PermissionDenied                   code FORBIDDEN
    │   ├── InsufficientScope              reason INSUFFICIENT_SCOPE
    │   ├── IpNotAllowed                   reason IP_NOT_ALLOWED
    │   ├── SpaceNotAllowed                reason SPACE_NOT_ALLOWED
    │   ├── NoSpaceAccess                  reason NO_SPACE_ACCESS
    │   ├── UnknownSpace                   reason UNKNOWN_SPACE
    │   ├── EnvironmentMismatch            reason ENVIRONMENT_MISMATCH
    │   ├── ExceedsAuthority               reason EXCEEDS_AUTHORITY
    │   ├── OperatorOnly                   reason OPERATOR_ONLY
    │   ├── SignUpClosed                   reason SIGNUP_CLOSED
    │   ├── EmailNotConfirmed              reason EMAIL_NOT_CONFIRMED
    │   ├── CsrfRejected                   reason CSRF_REJECTED
    │   └── ProjectRequired                reason PROJECT_REQUIRED
    ├── NotFound                           code NOT_FOUND
    ├── Conflict                           code CONFLICT
    ├── InvalidInput                       code BAD_REQUEST
    │   ├── MissingSpace                   reason MISSING_SPACE
    │   └── LinkInvalid                    reason LINK_INVALID
    ├── RateLimited                        code RATE_LIMITED (429)
    │   └── UsageExceeded                  code USAGE_EXCEEDED (429)
    ├── ServiceUnavailable                 code SERVICE_UNAVAILABLE
    └── OAuthError                         RFC 6749 section 5.2 ``error``
        ├── InvalidRequest                 invalid_request
        ├── InvalidClient                  invalid_client
        ├── InvalidGrant                   invalid_grant
        │   └── RefreshRefused             invalid_grant (401, /v1/auth/refresh)
        ├── UnauthorizedClient             unauthorized_client
        ├── UnsupportedGrantType           unsupported_grant_type
        ├── InvalidScope                   invalid_scope
        └── LoginThrottled                 temporarily_unavailable (429)
"""

from __future__ import annotations

import math


class ApiwardError(Exception):
    """Base class of every error apiward raises on purpose."""

    code = "INTERNAL_ERROR"
    reason = "INTERNAL_ERROR"
    default_message = "Something went wrong."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class AuthenticationError(ApiwardError):
    code = "UNAUTHORIZED"
    reason = "UNAUTHORIZED"
    default_message = "Authentication failed."


class MissingCredential(AuthenticationError):
    reason = "MISSING_CREDENTIAL"
    default_message = (
        "Missing or invalid Authorization header. Use: Authorization: Bearer <api_key>"
    )


class InvalidCredential(AuthenticationError):
    reason = "INVALID_KEY"
    default_message = "Invalid API key"


class DisabledCredential(AuthenticationError):
    reason = "KEY_DISABLED"
    default_message = "API key is disabled. Re-enable it or use another key."


class RevokedCredential(AuthenticationError):
    reason = "KEY_REVOKED"
    default_message = "API key has been revoked"


class ExpiredCredential(AuthenticationError):
    reason = "KEY_EXPIRED"
    default_message = "API key has expired"


class WrongEnvironment(AuthenticationError):
    reason = "WRONG_ENVIRONMENT"
    default_message = "API key belongs to an environment this server does not serve."


class WrongInstance(AuthenticationError):
    reason = "WRONG_INSTANCE"
    default_message = "API key was issued by another instance."


class InvalidToken(AuthenticationError):
    reason = "INVALID_TOKEN"
    default_message = "Access token is invalid. Obtain a new one from /v1/auth/token."


class ExpiredToken(AuthenticationError):
    reason = "TOKEN_EXPIRED"
    default_message = "Access token has expired"


class RevokedToken(AuthenticationError):
    reason = "TOKEN_REVOKED"
    default_message = "Access token has been revoked"


class InvalidSignature(AuthenticationError):
    """A signed request (a leaked-credential report) whose signature does not verify."""

    reason = "INVALID_SIGNATURE"
    default_message = "The request's signature is missing or does not match its body."


class WrongPassword(AuthenticationError):
    """A signed-in person's current password, asked for to change it, is not right."""

    reason = "WRONG_PASSWORD"
    default_message = "The current password is not right."


class WrongCode(AuthenticationError):
    """A code of the authenticator (or a recovery code) that is not right now: wrong,
    outside the time window, or already used."""

    reason = "WRONG_CODE"
    default_message = "That code is not right. Enter the current code of your authenticator."


class SignInFailed(AuthenticationError):
    """The dashboard's refusal of an email and password (``services.signin``)."""

    reason = "INVALID_LOGIN"
    default_message = "Wrong email or password."


class SignInExpired(AuthenticationError):
    """The second step of a sign-in came too late, or without the first."""

    reason = "SIGN_IN_EXPIRED"
    default_message = "Your sign-in has timed out. Enter your email and password again."


class ConfirmFirst(AuthenticationError):
    """The password is right, but the account's address is not confirmed yet."""

    reason = "EMAIL_NOT_CONFIRMED"

    def __init__(self, email: str) -> None:
        self.email = email
        super().__init__(f"Confirm your email address first: open the link we sent to {email}.")


class SignInRequired(AuthenticationError):
    """A dashboard page asked for without a live session."""

    reason = "SIGN_IN_REQUIRED"
    default_message = "Sign in to continue."


class PermissionDenied(ApiwardError):
    code = "FORBIDDEN"
    reason = "FORBIDDEN"
    default_message = "This credential may not perform this action."
    scope: str | None = None
    """The permission that was missing, when one names it (``required_scope``)."""


class SecondFactorRequired(PermissionDenied):
    """The organisation requires a second factor of every member, and the
    signed-in person has none yet (the dashboard sends them to set it up)."""

    reason = "SECOND_FACTOR_REQUIRED"
    default_message = (
        "Your organisation requires two-factor sign-in of its members: set it up below to continue."
    )


class InsufficientScope(PermissionDenied):
    reason = "INSUFFICIENT_SCOPE"

    def __init__(self, scope: str, *, subject: str = "API key") -> None:
        self.scope = scope
        super().__init__(f"{subject} does not have the required permission: {scope}")


class IpNotAllowed(PermissionDenied):
    reason = "IP_NOT_ALLOWED"

    def __init__(self, ip: str) -> None:
        self.ip = ip
        super().__init__(
            f"Requests from {ip} are not allowed for this API key. "
            "Add the address to the key's IP allow-list or call from an allowed network."
        )


class SpaceNotAllowed(PermissionDenied):
    reason = "SPACE_NOT_ALLOWED"

    def __init__(self, space_id: str) -> None:
        self.space_id = space_id
        super().__init__(
            f"This API key may not be used in space {space_id}. "
            "Use a space from the key's space allow-list."
        )


class NoSpaceAccess(PermissionDenied):
    reason = "NO_SPACE_ACCESS"

    def __init__(self, space_id: str) -> None:
        self.space_id = space_id
        super().__init__(
            f"The user behind this credential has no role in space {space_id}. "
            "Grant the user a role in that space or target another space."
        )


class UnknownSpace(PermissionDenied):
    reason = "UNKNOWN_SPACE"

    def __init__(self, space_id: str, header: str) -> None:
        self.space_id = space_id
        super().__init__(
            f"Space {space_id!r} (from the {header} header) does not exist in this "
            "organisation or is archived. Send the id of an active space."
        )


class EnvironmentMismatch(PermissionDenied):
    reason = "ENVIRONMENT_MISMATCH"

    def __init__(self, own: str, wanted: str) -> None:
        super().__init__(
            f"A {own} credential can only act on {own} data, not {wanted}. "
            f"Use a {wanted} credential."
        )


class ExceedsAuthority(PermissionDenied):
    """Delegation never amplifies: what a principal creates or changes would confer
    more than it holds itself (``apiward.core.authority``)."""

    reason = "EXCEEDS_AUTHORITY"

    def __init__(self, message: str, scope: str | None = None) -> None:
        self.scope = scope
        super().__init__(message)


class OperatorOnly(PermissionDenied):
    """Plans, limits that loosen a plan, credits and the bounds the operator set on a key
    (its expiry and allow-lists) are the deployment operator's."""

    reason = "OPERATOR_ONLY"

    def __init__(self, what: str, scope: str) -> None:
        self.scope = scope
        super().__init__(
            f"{what} is decided by the deployment's operator: it needs the operator "
            f"permission {scope!r}, which no tenant credential holds ('*' does not include "
            "it). Ask your provider, or use the apiward CLI if you run this deployment."
        )


class SignUpClosed(PermissionDenied):
    """Sign-up is turned off (``APIWARD_SIGNUP_ENABLED``)."""

    reason = "SIGNUP_CLOSED"
    default_message = "Sign-up is by invitation only: ask a project's owner to invite you."


class EmailNotConfirmed(PermissionDenied):
    """An account whose address is not confirmed may not create a project yet."""

    reason = "EMAIL_NOT_CONFIRMED"
    default_message = "Confirm your email address first: open the link we sent you."


class CsrfRejected(PermissionDenied):
    """A dashboard form without the token of its session (or sign-in form)."""

    reason = "CSRF_REJECTED"
    default_message = (
        "This form has expired or did not come from this dashboard. Reload the page and try again."
    )


class ProjectRequired(PermissionDenied):
    """A signed-in account with no project open asked for a project's page."""

    reason = "PROJECT_REQUIRED"
    default_message = "Open or create a project first."


class NotFound(ApiwardError):
    code = "NOT_FOUND"
    reason = "NOT_FOUND"
    default_message = "Not found."

    def __init__(self, kind: str, ident: str, *, message: str | None = None) -> None:
        super().__init__(message or f"No {kind} with id {ident!r} exists in this organisation.")


class Conflict(ApiwardError):
    code = "CONFLICT"
    reason = "CONFLICT"
    default_message = "The request conflicts with the current state."


class InvalidInput(ApiwardError):
    code = "BAD_REQUEST"
    reason = "INVALID_INPUT"
    default_message = "The request is not valid."


class MissingSpace(InvalidInput):
    """Every request must name its space (``APIWARD_REQUIRE_SPACE_HEADER``)."""

    reason = "MISSING_SPACE"

    def __init__(self, header: str) -> None:
        super().__init__(f"Send the {header} header with the id of the space to act in.")


class LinkInvalid(InvalidInput):
    """An emailed link that is unknown, used, expired or no longer applies."""

    reason = "LINK_INVALID"
    default_message = "This link has expired or has already been used. Ask for a new one."


class RateLimited(ApiwardError):
    """A rate limit is exhausted. Carries the headers of the decision it reports."""

    code = "RATE_LIMITED"
    reason = "RATE_LIMITED"

    def __init__(
        self,
        retry_after: float,
        headers: dict[str, str],
        policy: str = "",
        message: str | None = None,
    ) -> None:
        self.retry_after = retry_after
        self.headers = headers
        self.policy = policy
        seconds = max(1, math.ceil(retry_after))
        what = f"the {policy!r} rate limit" if policy else "a rate limit"
        super().__init__(
            message or f"Too many requests: {what} is exhausted. Retry after {seconds} seconds."
        )


class UsageExceeded(RateLimited):
    """The credential's usage credits are spent."""

    code = "USAGE_EXCEEDED"
    reason = "USAGE_EXCEEDED"

    def __init__(self, remaining: int, refill: str | None = None) -> None:
        when = f" They refill {refill}." if refill else " Ask for more credits."
        super().__init__(
            0,
            {},
            "credits",
            message=f"This credential's usage credits are exhausted ({remaining} left).{when}",
        )


class ServiceUnavailable(ApiwardError):
    """A dependency (the database, Redis failing closed, the signing keys) cannot serve
    now; the answer says when to try again (``Retry-After``, RFC 9110 section 10.2.3)."""

    code = "SERVICE_UNAVAILABLE"
    reason = "SERVICE_UNAVAILABLE"
    default_message = "The service is temporarily unavailable. Retry shortly."

    def __init__(self, message: str | None = None, *, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreSaturated(ServiceUnavailable):
    """Every connection to the database is in use (the pool waited its bound): the
    database answers, this process is overloaded. Not an outage, so nothing is served
    stale for it."""


class OAuthError(ApiwardError):
    """An error of the token endpoints, answered in the RFC 6749 section 5.2 shape."""

    code = "BAD_REQUEST"
    error = "invalid_request"

    @property
    def reason(self) -> str:  # type: ignore[override]
        return self.error.upper()


class InvalidRequest(OAuthError):
    error = "invalid_request"
    default_message = "The request is missing a parameter or is malformed."


class InvalidClient(OAuthError):
    code = "UNAUTHORIZED"
    error = "invalid_client"
    default_message = "Client authentication failed."

    def __init__(self, message: str | None = None, *, basic: bool = False) -> None:
        self.basic = basic
        super().__init__(message)


class InvalidGrant(OAuthError):
    error = "invalid_grant"
    default_message = "The grant is invalid, expired or revoked."


class RefreshRefused(InvalidGrant):
    """An unusable refresh token presented to ``/v1/auth/refresh``: a 401, so that a client
    falls back to signing in (docs/compatibility.md)."""

    code = "UNAUTHORIZED"


class UnauthorizedClient(OAuthError):
    code = "FORBIDDEN"
    error = "unauthorized_client"
    default_message = "This client may not use this grant type."


class UnsupportedGrantType(OAuthError):
    error = "unsupported_grant_type"
    default_message = "The grant type is not supported."


class InvalidScope(OAuthError):
    error = "invalid_scope"
    default_message = "The requested scope is invalid or exceeds what was granted."


class LoginThrottled(OAuthError):
    code = "RATE_LIMITED"
    error = "temporarily_unavailable"

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"Too many failed sign-in attempts. Retry after {retry_after} seconds.")


HTTP_REASONS = frozenset(
    {
        "MALFORMED_JSON",
        "METHOD_NOT_ALLOWED",
        "PAYLOAD_TOO_LARGE",
        "UNSUPPORTED_MEDIA_TYPE",
    }
)
"""Reasons of answers the HTTP edge gives without a domain error."""


def known_reasons() -> frozenset[str]:
    """Every ``reason`` an error answer can carry (what ``APIWARD_ERROR_MESSAGES`` keys)."""
    found = set(HTTP_REASONS)
    pending: list[type[ApiwardError]] = [ApiwardError]
    while pending:
        cls = pending.pop()
        # An OAuth error's reason is its RFC 6749 ``error``, in upper case.
        reason = cls.reason if isinstance(cls.reason, str) else str(cls.error).upper()
        found.add(reason)
        pending.extend(cls.__subclasses__())
    return frozenset(found)
