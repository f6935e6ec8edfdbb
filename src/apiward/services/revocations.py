"""Revoked access tokens, sessions and clients, as every process holds them in memory."""

from __future__ import annotations

from apiward.core import tokens as jwt_tokens


class Revocations:
    """Revoked access-token ids, sessions (refresh families) and clients, held in memory.

    Signatures stay valid after a revocation, so the guard consults this set on every
    request; the poller keeps it current across processes.
    """

    def __init__(self) -> None:
        self._items: frozenset[tuple[str, str]] = frozenset()

    def replace(self, items: list[tuple[str, str]]) -> None:
        self._items = frozenset(items)

    def __contains__(self, item: tuple[str, str]) -> bool:
        return item in self._items

    def add(self, kind: str, value: str) -> None:
        self._items = self._items | {(kind, value)}

    def revoked(self, claims: jwt_tokens.AccessClaims) -> bool:
        items = self._items
        return bool(items) and (
            ("jti", claims.jti) in items
            or (claims.sid is not None and ("family", claims.sid) in items)
            or ("client", claims.client_id) in items
        )
