"""Sealing small secrets at rest (signing keys, a refresh answer kept for its grace window),
and keyed digests of short secrets (recovery codes).

AES-256-GCM under a key derived with HKDF-SHA256 (RFC 5869) from the deployment's secret;
a fresh 96-bit nonce per message (NIST SP 800-38D). The associated data binds a sealed
value to its purpose and record, so a blob cannot be moved to another row. Digests are
HMAC-SHA256 (RFC 2104) under a second key derived from the same secret, bound to their
purpose and record the same way: a copy of the database without the secret cannot test
guesses against them, and one guess tests one record, never every record at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class SealError(Exception):
    """A sealed value could not be opened: wrong secret, or tampered with."""


class Sealer:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("the sealing secret needs at least 32 bytes")
        self._aead = AESGCM(_derive(secret, b"apiward seal v1"))
        self._mac_key = _derive(secret, b"apiward digest v1")

    def digest(self, value: bytes, context: str) -> str:
        """The keyed digest of ``value`` for ``context`` (its purpose and record), hex;
        equal values give equal digests only under the same secret and context."""
        message = context.encode() + b"\0" + value
        return hmac.new(self._mac_key, message, hashlib.sha256).hexdigest()

    def seal(self, plaintext: bytes, context: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext, context.encode())
        return base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, token: str, context: str) -> bytes:
        try:
            raw = base64.urlsafe_b64decode(token.encode())
            return self._aead.decrypt(raw[:12], raw[12:], context.encode())
        except (InvalidTag, ValueError) as exc:
            raise SealError("sealed value cannot be opened with this secret") from exc


def _derive(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)
