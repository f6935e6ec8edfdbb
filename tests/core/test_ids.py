"""Identifiers: a prefix and 20 base62 characters, every character uniform."""

from __future__ import annotations

import re
from collections import Counter

from apiward.core.ids import _BASE62, new_id


def test_ids_are_a_prefix_and_twenty_base62_characters_and_never_repeat() -> None:
    ids = [new_id("tok") for _ in range(20_000)]
    assert all(re.fullmatch(r"tok_[0-9A-Za-z]{20}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_every_character_is_equally_likely() -> None:
    """A chi-square test over 1.2M characters: a biased mapping (a byte modulo 62 over
    all 256 values favours the first eight characters by 1/31) fails it."""
    seen = Counter("".join(new_id("x")[2:] for _ in range(60_000)))
    assert set(seen) == set(_BASE62)
    expected = 60_000 * 20 / len(_BASE62)
    chi2 = sum((n - expected) ** 2 / expected for n in seen.values())
    assert chi2 < 120  # 61 degrees of freedom: p < 1e-5 of failing when uniform
