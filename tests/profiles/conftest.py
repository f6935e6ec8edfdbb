"""apiward started with one of the shipped profiles (docs/profiles/*.toml), as a
deployment would start it: APIWARD_CONFIG_FILE names the file."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from apiward.adapters.http.app import create_app
from apiward.adapters.limiter import memory
from apiward.adapters.limiter.memory import MemoryLimiter
from apiward.adapters.settings import Settings
from apiward.core.limits import NS
from apiward.core.models import Principal
from apiward.server import require
from tests.conftest import Org, bootstrap, fast_settings, migrated_sqlite

PROFILES = Path(__file__).parents[2] / "docs" / "profiles"

Profile = Callable[..., Org]


def profile_settings(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **overrides: Any
) -> Settings:
    monkeypatch.setenv("APIWARD_CONFIG_FILE", str(PROFILES / f"{name}.toml"))
    return fast_settings(database_url=migrated_sqlite(tmp_path / f"{name}.db"), **overrides)


def with_business_routes(app: FastAPI) -> FastAPI:
    """The protected API the documents call: lists of things and customers, events."""

    @app.get("/v1/things")
    async def things(principal: Principal = require("things:read")) -> dict[str, Any]:
        items = [{"iccid": "89370100002471565102", "name": "Device-001", "status": "active"}]
        return {"items": items, "total": 1, "page": 1, "page_size": 20}

    @app.get("/v1/customers")
    async def customers(principal: Principal = require("customers:read")) -> dict[str, Any]:
        return {"items": [], "space": principal.space_id}

    @app.post("/v1/customers")
    async def create_customer(principal: Principal = require("customers:write")) -> dict[str, Any]:
        return {"created": True}

    @app.post("/v1/events")
    async def events(principal: Principal = require("usage:write")) -> dict[str, Any]:
        return {"accepted": 1}

    return app


@pytest.fixture
def profile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Profile]:
    """A factory: ``profile("monk")`` is an org on apiward running that profile.

    The limiter's clock starts at the start of an hour, so a test that spends a fixed
    window (a minute, an hour) sees one window however slowly the machine runs it.
    """
    clients: list[TestClient] = []
    started, hour = time.monotonic_ns(), 1_000 * 3_600 * NS

    def timer() -> int:
        return hour + time.monotonic_ns() - started

    # The runtime imports the limiter's class when it builds it (adapters/runtime.py).
    monkeypatch.setattr(memory, "MemoryLimiter", partial(MemoryLimiter, timer=timer))

    def start(name: str, **overrides: Any) -> Org:
        settings = profile_settings(name, monkeypatch, tmp_path, **overrides)
        client = TestClient(with_business_routes(create_app(settings)))
        client.__enter__()
        clients.append(client)
        return bootstrap(client, email="owner@example.test")

    yield start
    for client in clients:
        client.__exit__(None, None, None)
