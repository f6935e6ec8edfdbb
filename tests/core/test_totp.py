"""TOTP against RFC 6238's own test vectors (SHA-1, cut to six digits), and the
window and formats around it."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest

from apiward.core.crypto import Sealer
from apiward.core.totp import (
    base32,
    code_at,
    from_base32,
    looks_like_recovery,
    matching_step,
    new_recovery_codes,
    new_secret,
    otpauth_uri,
    recovery_text,
    step_of,
)

RFC_SECRET = b"12345678901234567890"


@pytest.mark.parametrize(
    ("unix", "eight_digits"),
    [
        (59, "94287082"),
        (1111111109, "07081804"),
        (1111111111, "14050471"),
        (1234567890, "89005924"),
        (2000000000, "69279037"),
        (20000000000, "65353130"),
    ],
)
def test_rfc_6238_vectors(unix: int, eight_digits: str) -> None:
    at = datetime.fromtimestamp(unix, UTC)
    assert code_at(RFC_SECRET, step_of(at)) == eight_digits[-6:]


def test_one_step_either_side_matches_and_no_further() -> None:
    at = datetime.fromtimestamp(1234567890, UTC)
    now = step_of(at)
    for offset in (-1, 0, 1):
        assert matching_step(RFC_SECRET, code_at(RFC_SECRET, now + offset), at) == now + offset
    for offset in (-3, -2, 2, 3):
        assert matching_step(RFC_SECRET, code_at(RFC_SECRET, now + offset), at) is None
    code = code_at(RFC_SECRET, now)
    assert matching_step(RFC_SECRET, f"{code[:3]} {code[3:]}", at) == now
    for junk in ("", "12345", "1234567", "abcdef", "١٢٣٤٥٦", code + "0"):
        assert matching_step(RFC_SECRET, junk, at) is None


def test_the_secret_round_trips_through_base32_and_the_uri() -> None:
    secret = new_secret()
    assert len(secret) == 20 and new_secret() != secret
    text = base32(secret)
    assert "=" not in text and from_base32(text.lower()) == secret
    uri = urlsplit(otpauth_uri(secret, "ada@example.test", "Acme API"))
    assert (uri.scheme, uri.netloc, uri.path) == ("otpauth", "totp", "/Acme%20API:ada@example.test")
    query = parse_qs(uri.query)
    assert query["secret"] == [text] and query["issuer"] == ["Acme API"]
    assert (query["digits"], query["period"], query["algorithm"]) == (["6"], ["30"], ["SHA1"])


def test_recovery_codes_are_distinct_and_read_loosely() -> None:
    codes = new_recovery_codes()
    assert len(set(codes)) == 10
    for code in codes:
        assert looks_like_recovery(code)
        same = code.upper().replace("-", " ")
        assert recovery_text(same) == recovery_text(code) == code.replace("-", "").encode()
    assert not looks_like_recovery("123456")


def test_digests_are_keyed_by_the_secret_and_bound_to_their_context() -> None:
    one, other = Sealer(b"a" * 32), Sealer(b"b" * 32)
    code = recovery_text("k7d2m-p9xqa")
    digest = one.digest(code, "mfa-recovery:usr_1")
    assert digest == one.digest(recovery_text("K7D2M P9XQA"), "mfa-recovery:usr_1")
    assert digest != other.digest(code, "mfa-recovery:usr_1")  # another deployment
    assert digest != one.digest(code, "mfa-recovery:usr_2")  # another owner
    assert digest != hashlib.sha256(code).hexdigest()
    # The context and the value cannot be shifted into one another.
    assert one.digest(b"x", "ab") != one.digest(b"bx", "a")
