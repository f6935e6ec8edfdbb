"""Every line logged during a request names it; nothing shaped like a secret is written."""

from __future__ import annotations

import io
import itertools
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from apiward.adapters import logging as logs
from apiward.adapters.http.app import create_app
from apiward.core.keys import KeyFormat
from tests.conftest import fast_settings

probe = logs.get_logger("apiward.probe")

CLIENT_SECRET = KeyFormat(prefix="awcs").generate("live")
REFRESH_TOKEN = KeyFormat(prefix="awrt").generate("test")
API_KEY = KeyFormat().generate("live")
JWT = jwt.encode({"sub": "usr_1", "scope": "keys:read"}, "k" * 32, algorithm="HS256")
SECRETS = [CLIENT_SECRET, REFRESH_TOKEN, API_KEY, JWT]


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


def probed(tmp_path: Path, **settings: Any) -> FastAPI:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'l.db'}"
    app = create_app(fast_settings(database_url=database_url, **settings))

    @app.get("/probe/async")
    async def in_the_loop() -> dict[str, str]:
        probe.info("probe_async")
        return {}

    @app.get("/probe/sync")
    def in_a_worker_thread() -> dict[str, str]:
        probe.info("probe_sync")
        return {}

    @app.get("/probe/boom")
    async def boom() -> dict[str, str]:
        raise RuntimeError(f"a bug with {CLIENT_SECRET} in its message")

    return app


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    return probed(tmp_path, access_log="all")


def access_lines(app: FastAPI) -> list[tuple[str, int]]:
    """The (path, status) of each access log line for a fixed set of answers."""
    out = io.StringIO()
    with TestClient(app, raise_server_exceptions=False) as client:
        logs.configure("info", "json", out)
        for path in ("/probe/async", "/probe/async", "/v1/auth/check", "/nowhere"):
            client.get(path, headers={"X-Request-Id": "req-mode"})
        client.get("/probe/boom")
    return [(x["path"], x["status"]) for x in lines(out) if x["event"] == "request"]


@pytest.mark.parametrize(
    ("mode", "logged"),
    [
        ("all", ["/probe/async", "/probe/async", "/v1/auth/check", "/nowhere", "/probe/boom"]),
        ("errors", ["/v1/auth/check", "/nowhere", "/probe/boom"]),
        ("off", []),
    ],
)
def test_the_access_log_mode_says_which_answers_get_a_line(
    tmp_path: Path, mode: str, logged: list[str]
) -> None:
    found = access_lines(probed(tmp_path, access_log=mode))
    assert [path for path, _ in found] == logged
    assert all(status >= 400 for path, status in found if mode == "errors")


def test_sampled_logs_every_error_and_a_share_of_the_rest(tmp_path: Path) -> None:
    none = access_lines(probed(tmp_path / "a", access_log="sampled", access_log_sample=0.0))
    assert [path for path, _ in none] == ["/v1/auth/check", "/nowhere", "/probe/boom"]
    every = access_lines(probed(tmp_path / "b", access_log="sampled", access_log_sample=1.0))
    assert [path for path, _ in every][:2] == ["/probe/async", "/probe/async"]
    assert len(every) == 5


def test_the_default_access_log_keeps_the_errors(tmp_path: Path) -> None:
    found = access_lines(probed(tmp_path))
    assert [status for _, status in found] == [401, 404, 500]


@pytest.fixture
def stream(app: FastAPI) -> Iterator[tuple[TestClient, io.StringIO]]:
    out = io.StringIO()
    with TestClient(app, raise_server_exceptions=False) as client:
        logs.configure("info", "json", out)
        yield client, out


@pytest.mark.parametrize("path", ["/probe/async", "/probe/sync"])
def test_lines_logged_while_serving_carry_the_request_id(
    stream: tuple[TestClient, io.StringIO], path: str
) -> None:
    client, out = stream
    r = client.get(path, headers={"X-Request-Id": "req-probe-42"})
    assert r.headers["x-request-id"] == "req-probe-42"
    [line] = [x for x in lines(out) if x["event"].startswith("probe_")]
    assert line["request_id"] == "req-probe-42"
    access = [x for x in lines(out) if x["event"] == "request"]
    assert access[-1]["request_id"] == "req-probe-42"


def test_the_request_id_does_not_outlive_its_request(
    stream: tuple[TestClient, io.StringIO],
) -> None:
    client, out = stream
    client.get("/probe/async", headers={"X-Request-Id": "req-one"})
    client.get("/probe/async")
    first, second = [x for x in lines(out) if x["event"] == "probe_async"]
    assert first["request_id"] == "req-one"
    assert second["request_id"] not in ("req-one", None)
    probe.info("outside_any_request")
    [outside] = [x for x in lines(out) if x["event"] == "outside_any_request"]
    assert "request_id" not in outside


def test_an_unhandled_error_is_logged_with_its_request_id_and_masked(
    stream: tuple[TestClient, io.StringIO],
) -> None:
    client, out = stream
    r = client.get("/probe/boom", headers={"X-Request-Id": "req-boom"})
    assert r.status_code == 500 and r.json()["request_id"] == "req-boom"
    [line] = [x for x in lines(out) if x["event"] == "unhandled_error"]
    assert line["request_id"] == "req-boom"
    assert "a bug with" in line["exception"] and CLIENT_SECRET not in out.getvalue()


class Holder:
    def __init__(self, secret: str) -> None:
        self.secret = secret

    def __repr__(self) -> str:
        return f"Holder(secret={self.secret!r})"


def test_secrets_are_masked_wherever_a_bug_puts_them() -> None:
    out = io.StringIO()
    logs.configure("debug", "json", out)
    log = logs.get_logger("apiward.bug")
    log.info(
        f"message with {API_KEY}",
        nested={"deep": [{"client_secret": CLIENT_SECRET}], REFRESH_TOKEN: "as a key"},
        items={JWT},
        pair=(CLIENT_SECRET, 1, None, True),
        raw=REFRESH_TOKEN.encode(),
        error=ValueError(f"bad token {JWT}"),
        holder=Holder(API_KEY),
        header=f"Authorization: Bearer {JWT}",
    )
    try:
        raise RuntimeError(f"refresh failed for {REFRESH_TOKEN}")
    except RuntimeError:
        log.exception("refresh_crashed", client_secret=CLIENT_SECRET)
    text = out.getvalue()
    for secret in SECRETS:
        assert secret not in text
        assert secret[8:-6] not in text
    [first, second] = lines(out)
    assert first["pair"][1:] == [1, None, True]  # plain values are kept as they were
    assert "[REDACTED]" in first["nested"]["deep"][0]["client_secret"]
    assert "RuntimeError: refresh failed for [REDACTED]" in second["exception"]


def test_the_deployments_prefixes_catch_keys_of_a_custom_alphabet() -> None:
    fmt = KeyFormat(prefix="zz", alphabet="0123456789abcdefghij.~!*+=:@")
    key = fmt.generate("live")
    out = io.StringIO()
    logs.configure("info", "json", out, secret_prefixes=("zz", "zzcs", "zzrt"))
    logs.get_logger("apiward.bug").info("oops", value=f"key={key};")
    assert key not in out.getvalue() and "[REDACTED]" in out.getvalue()
    logs.configure("info", "json", io.StringIO())


def test_standard_library_records_are_masked_too() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    server_log = logging.getLogger("uvicorn.error")
    server_log.addHandler(handler)
    try:
        logs.configure("info", "json", io.StringIO())
        try:
            raise ValueError(f"client secret {CLIENT_SECRET}")
        except ValueError:
            server_log.exception("Exception in ASGI application with %s", JWT)
        server_log.warning("refresh %s", REFRESH_TOKEN)
    finally:
        server_log.removeHandler(handler)
    text = out.getvalue()
    assert "Exception in ASGI application" in text and "ValueError: client secret" in text
    for secret in SECRETS:
        assert secret not in text


def test_made_up_request_ids_are_random_uuids() -> None:
    """Unique, version 4 of RFC 9562, and unrelated to one another: an id tells a client
    nothing of the requests made between two of its own."""
    import uuid

    from apiward.adapters.http.middleware import new_request_id

    ids = [new_request_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    parsed = [uuid.UUID(i) for i in ids]
    assert {u.version for u in parsed} == {4} and {u.variant for u in parsed} == {uuid.RFC_4122}
    assert all(str(u) == i for u, i in zip(parsed, ids, strict=True))
    suffixes = [int(i[-12:], 16) for i in ids]
    steps = {b - a for a, b in itertools.pairwise(suffixes)}
    assert len(steps) > 9_000  # no counter


# Python 3.12+ warns of a fork while other threads run (an earlier test's may linger);
# the child here only draws ids and writes to a pipe.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_process_makes_request_ids_of_its_own() -> None:
    """Ids are drawn from the system's generator in batches: a worker forked from a
    process that holds one draws its own, never the ids its parent will hand out."""
    from apiward.adapters.http.middleware import new_request_id

    new_request_id()  # the parent holds a batch
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, "\n".join(new_request_id() for _ in range(8)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        child = pipe.read().split("\n")
    parent = [new_request_id() for _ in range(8)]
    assert len(child) == 8 and not set(child) & set(parent)


def test_threads_drawing_request_ids_at_once_never_share_one() -> None:
    """A host app's threads draw ids from the same batches as the server's loop: each id
    is handed out once, whichever thread refills a batch first."""
    from concurrent.futures import ThreadPoolExecutor

    from apiward.adapters.http.middleware import new_request_id

    def draw(_: int) -> list[str]:
        return [new_request_id() for _ in range(5_000)]

    with ThreadPoolExecutor(4) as pool:
        drawn = [i for ids in pool.map(draw, range(8)) for i in ids]
    assert len(set(drawn)) == len(drawn) == 40_000
