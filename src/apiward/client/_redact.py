"""Showing secrets without revealing them.

API keys, access and refresh tokens, and client secrets appear in ``repr``, logs and
messages only as their first characters and an ellipsis; passwords never appear at all.
"""

from __future__ import annotations

__all__ = ["mask"]

SHOWN = 8


def mask(secret: str | None) -> str:
    """``secret``'s prefix and an ellipsis: enough to tell two keys apart, not to use one.

    At most 8 characters are shown, and never more than a third of the secret, so a
    short secret is not given away by its own prefix.

    >>> mask("aw_live_3kF9qT2mZp8Lx")
    'aw_live_…'
    """
    if not secret:
        return "…"
    return secret[: min(SHOWN, len(secret) // 3)] + "…"
