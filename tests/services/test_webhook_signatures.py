"""``apiward.webhooks``: the signature receivers check (Stripe's t=...,v1=... scheme)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from apiward import webhooks
from apiward.webhooks import WebhookSignatureError, sign, verify_signature

SECRET = "whsec_test-secret"
BODY = b'{"id":"evt_1","type":"key.revoked"}'
NOW = 1_800_000_000


def test_a_signed_body_verifies() -> None:
    verify_signature(SECRET, sign(SECRET, BODY, NOW), BODY, now=NOW + 10)


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, BODY, NOW) == f"t={NOW},v1={expected}"


@pytest.mark.parametrize(
    ("secret", "body", "now"),
    [
        pytest.param("whsec_other", BODY, NOW, id="wrong secret"),
        pytest.param(SECRET, BODY + b" ", NOW, id="body changed"),
        pytest.param(SECRET, BODY, NOW + 301, id="too old: a replay"),
        pytest.param(SECRET, BODY, NOW - 301, id="from the future"),
    ],
)
def test_a_wrong_or_stale_signature_is_refused(secret: str, body: bytes, now: int) -> None:
    with pytest.raises(WebhookSignatureError):
        verify_signature(secret, sign(SECRET, BODY, NOW), body, now=now)


@pytest.mark.parametrize(
    "header",
    ["", "garbage", f"t={NOW}", "v1=abc", f"t=soon,v1={'0' * 64}", f"t={NOW},v0=abc"],
)
def test_a_malformed_header_is_refused(header: str) -> None:
    with pytest.raises(WebhookSignatureError, match="missing or malformed"):
        verify_signature(SECRET, header, BODY, now=NOW)


def test_one_matching_v1_among_several_is_enough() -> None:
    good = sign(SECRET, BODY, NOW)
    header = f"t={NOW},v1={'0' * 64},{good.split(',')[1]}"
    verify_signature(SECRET, header, BODY, now=NOW)


def test_the_tolerance_is_the_callers() -> None:
    header = sign(SECRET, BODY, NOW)
    verify_signature(SECRET, header, BODY, tolerance=3600, now=NOW + 3000)
    with pytest.raises(WebhookSignatureError):
        verify_signature(SECRET, header, BODY, tolerance=60, now=NOW + 61)


def test_the_module_exports_what_receivers_need() -> None:
    assert set(webhooks.__all__) == {
        "SIGNATURE_HEADER",
        "WebhookSignatureError",
        "sign",
        "verify_signature",
    }
    assert issubclass(WebhookSignatureError, ValueError)
