"""What makes a new password acceptable."""

from __future__ import annotations

import pytest

from apiward.core.passwords import weakness


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("short", "at least 10 characters"),
        ("x" * 1025, "at most 1024"),
        ("aaaaaaaaabbbb", "4 different characters"),
        ("Password123", "most common"),
        ("QWERTYUIOP", "most common"),
        ("1234567890123", "most common"),
        ("zyxwvutsrqpo", "most common"),
        ("ada.lovelace and more", "must not contain the email"),
    ],
)
def test_weak_passwords_are_refused_with_the_reason(password: str, why: str) -> None:
    problem = weakness(password, email="ada.lovelace@example.test")
    assert problem is not None and why in problem


@pytest.mark.parametrize(
    "password", ["correct horse battery", "a long enough passphrase", "T4k3-th3-7:15 train"]
)
def test_good_passwords_pass(password: str) -> None:
    assert weakness(password, email="ada@example.test") is None


def test_an_unknown_user_is_checked_against_a_hash_of_the_policy_that_nothing_matches() -> None:
    import argon2

    from apiward.core.passwords import PasswordPolicy, Passwords

    policy = PasswordPolicy(time_cost=2, memory_cost_kib=2048, parallelism=2)
    unmatchable = policy.unmatchable()
    real = policy.hasher().hash("a password")
    # Same parameters as a real hash, so checking against it costs what a real check does.
    assert argon2.extract_parameters(unmatchable) == argon2.extract_parameters(real)
    assert unmatchable != policy.unmatchable()  # a random salt each time
    passwords = Passwords(policy)
    assert passwords.verify(None, "a password") is False
    assert passwords.verify(None, "") is False
    assert passwords.verify(real, "a password") is True
    with pytest.raises(argon2.exceptions.VerifyMismatchError):
        policy.hasher().verify(unmatchable, "a password")
