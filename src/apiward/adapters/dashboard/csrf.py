"""CSRF protection of the dashboard's forms: a token derived from a cookie the page can't read.

Every form carries ``csrf = HMAC-SHA256(cookie, "apiward-dashboard-csrf")``, where the
cookie is the session cookie once signed in, or the sign-in page's own random cookie
before (login CSRF). Both cookies are HttpOnly and SameSite, so another site can
neither send them nor compute the token (OWASP CSRF Cheat Sheet, "Signed Double-Submit
Cookie"); the token needs no storage and changes with every session.
"""

from __future__ import annotations

import hashlib
import hmac

from apiward.core.errors import CsrfRejected

_CONTEXT = b"apiward-dashboard-csrf"


def token_for(secret: str) -> str:
    """The token that forms carry for the cookie value ``secret``."""
    return hmac.new(secret.encode(), _CONTEXT, hashlib.sha256).hexdigest()


def check(secret: str | None, presented: object) -> None:
    """Raise ``CsrfRejected`` unless ``presented`` is the token of ``secret``."""
    if not secret or not isinstance(presented, str) or not presented:
        raise CsrfRejected()
    if not hmac.compare_digest(token_for(secret), presented):
        raise CsrfRejected()


def check_any(secrets_: tuple[str | None, ...], presented: object) -> None:
    """Raise ``CsrfRejected`` unless ``presented`` is the token of one of ``secrets_``
    (a public form, such as accepting an invitation, posted signed in or not)."""
    if isinstance(presented, str) and presented:
        for secret in secrets_:
            if secret and hmac.compare_digest(token_for(secret), presented):
                return
    raise CsrfRejected()
