"""Helpers shared by the management routes."""

from __future__ import annotations

from fastapi import Query

from apiward.core.models import PageRequest


def pagination(
    page: int = Query(1, ge=1, le=1_000_000, description="Page number, from 1."),
    page_size: int = Query(20, ge=1, le=100, description="Items per page, 1 to 100."),
) -> PageRequest:
    return PageRequest(page=page, page_size=page_size)
