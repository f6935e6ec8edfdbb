"""Password hashing with Argon2id (RFC 9106).

The defaults are RFC 9106's second recommended option (t=3, m=64 MiB, p=4). Hashing is
CPU-bound and slow on purpose: callers run it in a worker thread, never on the event
loop.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argon2

MIN_LENGTH = 10
MAX_LENGTH = 1024


@dataclass(frozen=True, slots=True)
class PasswordPolicy:
    time_cost: int = 3
    memory_cost_kib: int = 65536
    parallelism: int = 4

    def hasher(self) -> argon2.PasswordHasher:
        import argon2

        return argon2.PasswordHasher(
            time_cost=self.time_cost,
            memory_cost=self.memory_cost_kib,
            parallelism=self.parallelism,
            type=argon2.Type.ID,
        )

    def unmatchable(self) -> str:
        """An encoded Argon2id hash of this policy with a random salt and a random
        digest: verifying any password against it costs one real check and fails."""
        salt, digest = (
            base64.b64encode(secrets.token_bytes(n)).decode().rstrip("=") for n in (16, 32)
        )
        return (
            f"$argon2id$v=19$m={self.memory_cost_kib},t={self.time_cost},"
            f"p={self.parallelism}${salt}${digest}"
        )


class Passwords:
    def __init__(self, policy: PasswordPolicy) -> None:
        self._policy = policy
        # Verifying against this when a user is unknown costs the same as a real check
        # (the cost is the parameters', not the hash's), so an unknown user and a wrong
        # password take the same time; no password has it, and making it costs nothing.
        self._dummy = policy.unmatchable()

    @cached_property
    def _hasher(self) -> argon2.PasswordHasher:
        """Made on first use: a command that hashes nothing loads no Argon2."""
        return self._policy.hasher()

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

        try:
            return self._hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


# Among the most used passwords of 10 characters or more in public breach corpora, and
# the runs a keyboard or the alphabet offers (NIST SP 800-63B 3.1.1.2: refuse passwords
# "obtained from previous breach corpuses", "sequential characters").
COMMON = frozenset(
    [
        "1234567890",
        "0123456789",
        "0987654321",
        "9876543210",
        "1111111111",
        "0000000000",
        "1122334455",
        "1234512345",
        "1q2w3e4r5t",
        "1q2w3e4r5t6y",
        "1qaz2wsx3edc",
        "qazwsxedc123",
        "zaq12wsxcde3",
        "qwertyuiop",
        "qwertyuiop123",
        "qwerty1234",
        "qwerty12345",
        "qwerty123456",
        "asdfghjkl1",
        "asdfghjkl123",
        "zxcvbnm123",
        "password12",
        "password123",
        "password1234",
        "password12345",
        "passw0rd123",
        "p@ssw0rd123",
        "p@ssword123",
        "password!1",
        "iloveyou12",
        "iloveyou123",
        "princess12",
        "princess123",
        "football12",
        "football123",
        "baseball12",
        "baseball123",
        "welcome123",
        "welcome1234",
        "letmein123",
        "sunshine12",
        "sunshine123",
        "monkey12345",
        "dragon12345",
        "superman12",
        "superman123",
        "trustno1234",
        "administrator",
        "admin12345",
        "admin123456",
        "changeme123",
        "abcdefghij",
        "abcdefghijk",
        "abcd123456",
        "abc1234567",
        "a123456789",
        "123456789a",
        "123456789q",
        "q123456789",
        "123qweasdzxc",
        "starwars123",
        "michael123",
        "whatever123",
        "computer123",
        "internet123",
        "chocolate1",
        "mustang123",
        "jessica123",
        "pokemon123",
        "minecraft1",
        "minecraft123",
        "lovelove12",
        "123123123123",
    ]
)
_RUNS = (
    "abcdefghijklmnopqrstuvwxyz",
    "0123456789012345678901234567890",
    "qwertyuiopasdfghjklzxcvbnm",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
)


def _sequential(password: str) -> bool:
    lowered = password.lower()
    return any(lowered in run or lowered in run[::-1] for run in _RUNS)


def weakness(password: str, *, email: str = "") -> str | None:
    """Why a new password is not acceptable, or None."""
    if len(password) < MIN_LENGTH:
        return f"Password must be at least {MIN_LENGTH} characters long."
    if len(password) > MAX_LENGTH:
        return f"Password must be at most {MAX_LENGTH} characters long."
    if len(set(password)) < 4:
        return "Password must use at least 4 different characters."
    if password.lower() in COMMON or _sequential(password):
        return "This password is among the most common ones; choose another."
    local = email.split("@", 1)[0].lower()
    if local and len(local) >= 4 and local in password.lower():
        return "Password must not contain the email address."
    return None
