"""Identifiers: a short type prefix and 20 base62 characters (about 119 random bits)."""

from __future__ import annotations

import secrets

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def new_id(kind: str) -> str:
    return f"{kind}_" + "".join(secrets.choice(_BASE62) for _ in range(20))
