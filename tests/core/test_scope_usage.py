"""What a credential's scope uses say against the scopes it holds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from apiward.core.errors import InvalidInput
from apiward.core.scope_usage import ScopeUse, report, since

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


def _uses(*pairs: tuple[str, int]) -> list[ScopeUse]:
    return [ScopeUse(20000, "org_a", "live", "key_1", s, n) for s, n in pairs]


def test_patterns_report_the_concrete_scopes_they_stood_for() -> None:
    got = report(
        ["things:*", "orders:read", "*:write"],
        _uses(("things:read", 3), ("things:delete", 1), ("gone:read", 2)),
        NOW - timedelta(days=30),
        NOW,
    )
    assert [(u.scope, u.requests, u.granted_by) for u in got.used] == [
        ("gone:read", 2, None),  # needed once, not granted any more: not narrowed to
        ("things:delete", 1, "things:*"),
        ("things:read", 3, "things:*"),
    ]
    assert got.unused == ["*:write", "orders:read"]
    assert got.narrowed == ["things:delete", "things:read"]


def test_the_narrowest_granting_scope_is_named_and_nothing_used_narrows_to_nothing() -> None:
    got = report(["keys:*", "*:read", "keys:read"], _uses(("keys:read", 1)), NOW, NOW)
    assert got.granted == ["*:read", "keys:*"]  # normalised: keys:read is implied
    assert got.used[0].granted_by == "*:read"  # of equally wide ones, the first
    assert got.unused == []  # both stood for it
    exact = report(["keys:read", "clients:*"], _uses(("keys:read", 1)), NOW, NOW)
    assert exact.used[0].granted_by == "keys:read" and exact.unused == ["clients:*"]
    nothing = report(["keys:read"], [], NOW, NOW)
    assert nothing.used == [] and nothing.unused == ["keys:read"] and nothing.narrowed == []


@pytest.mark.parametrize("text", ["soon", "2026-12-08", "1000d", "2019-01-01T00:00:00Z"])
def test_since_refuses_what_it_cannot_answer(text: str) -> None:
    with pytest.raises(InvalidInput, match="since"):
        since(text, NOW, timedelta(days=730))


def test_since_defaults_to_thirty_days_and_takes_spans_and_dates() -> None:
    kept = timedelta(days=730)
    assert since(None, NOW, kept) == NOW - timedelta(days=30)
    assert since("7d", NOW, kept) == NOW - timedelta(days=7)
    assert since("2026-12-01", NOW, kept) == datetime(2026, 12, 1, tzinfo=UTC)
