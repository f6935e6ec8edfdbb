"""Bodies of ``POST /v1/leaks/github`` (adapters/http/routes/leaks.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class LeakMatch(BaseModel):
    token: str
    type: str
    url: str | None = None
    source: str | None = None


class LeakLabel(BaseModel):
    token_raw: str
    token_type: str
    label: Literal["true_positive", "false_positive"]
