"""Sealing small secrets at rest (signing keys, a refresh answer kept for its grace window).

AES-256-GCM under a key derived with HKDF-SHA256 from the deployment's secret; a fresh
96-bit nonce per message (NIST SP 800-38D). The associated data binds a sealed value to
its purpose and record, so a blob cannot be moved to another row.
"""

from __future__ import annotations

import base64
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
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"apiward seal v1").derive(
            secret
        )
        self._aead = AESGCM(key)

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
