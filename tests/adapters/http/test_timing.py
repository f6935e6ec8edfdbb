"""Timing: refusals that must not be told apart by a stopwatch are answered alike.

Samples are interleaved (so drift hits every kind equally) and compared by their
medians and middle halves, not by single measurements.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from fastapi.testclient import TestClient

from apiward.adapters.http.app import create_app
from apiward.adapters.runtime import Runtime
from apiward.core.models import RequestContext
from tests.adapters.dashboard.conftest import csrf_of
from tests.conftest import Org, fast_settings

_CTX = RequestContext()


def _samples(
    calls: Mapping[str, Callable[[], object]],
    rounds: int,
    settle: Callable[[], object] = lambda: None,
) -> dict[str, list[float]]:
    """Each call's times; ``settle`` runs, untimed, before every call: it waits for the
    work the previous answer left to do (an audit write, a mail), which would otherwise
    slow whichever call came next, and not the answers compared."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            settle()
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return times


def _alike(times: dict[str, list[float]], tolerance: float) -> dict[str, float]:
    medians = {name: statistics.median(ts[len(ts) // 10 :]) for name, ts in times.items()}
    low, high = min(medians.values()), max(medians.values())
    assert (high - low) / high < tolerance, medians
    return medians


def test_unknown_wrong_secret_and_revoked_keys_take_the_same_time(org: Org) -> None:
    fmt = org.runtime.settings.key_format
    real = org.create_key(["keys:read"])
    revoked = org.create_key(["keys:read"])
    org.client.post(f"/v1/keys/{revoked['id']}/revoke", headers=org.headers())
    # "Wrong secret": the real key's prefix, environment and last characters kept, the
    # secret part changed (and its checksum made valid again).
    secret = real["key"]
    head = secret[: -fmt.checksum_length - 6]
    wrong_body = head + "A" * 6 if not head.endswith("A" * 6) else head + "B" * 6
    wrong = wrong_body + fmt._checksum(wrong_body)
    unknown = fmt.generate("live")
    client = org.client
    keys = {"unknown": unknown, "wrong_secret": wrong, "revoked": revoked["key"]}

    def presenting(key: str) -> Callable[[], object]:
        return lambda: client.get("/v1/keys", headers={"Authorization": f"Bearer {key}"})

    calls = {name: presenting(key) for name, key in keys.items()}
    for call in calls.values():
        call()  # warm: every kind now answered from the cache
    medians = _alike(_samples(calls, 300), tolerance=0.35)
    print("key refusal medians (ms):", {k: round(v * 1000, 3) for k, v in medians.items()})


def test_unknown_user_and_wrong_password_take_the_same_time(org: Org) -> None:
    client = org.client
    calls = {
        "unknown_user": lambda: client.post(
            "/v1/auth/token",
            json={"username": "ghost@acme.test", "password": "x" * 12},
            headers={"X-Forwarded-For": "198.51.100.1"},
        ),
        "wrong_password": lambda: client.post(
            "/v1/auth/token",
            json={"username": "owner@acme.test", "password": "x" * 12},
            headers={"X-Forwarded-For": "198.51.100.2"},
        ),
    }
    # Keep the sign-in throttle out of the way: reset it between rounds.
    limiter = org.runtime.limiter

    def reset() -> None:
        # A wrong password's login.failed audit is written after its answer: done first.
        client.portal.call(org.runtime.sign_ins.drain)  # type: ignore[union-attr]
        for kind, value in (
            ("user", "ghost@acme.test"),
            ("user", "owner@acme.test"),
            ("ip", "testclient"),
        ):
            client.portal.call(limiter.reset, f"login:{kind}:{value}")  # type: ignore[union-attr]

    medians = _alike(_samples(calls, 60, settle=reset), tolerance=0.35)
    print("sign-in refusal medians (ms):", {k: round(v * 1000, 3) for k, v in medians.items()})


def _portal_client(tmp_path: Path) -> TestClient:
    settings = fast_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'timing.db'}",
        portal_email_limit="100000/hour",
        portal_ip_limit="100000/hour",
    )
    return TestClient(create_app(settings), base_url="http://127.0.0.1:8000")


def _settled(client: TestClient) -> Callable[[], None]:
    """Waits for what the portal and the sign-ins left to do after their last answers."""
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    portal = client.portal
    assert portal is not None

    def settle() -> None:
        portal.call(runtime.portal.drain)
        portal.call(runtime.sign_ins.drain)

    return settle


def _form_poster(client: TestClient, page: str, path: str) -> Callable[[dict[str, str]], object]:
    token = csrf_of(client.get(page).text)

    def post(data: dict[str, str]) -> object:
        return client.post(path, data={"csrf": token, **data})

    return post


def test_reset_requests_for_known_and_unknown_addresses_take_the_same_time(
    tmp_path: Path,
) -> None:
    with _portal_client(tmp_path) as client:
        post = _form_poster(client, "/dashboard/forgot", "/dashboard/forgot")
        runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
        portal = client.portal
        assert portal is not None
        portal.call(runtime.portal.sign_up, "known@example.test", "K", "a long passphrase", _CTX)
        portal.call(runtime.portal.drain)
        calls: dict[str, Callable[[], object]] = {
            "known": lambda: post({"email": "known@example.test"}),
            "unknown": lambda: post({"email": "unknown@example.test"}),
        }
        for call in calls.values():
            call()
        medians = _alike(_samples(calls, 120, _settled(client)), tolerance=0.3)
    print("reset request medians (ms):", {k: round(v * 1000, 3) for k, v in medians.items()})


def test_sign_ups_of_new_and_taken_addresses_take_the_same_time(tmp_path: Path) -> None:
    with _portal_client(tmp_path) as client:
        post = _form_poster(client, "/dashboard/signup", "/dashboard/signup")
        fresh = itertools.count()
        password = "a long passphrase"
        post({"email": "taken@example.test", "name": "T", "password": password})
        calls: dict[str, Callable[[], object]] = {
            "new": lambda: post(
                {"email": f"new{next(fresh)}@example.test", "name": "N", "password": password}
            ),
            "taken": lambda: post(
                {"email": "taken@example.test", "name": "T", "password": password}
            ),
        }
        medians = _alike(_samples(calls, 80, _settled(client)), tolerance=0.3)
    print("sign-up medians (ms):", {k: round(v * 1000, 3) for k, v in medians.items()})


def test_dashboard_sign_in_of_a_known_account_and_an_unknown_address_take_the_same_time(
    tmp_path: Path,
) -> None:
    with _portal_client(tmp_path) as client:
        runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
        portal = client.portal
        assert portal is not None
        portal.call(runtime.portal.sign_up, "known@example.test", "K", "a long passphrase", _CTX)
        portal.call(runtime.portal.drain)
        post = _form_poster(client, "/dashboard/login", "/dashboard/login")
        limiter = runtime.limiter

        def refused(email: str) -> Callable[[], object]:
            def run() -> object:
                for key in (f"login:user:{email}", "login:ip:testclient"):
                    portal.call(limiter.reset, key)
                return post({"email": email, "password": "not the password"})

            return run

        calls = {"known": refused("known@example.test"), "unknown": refused("ghost@example.test")}
        for call in calls.values():
            call()
        medians = _alike(_samples(calls, 60, _settled(client)), tolerance=0.3)
    print("dashboard sign-in medians (ms):", {k: round(v * 1000, 3) for k, v in medians.items()})
