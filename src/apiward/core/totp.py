"""Time-based one-time passwords (RFC 6238 over RFC 4226): HMAC-SHA1, six digits, a
30-second step, and one step either side for the clock of a phone that drifts.

Pure functions of a secret and a time; the store remembers the last step a person
used, so that a code seen once cannot be used again within its window (replay).
Recovery codes are ten random words of 50 bits each, kept as their SHA-256 only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from datetime import datetime
from urllib.parse import quote, urlencode

DIGITS = 6
STEP_SECONDS = 30
WINDOW = 1
"""Steps accepted either side of the current one."""
SECRET_BYTES = 20
"""160 bits, the length of an HMAC-SHA1 key that RFC 4226 recommends."""
RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def base32(secret: bytes) -> str:
    """The secret as authenticator apps take it typed in: base32, no padding."""
    return base64.b32encode(secret).decode().rstrip("=")


def from_base32(text: str) -> bytes:
    cleaned = text.replace(" ", "").upper()
    return base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))


def step_of(at: datetime) -> int:
    return int(at.timestamp()) // STEP_SECONDS


def code_at(secret: bytes, step: int) -> str:
    """The code of one time step (RFC 4226 §5.3, dynamic truncation)."""
    digest = hmac.new(secret, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(number % 10**DIGITS).zfill(DIGITS)


def normalise(code: str) -> str:
    """A code as typed (spaces and dashes allowed), or "" when it cannot be one."""
    cleaned = code.replace(" ", "").replace("-", "")
    if len(cleaned) != DIGITS or not cleaned.isascii() or not cleaned.isdigit():
        return ""
    return cleaned


def matching_step(secret: bytes, code: str, at: datetime) -> int | None:
    """The step within the window whose code this is, or None. Every step of the window
    is compared, in constant time, whether or not an earlier one matched."""
    cleaned = normalise(code)
    now = step_of(at)
    found = None
    for step in range(now - WINDOW, now + WINDOW + 1):
        same = hmac.compare_digest(code_at(secret, step), cleaned or "x" * DIGITS)
        if same and found is None:
            found = step
    return found if cleaned else None


def otpauth_uri(secret: bytes, account: str, issuer: str) -> str:
    """The Key Uri Format authenticator apps read (from a QR code, or pasted)."""
    label = quote(f"{issuer}:{account}", safe="@:")
    query = urlencode(
        {
            "secret": base32(secret),
            "issuer": issuer,
            "algorithm": "SHA1",
            "digits": DIGITS,
            "period": STEP_SECONDS,
        },
        quote_via=quote,
    )
    return f"otpauth://totp/{label}?{query}"


def new_recovery_codes(n: int = RECOVERY_CODES) -> list[str]:
    """``n`` codes like ``k7d2m-p9xqa``: 10 characters of a 31-letter alphabet each."""
    return [
        "-".join("".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(5)) for _ in range(2))
        for _ in range(n)
    ]


def recovery_text(code: str) -> bytes:
    """A recovery code as typed, cleaned (case, spaces and dashes ignored): what its
    keyed digest is taken of (``Sealer.digest``)."""
    return "".join(ch for ch in code.lower() if ch.isalnum()).encode()


def looks_like_recovery(code: str) -> bool:
    cleaned = "".join(ch for ch in code.lower() if ch.isalnum())
    return len(cleaned) == 10 and cleaned.isascii()
