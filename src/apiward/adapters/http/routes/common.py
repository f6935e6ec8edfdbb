"""Helpers shared by the management routes."""

from __future__ import annotations

from fastapi import Depends, Query, Response

from apiward.core.models import PageRequest


async def pagination(
    page: int = Query(1, ge=1, le=1_000_000, description="Page number, from 1."),
    page_size: int = Query(20, ge=1, le=100, description="Items per page, 1 to 100."),
) -> PageRequest:
    return PageRequest(page=page, page_size=page_size)


async def _no_store(response: Response) -> None:
    response.headers["Cache-Control"] = "no-store"


NO_STORE = [Depends(_no_store)]
"""Dependencies of a route whose answer carries a secret once (a key, a client secret, a
webhook signing secret): no cache may keep it (RFC 9111 section 5.2.2.5)."""
