"""No secret ever reaches the logs, the metrics or an error answer."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from apiward.adapters import logging as logs
from apiward.adapters.http.app import create_app
from tests.conftest import bootstrap, examples, fast_settings


def test_full_flow_leaves_no_secret_in_logs_metrics_or_errors(tmp_path: Path) -> None:
    stream = io.StringIO()
    settings = fast_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'a.db'}",
        log_level="debug",
        access_log="all",  # every request's line, to look for secrets in
    )
    errors: list[str] = []

    def keep_errors(response: httpx.Response) -> None:
        if response.status_code >= 400:
            response.read()
            errors.append(response.text + str(dict(response.headers)))

    with TestClient(create_app(settings)) as client:
        logs.configure("debug", "json", stream)
        client.event_hooks["response"].append(keep_errors)
        org = bootstrap(client)
        secrets = [org.owner_key, org.owner_test_key]
        created = org.create_key(["keys:read"])
        secrets.append(created["key"])
        rolled = client.post(
            f"/v1/keys/{created['id']}/roll", headers=org.headers(), json={"grace_seconds": 60}
        ).json()
        secrets.append(rolled["key"])
        for key in secrets:
            client.get("/v1/keys", headers=org.headers(key))
            wrong = key[:-1] + ("y" if key.endswith("x") else "x")  # never the key itself
            client.get("/v1/users", headers=org.headers(wrong))
            client.get("/v1/keys", headers={"Authorization": key})
        client.post(f"/v1/keys/{created['id']}/revoke", headers=org.headers())
        client.get("/v1/keys", headers=org.headers(created["key"]))
        login = {"username": "owner@acme.test", "password": "correct horse battery"}
        pair = client.post("/v1/auth/token", json=login).json()
        refreshed = client.post(
            "/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
        ).json()
        client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"] + "x"})
        oauth = client.post(
            "/v1/clients", headers=org.headers(), json={"name": "c", "scopes": ["keys:read"]}
        ).json()
        grant = client.post(
            "/v1/auth/token",
            json={
                "grant_type": "client_credentials",
                "client_id": oauth["client_id"],
                "client_secret": oauth["client_secret"],
            },
        ).json()
        client.post(
            "/v1/auth/token",
            json={
                "grant_type": "client_credentials",
                "client_id": oauth["client_id"],
                "client_secret": oauth["client_secret"] + "x",
            },
        )
        client.post("/v1/auth/token", json={**login, "password": "wrong password"})
        for token in (pair["access_token"], refreshed["access_token"], grant["access_token"]):
            client.get("/v1/keys", headers={"Authorization": f"Bearer {token}"})
        client.post("/v1/auth/revoke", data={"token": refreshed["refresh_token"]})
        metrics = client.get("/metrics").text
        assert "apiward_http_requests_total" in metrics
        secrets += [
            pair["access_token"],
            pair["refresh_token"],
            refreshed["access_token"],
            refreshed["refresh_token"],
            oauth["client_secret"],
            grant["access_token"],
            login["password"],
        ]
    output = stream.getvalue()
    lines = [json.loads(line) for line in output.splitlines()]
    assert any(line.get("event") == "request" for line in lines)
    assert all("request_id" in line for line in lines if line.get("event") == "request")
    assert len(errors) > 10
    for place in (output, metrics, "\n".join(errors)):
        for secret in secrets:
            assert secret not in place
            assert secret[8:-6] not in place
        assert "correct horse" not in place


def test_redaction_masks_what_looks_like_a_credential() -> None:
    text = "got aw_live_ZYxi2N4hOcGS7MrqDqtcYDUJBTLQDOUv0tqq3o and Bearer abcdefghijkl"
    masked = logs.redact(text)
    assert "ZYxi2N4h" not in masked and "abcdefghijkl" not in masked
    assert "[REDACTED]" in masked


def _every_pattern(text: str) -> str:
    for pattern in (*logs._PATTERNS, *logs._prefixed):
        text = pattern.sub(logs._mask, text)
    return text


@settings(max_examples=examples(400), deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(alphabet="abcXYZ019_-. /=+", max_size=40),
            st.sampled_from(["eyJ", "Bearer ", "BASIC ", "aw_live_", "_", "awel_"]),
        ),
        max_size=8,
    ).map("".join)
)
def test_redaction_skips_only_text_no_pattern_could_match(text: str) -> None:
    """The quick pre-check never lets through what the patterns would have masked."""
    logs.configure("warning", "json", secret_prefixes=("aw", "awel"))
    assert logs.redact(text) == _every_pattern(text)


def test_a_started_server_has_frozen_the_heap_it_started_with(tmp_path: Path) -> None:
    """The collector never rescans what the server holds from its start (bench/README.md:
    full collections of that heap were the p99 of a request)."""
    import gc

    settings = fast_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'g.db'}")
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        assert gc.get_freeze_count() > 10_000


_FIRST_REQUEST = """
import gc, sys
from fastapi.testclient import TestClient
from apiward.adapters.http.app import create_app
from tests.conftest import fast_settings

with TestClient(create_app(fast_settings(database_url=sys.argv[1]))) as client:
    client.get("/healthz")
    gc.collect()
    before = len(gc.get_objects())
    assert client.get("/v1/keys").status_code == 401
    assert client.get("/dashboard/login").status_code == 200
    gc.collect()
    print(len(gc.get_objects()) - before)
"""


def test_the_routes_are_built_before_the_heap_is_frozen(tmp_path: Path) -> None:
    """FastAPI builds a route's dependencies at the first request through its router:
    the first server of a process builds every route before freezing, so first requests
    leave nothing for the collector to scan again and again (a process of its own: the
    heap is frozen once per process)."""
    import subprocess
    import sys

    url = f"sqlite+aiosqlite:///{tmp_path / 'g.db'}"
    done = subprocess.run(
        [sys.executable, "-c", _FIRST_REQUEST, url],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[3],
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # Built on first use, the two routers' routes were some 10,000 objects.
    assert int(done.stdout.split()[-1]) < 1_000


def test_uvicorn_access_lines_keep_their_arguments_and_lose_their_secrets() -> None:
    """uvicorn's access formatter unpacks a record's arguments: the filter masks each one
    and keeps them, so an embedding app's access log keeps its lines, credentials masked."""
    import logging

    from uvicorn.logging import AccessFormatter

    logs.configure("info", "json", secret_prefixes=("aw",))
    secret = "aw_live_" + "A" * 32
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", f"/v1/things?key={secret}", "1.1", 200),
        None,
    )
    assert logs.RedactingFilter().filter(record)
    line = AccessFormatter("%(client_addr)s %(request_line)s %(status_code)s").format(record)
    assert secret not in line
    assert line == "127.0.0.1:5000 GET /v1/things?key=[REDACTED] HTTP/1.1 200 OK"
    assert isinstance(record.args, tuple) and len(record.args) == 5


def test_records_without_secrets_pass_unchanged() -> None:
    import logging

    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s of %d", ("one", 2), None)
    assert logs.RedactingFilter().filter(record)
    assert (record.msg, record.args) == ("%s of %d", ("one", 2))


def test_logs_configured_without_a_stream_follow_the_standard_output_of_the_moment(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A command run with its output captured (``CliRunner``) configures the logs while
    ``sys.stdout`` is its capture, and closes the capture after: the lines written later
    go to the standard output there is then, never to the closed capture."""
    import sys

    captured = io.StringIO()
    before, sys.stdout = sys.stdout, captured
    try:
        logs.configure("info", "json")
    finally:
        sys.stdout = before
        captured.close()
    logs.get_logger("apiward.test").info("after_the_capture")
    assert '"event": "after_the_capture"' in capsys.readouterr().out
