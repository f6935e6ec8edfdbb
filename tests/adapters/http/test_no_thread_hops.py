"""No request waits on a worker thread it does not need: FastAPI runs a plain function
endpoint or dependency in a thread pool, a hop per call per request, so every one that
the server registers is a coroutine."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from apiward.adapters.http.app import create_app
from tests.conftest import fast_settings


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def _routes(routes: list[Any]) -> Iterator[APIRoute]:
    """Every API route, inside included routers too."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _routes(included.routes)


def _runs_in_the_loop(call: Any) -> bool:
    if inspect.isclass(call):
        return False  # a class is instantiated in the thread pool
    method = call if inspect.isroutine(call) else getattr(call, "__call__", None)  # noqa: B004
    return inspect.iscoroutinefunction(method)


def test_every_endpoint_and_dependency_of_the_server_is_a_coroutine(tmp_path: Path) -> None:
    app = create_app(fast_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"))
    routes = list(_routes(app.routes))
    assert len(routes) > 100
    threaded = sorted(
        f"{route.path} {getattr(call, '__qualname__', call)}"
        for route in routes
        for call in (route.endpoint, *_calls(route.dependant))
        if not _runs_in_the_loop(call)
    )
    assert threaded == []
