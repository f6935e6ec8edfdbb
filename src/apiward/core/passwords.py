"""Password hashing with Argon2id (RFC 9106).

The defaults are RFC 9106's second recommended option (t=3, m=64 MiB, p=4). Hashing is
CPU-bound and slow on purpose: callers run it in a worker thread, never on the event
loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 10
MAX_LENGTH = 1024


@dataclass(frozen=True, slots=True)
class PasswordPolicy:
    time_cost: int = 3
    memory_cost_kib: int = 65536
    parallelism: int = 4

    def hasher(self) -> argon2.PasswordHasher:
        return argon2.PasswordHasher(
            time_cost=self.time_cost,
            memory_cost=self.memory_cost_kib,
            parallelism=self.parallelism,
            type=argon2.Type.ID,
        )


class Passwords:
    def __init__(self, policy: PasswordPolicy) -> None:
        self._hasher = policy.hasher()
        # Verifying against this when a user is unknown costs the same as a real check,
        # so an unknown user and a wrong password take the same time.
        self._dummy = self._hasher.hash("apiward-timing-equaliser")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        return self._hasher.check_needs_rehash(stored)


def weakness(password: str, *, email: str = "") -> str | None:
    """Why a new password is not acceptable, or None."""
    if len(password) < MIN_LENGTH:
        return f"Password must be at least {MIN_LENGTH} characters long."
    if len(password) > MAX_LENGTH:
        return f"Password must be at most {MAX_LENGTH} characters long."
    if len(set(password)) < 4:
        return "Password must use at least 4 different characters."
    local = email.split("@", 1)[0].lower()
    if local and len(local) >= 4 and local in password.lower():
        return "Password must not contain the email address."
    return None
