"""Identifiers: a short type prefix and 20 base62 characters (about 119 random bits)."""

from __future__ import annotations

import secrets

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_LENGTH = 20
_USABLE = 256 - 256 % len(_BASE62)
"""Bytes below 248 map onto the alphabet evenly (four bytes a character); the rest are
dropped, so every character is uniform."""
_TO_BASE62 = bytes(ord(_BASE62[b % len(_BASE62)]) if b < _USABLE else 0 for b in range(256))
_DROPPED = bytes(range(_USABLE, 256))


def new_id(kind: str) -> str:
    chars = b""
    while len(chars) < _LENGTH:  # 32 bytes give 20 characters but for 1 time in 10^8
        chars += secrets.token_bytes(32).translate(_TO_BASE62, _DROPPED)
    return f"{kind}_{chars[:_LENGTH].decode()}"
