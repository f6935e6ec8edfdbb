"""One typed state per request, the same whether read from the request or its scope."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from apiward.adapters.http.state import RequestState, state_of


def scope(**extra: Any) -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": "/", "headers": [], **extra}


def test_the_request_and_its_scope_share_one_state() -> None:
    raw = scope()
    state = state_of(raw)
    state.grant_type = "password"
    assert isinstance(state, RequestState)
    assert state_of(Request(raw)) is state
    assert state_of(Request(raw)).grant_type == "password"


def test_the_state_lives_beside_what_others_keep_in_the_scope() -> None:
    raw = scope(state={"from_lifespan": 1})
    state_of(raw).request_id = "req_1"
    assert Request(raw).state.from_lifespan == 1
    assert state_of(raw).request_id == "req_1"


def test_each_request_starts_empty() -> None:
    first, second = scope(), scope()
    state_of(first).verify_code = "VALID"
    assert state_of(second) == RequestState()
