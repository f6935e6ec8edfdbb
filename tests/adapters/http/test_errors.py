"""Error envelopes and bad input: every mistake gets a 4xx that says what to fix."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from apiward.adapters.http.app import create_app
from tests.conftest import Org, bootstrap, fast_settings, migrated_sqlite


@pytest.mark.parametrize(
    ("style", "check"),
    [
        (
            "default",
            lambda b: (
                b["status_code"] == 401
                and b["code"] == "UNAUTHORIZED"
                and b["reason"] == "KEY_REVOKED"
                and b["message"] == "API key has been revoked"
                and b["request_id"]
            ),
        ),
        (
            "nested",
            lambda b: (
                b["error"]["code"] == "UNAUTHORIZED"
                and b["error"]["message"] == "API key has been revoked"
            ),
        ),
        ("detail", lambda b: b == {"detail": "API key has been revoked"}),
        (
            "problem",
            lambda b: (
                b["status"] == 401
                and b["title"] == "Unauthorized"
                and b["detail"] == "API key has been revoked"
                and b["type"].endswith("key_revoked")
            ),
        ),
    ],
)
def test_error_styles(tmp_path: Path, style: str, check: object) -> None:
    settings = fast_settings(database_url=migrated_sqlite(tmp_path / "a.db"), error_style=style)
    with TestClient(create_app(settings)) as client:
        org = bootstrap(client)
        created = org.create_key(["keys:read"])
        client.post(f"/v1/keys/{created['id']}/revoke", headers=org.headers())
        r = client.get("/v1/keys", headers=org.headers(created["key"]))
        assert r.status_code == 401
        assert callable(check) and check(r.json())
        if style == "problem":
            assert r.headers["content-type"] == "application/problem+json"


def test_monk_messages_are_distinct(org: Org) -> None:
    import datetime as dt

    c = org.client
    revoked = org.create_key(["keys:read"])
    c.post(f"/v1/keys/{revoked['id']}/revoke", headers=org.headers())
    disabled = org.create_key(["keys:read"])
    c.post(f"/v1/keys/{disabled['id']}/disable", headers=org.headers())
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(milliseconds=300)).isoformat()
    expiring = org.create_key(["keys:read"], expires_at=soon)
    import time

    time.sleep(0.4)
    cases = {
        "missing": c.get("/v1/keys"),
        "invalid": c.get(
            "/v1/keys", headers=org.headers(org.runtime.settings.key_format.generate("live"))
        ),
        "revoked": c.get("/v1/keys", headers=org.headers(revoked["key"])),
        "disabled": c.get("/v1/keys", headers=org.headers(disabled["key"])),
        "expired": c.get("/v1/keys", headers=org.headers(expiring["key"])),
        "instance": c.get(
            "/v1/keys",
            headers=org.headers(
                __import__("apiward.core.keys", fromlist=["KeyFormat"])
                .KeyFormat(prefix="mk")
                .generate("live")
            ),
        ),
        "forbidden": c.get(
            "/v1/users",
            headers=org.headers(revoked["key"][:0] + org.create_key(["keys:read"])["key"]),
        ),
    }
    reasons = {name: r.json()["reason"] for name, r in cases.items()}
    messages = {r.json()["message"] for r in cases.values()}
    assert reasons == {
        "missing": "MISSING_CREDENTIAL",
        "invalid": "INVALID_KEY",
        "revoked": "KEY_REVOKED",
        "disabled": "KEY_DISABLED",
        "expired": "KEY_EXPIRED",
        "instance": "WRONG_INSTANCE",
        "forbidden": "INSUFFICIENT_SCOPE",
    }
    assert len(messages) == len(cases)
    assert "prefix 'mk_'" in cases["instance"].json()["message"]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "fragment"),
    [
        (
            "POST",
            "/v1/keys",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            400,
            "not valid JSON",
        ),
        ("POST", "/v1/keys", {"json": {"name": "x", "scopes": "keys:read"}}, 400, "scopes"),
        ("POST", "/v1/keys", {"json": {"name": "x"}}, 400, "scopes"),
        (
            "POST",
            "/v1/keys",
            {"json": {"name": "x", "scopes": ["keys:read"], "extra": 1}},
            400,
            "extra",
        ),
        (
            "POST",
            "/v1/keys",
            {"json": {"name": "x", "scopes": ["not a scope"]}},
            400,
            "resource:action",
        ),
        (
            "POST",
            "/v1/keys",
            {"json": {"name": "x", "scopes": ["keys:read"], "ip_allow": ["nope"]}},
            400,
            "CIDR",
        ),
        (
            "POST",
            "/v1/keys",
            {"json": {"name": "x", "scopes": ["keys:read"], "expires_at": "2001-01-01T00:00:00Z"}},
            400,
            "future",
        ),
        (
            "POST",
            "/v1/keys",
            {"json": {"name": "x", "scopes": ["keys:read"], "expires_at": "2099-01-01T00:00:00"}},
            400,
            "time zone",
        ),
        (
            "POST",
            "/v1/keys",
            {"json": {"name": "x", "scopes": ["keys:read"], "environment": "staging"}},
            403,
            "live",
        ),
        ("POST", "/v1/keys", {"json": [1, 2]}, 400, "body"),
        ("GET", "/v1/keys?page=0", {}, 400, "page"),
        ("GET", "/v1/keys?page_size=1000", {}, 400, "page_size"),
        ("GET", "/v1/keys?page=abc", {}, 400, "page"),
        ("POST", "/v1/keys/key_x/roll", {"json": {"grace_seconds": -1}}, 400, "grace_seconds"),
        ("GET", "/v1/nothing-here", {}, 404, "/docs"),
        ("DELETE", "/v1/keys", {}, 405, "not allowed"),
        (
            "POST",
            "/v1/keys",
            {"content": b"x" * 2_000_000, "headers": {"content-type": "application/json"}},
            413,
            "exceeds",
        ),
    ],
)
def test_bad_input_gets_a_clear_4xx(
    org: Org, method: str, path: str, kwargs: dict[str, object], status: int, fragment: str
) -> None:
    headers = {**org.headers(), **kwargs.pop("headers", {})}  # type: ignore[dict-item]
    r = org.client.request(method, path, headers=headers, **kwargs)  # type: ignore[arg-type]
    assert r.status_code == status, r.text
    assert fragment in r.json()["message"]


def test_oversize_streamed_body_without_length_is_refused(org: Org) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b"x" * 65536

    r = org.client.post("/v1/keys", headers=org.headers(), content=chunks())
    assert r.status_code == 413


def test_huge_header_values_are_handled(org: Org) -> None:
    r = org.client.get(
        "/v1/keys",
        headers={"Authorization": "Bearer " + "a" * 10000, "Apiward-Space-Id": "s" * 10000},
    )
    assert r.status_code == 401
