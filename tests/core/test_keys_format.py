"""API key format: generation, offline parsing, checksum, prefixes and environments."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from apiward.core.errors import (
    AuthenticationError,
    InvalidCredential,
    WrongEnvironment,
    WrongInstance,
)
from apiward.core.keys import ALPHABETS, KeyFormat, ParsedKey, digest

DEFAULT = KeyFormat()
MONK = KeyFormat(
    prefix="mk",
    env_tags=(("live", "live"), ("test", "test")),
    random_length=48,
    alphabet=ALPHABETS["hex"],
)
MONIME = KeyFormat(prefix="mon", env_tags=(("live", ""), ("test", "test")))
URLSAFE = KeyFormat(alphabet=ALPHABETS["urlsafe"])
MONIME_URLSAFE = KeyFormat(
    prefix="mon", env_tags=(("live", ""), ("test", "test")), alphabet=ALPHABETS["urlsafe"]
)

FORMATS = {
    "default": DEFAULT,
    "monk": MONK,
    "monime": MONIME,
    "urlsafe": URLSAFE,
    "monime-urlsafe": MONIME_URLSAFE,
}
FORMAT_ENVS = [(name, env) for name, fmt in FORMATS.items() for env, _ in fmt.env_tags]

AUTH_ERRORS = (InvalidCredential, WrongInstance, WrongEnvironment)


def split_key(fmt: KeyFormat, environment: str, key: str) -> tuple[str, str, str]:
    """Split a generated key into (head, random part, checksum)."""
    head = fmt.display_prefix(environment)
    assert key.startswith(head)
    tail = key[len(head) :]
    return head, tail[: fmt.random_length], tail[fmt.random_length :]


# --- generate / parse round trip ----------------------------------------------------


@pytest.mark.parametrize(("name", "environment"), FORMAT_ENVS)
def test_generated_key_parses_back_to_its_environment(name: str, environment: str) -> None:
    """A generated key parses to its environment, with digest == digest(key), last4 == key[-4:]."""
    fmt = FORMATS[name]
    for _ in range(20):
        key = fmt.generate(environment)
        parsed = fmt.parse(key)
        assert parsed == ParsedKey(environment=environment, digest=digest(key), last4=key[-4:])
        assert fmt.checksum_ok(key)


@pytest.mark.parametrize(("name", "environment"), FORMAT_ENVS)
def test_generated_key_shape(name: str, environment: str) -> None:
    """Keys are {prefix}_{tag}_{random}{checksum} (tag segment dropped when empty)."""
    fmt = FORMATS[name]
    tag = fmt.tag_for(environment)
    chars = f"[{re.escape(fmt.alphabet)}]"
    head = f"{fmt.prefix}_{tag}_" if tag else f"{fmt.prefix}_"
    pattern = re.compile(
        rf"{re.escape(head)}{chars}{{{fmt.random_length}}}{chars}{{{fmt.checksum_length}}}"
    )
    key = fmt.generate(environment)
    assert pattern.fullmatch(key), key
    assert fmt.display_prefix(environment) == head
    assert len(key) == len(head) + fmt.random_length + fmt.checksum_length


def test_generated_keys_are_distinct() -> None:
    """Two generated keys differ (the random part is random)."""
    keys = {DEFAULT.generate("live") for _ in range(50)}
    assert len(keys) == 50


@pytest.mark.parametrize(
    ("alphabet", "checksum_length"), [("base62", 6), ("hex", 8), ("urlsafe", 6)]
)
def test_checksum_length_covers_32_bits(alphabet: str, checksum_length: int) -> None:
    """The checksum is just wide enough to hold a CRC32 in the alphabet's base."""
    fmt = KeyFormat(alphabet=ALPHABETS[alphabet], random_length=32)
    assert fmt.checksum_length == checksum_length
    assert len(fmt.alphabet) ** fmt.checksum_length >= 2**32


def test_monk_like_format() -> None:
    """Monk-like format: mk_live_ + 48 random + 8 checksum lower-case hex characters."""
    for _ in range(20):
        key = MONK.generate("live")
        assert re.fullmatch(r"mk_live_[0-9a-f]{56}", key), key
        assert MONK.parse(key).environment == "live"
        test_key = MONK.generate("test")
        assert re.fullmatch(r"mk_test_[0-9a-f]{56}", test_key), test_key
        assert MONK.parse(test_key).environment == "test"


def test_monime_like_format() -> None:
    """Monime-like format: live keys are mon_<body> with no tag, test keys are mon_test_<body>."""
    for _ in range(20):
        live = MONIME.generate("live")
        test = MONIME.generate("test")
        assert live.startswith("mon_")
        assert not live.startswith("mon_live_")
        assert re.fullmatch(r"mon_[0-9A-Za-z]{38}", live), live
        assert test.startswith("mon_test_")
        assert MONIME.parse(live).environment == "live"
        assert MONIME.parse(test).environment == "test"
        assert MONIME.display_prefix("live") == "mon_"
        assert MONIME.display_prefix("test") == "mon_test_"


@pytest.mark.parametrize("fmt", [URLSAFE, MONIME_URLSAFE], ids=["tagged", "untagged-live"])
def test_urlsafe_alphabet_round_trips(fmt: KeyFormat) -> None:
    """With '_' and '-' in the random part, keys still parse to the right environment."""
    assert "_" in fmt.alphabet
    assert "-" in fmt.alphabet
    for environment in ("live", "test"):
        for _ in range(200):
            key = fmt.generate(environment)
            assert fmt.parse(key).environment == environment


@pytest.mark.parametrize("fmt", [URLSAFE, MONIME_URLSAFE], ids=["tagged", "untagged-live"])
@given(random=st.text(alphabet=ALPHABETS["urlsafe"], min_size=32, max_size=32))
@example(random="test_" + "A" * 27)
@example(random="live_" + "_" * 27)
@example(random="_" * 32)
def test_urlsafe_random_part_never_confuses_environment(fmt: KeyFormat, random: str) -> None:
    """Any urlsafe random part (even one that starts 'test_') parses to the key's own env."""
    for environment in ("live", "test"):
        body = fmt.display_prefix(environment) + random
        key = body + fmt._checksum(body)
        assert fmt.parse(key).environment == environment


# --- rejection ----------------------------------------------------------------------


@st.composite
def substituted_keys(draw: st.DrawFn, anywhere: bool) -> tuple[KeyFormat, str, str, int]:
    """A well-formed key and a copy with one character replaced by another alphabet char.

    The random part is drawn by hypothesis (not ``secrets``) so failures replay and shrink;
    the key is built exactly as ``generate`` builds it.
    """
    name, environment = draw(st.sampled_from(FORMAT_ENVS))
    fmt = FORMATS[name]
    random = draw(st.text(fmt.alphabet, min_size=fmt.random_length, max_size=fmt.random_length))
    body = fmt.display_prefix(environment) + random
    key = body + fmt._checksum(body)
    head = len(fmt.display_prefix(environment))
    index = draw(st.integers(min_value=0 if anywhere else head, max_value=len(key) - 1))
    replacement = draw(st.sampled_from(fmt.alphabet).filter(lambda c: c != key[index]))
    return fmt, key, key[:index] + replacement + key[index + 1 :], index


@given(substituted_keys(anywhere=False))
def test_substitution_in_random_or_checksum_is_invalid(
    case: tuple[KeyFormat, str, str, int],
) -> None:
    """Changing one character of the random part or checksum raises InvalidCredential."""
    fmt, _, changed, _ = case
    with pytest.raises(InvalidCredential):
        fmt.parse(changed)


@given(substituted_keys(anywhere=True))
def test_substitution_anywhere_is_rejected(case: tuple[KeyFormat, str, str, int]) -> None:
    """Changing any one character of a key raises an AuthenticationError."""
    fmt, original, changed, _ = case
    assert fmt.parse(original).environment  # the unchanged key is fine
    with pytest.raises(AUTH_ERRORS) as info:
        fmt.parse(changed)
    assert isinstance(info.value, AuthenticationError)


@pytest.mark.parametrize(("name", "environment"), FORMAT_ENVS)
def test_every_substitution_in_a_generated_key_is_invalid(name: str, environment: str) -> None:
    """Exhaustively: every one-character change of a generated key raises InvalidCredential."""
    fmt = FORMATS[name]
    key = fmt.generate(environment)
    for index, original in enumerate(key):
        for replacement in fmt.alphabet:
            if replacement != original:
                with pytest.raises(InvalidCredential):
                    fmt.parse(key[:index] + replacement + key[index + 1 :])


@given(st.text(max_size=300))
@example("")
@example("_")
@example("aw_")
@example("aw_live_")
@example("aw_live_" + "A" * 38)
@example("x" * 257)
@example("aw_live_\u00e9" + "A" * 37)
def test_parse_fuzz_raises_only_authentication_errors(text: str) -> None:
    """parse(arbitrary text) returns a ParsedKey or raises an AuthenticationError subclass."""
    for fmt in FORMATS.values():
        try:
            parsed = fmt.parse(text)
        except AuthenticationError:
            continue
        assert parsed.digest == digest(text)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "aw",
        "aw_live",
        "aw_live_",
        "x" * 300,
        "aw_live_" + "A" * 38,
        "aw_live_\u00e9\u00e9" + "A" * 36,
    ],
)
def test_malformed_keys_are_invalid_credentials(key: str) -> None:
    """Empty, truncated, over-long, non-ASCII and bad-checksum keys raise InvalidCredential."""
    with pytest.raises(InvalidCredential):
        DEFAULT.parse(key)


@pytest.mark.parametrize("cut", [1, 4, 6, 10])
def test_truncated_key_is_invalid(cut: int) -> None:
    """A key missing its last characters raises InvalidCredential."""
    key = DEFAULT.generate("live")
    with pytest.raises(InvalidCredential):
        DEFAULT.parse(key[:-cut])


def test_key_too_long_is_invalid_even_with_valid_checksum() -> None:
    """A key over 256 characters is rejected even though its checksum is right."""
    body = "aw_live_" + "A" * 260
    key = body + DEFAULT._checksum(body)
    assert DEFAULT.checksum_ok(key)
    with pytest.raises(InvalidCredential):
        DEFAULT.parse(key)


def test_a_format_whose_keys_would_be_too_long_is_refused() -> None:
    """A format that would issue keys its own parser rejects fails at construction."""
    with pytest.raises(ValueError, match="exceed"):
        KeyFormat(random_length=260)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"prefix": "clé"}, "prefix"),
        ({"env_tags": (("live", "li ve"), ("test", "test"))}, "tags"),
        ({"env_tags": (("live", "live"), ("live", "prod"))}, "environments"),
    ],
)
def test_formats_a_deployment_could_not_parse_are_refused(
    kwargs: dict[str, object], match: str
) -> None:
    """Non-ASCII prefixes, tags with spaces and repeated environments fail at once."""
    with pytest.raises(ValueError, match=match):
        KeyFormat(**kwargs)  # type: ignore[arg-type]


def test_key_without_separator_but_valid_checksum_is_invalid() -> None:
    """A body with a good checksum but no '_' separator raises InvalidCredential."""
    body = "aw" + "A" * 32
    key = body + DEFAULT._checksum(body)
    assert DEFAULT.checksum_ok(key)
    with pytest.raises(InvalidCredential):
        DEFAULT.parse(key)


def test_key_of_another_deployment_is_wrong_instance() -> None:
    """A well-formed key with another prefix raises WrongInstance naming both prefixes."""
    key = KeyFormat(prefix="other").generate("live")
    with pytest.raises(WrongInstance) as info:
        KeyFormat(prefix="aw").parse(key)
    assert "'other_'" in info.value.message
    assert "'aw_'" in info.value.message
    assert info.value.reason == "WRONG_INSTANCE"


@pytest.mark.parametrize("environment", ["live", "test"])
def test_monime_key_is_wrong_instance_for_default_deployment(environment: str) -> None:
    """A Monime-like key (same alphabet, other prefix) is reported as WrongInstance."""
    with pytest.raises(WrongInstance):
        DEFAULT.parse(MONIME.generate(environment))


def test_key_of_unserved_environment_is_wrong_environment() -> None:
    """A key of an environment this deployment does not serve raises WrongEnvironment."""
    issuing = KeyFormat(env_tags=(("live", "live"), ("test", "test")))
    serving = KeyFormat(env_tags=(("live", "live"),))
    assert serving.parse(issuing.generate("live")).environment == "live"
    with pytest.raises(WrongEnvironment) as info:
        serving.parse(issuing.generate("test"))
    assert "'test'" in info.value.message
    assert "live" in info.value.message
    assert info.value.reason == "WRONG_ENVIRONMENT"


def test_untagged_key_is_wrong_environment_where_every_env_is_tagged() -> None:
    """A Monime-like untagged live key is WrongEnvironment for a same-prefix tagged format."""
    tagged = KeyFormat(prefix="mon", env_tags=(("live", "live"), ("test", "test")))
    with pytest.raises(WrongEnvironment):
        tagged.parse(MONIME.generate("live"))


def test_generate_for_unknown_environment_raises() -> None:
    """generate/display_prefix/tag_for refuse an environment the format does not know."""
    with pytest.raises(ValueError, match="unknown environment"):
        DEFAULT.generate("staging")
    with pytest.raises(ValueError, match="unknown environment"):
        DEFAULT.display_prefix("staging")
    with pytest.raises(ValueError, match="unknown environment"):
        DEFAULT.tag_for("staging")


# --- checksum_ok / digest -----------------------------------------------------------


@pytest.mark.parametrize("name", list(FORMATS))
def test_checksum_ok_accepts_generated_and_rejects_short(name: str) -> None:
    """checksum_ok is true for generated keys and false for strings no longer than the checksum."""
    fmt = FORMATS[name]
    assert fmt.checksum_ok(fmt.generate(fmt.env_tags[0][0]))
    assert not fmt.checksum_ok("")
    assert not fmt.checksum_ok(fmt.alphabet[0] * fmt.checksum_length)


def test_digest_is_sha256_hex() -> None:
    """digest is the hex SHA-256 of the UTF-8 secret."""
    assert digest("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    key = DEFAULT.generate("live")
    assert digest(key) == hashlib.sha256(key.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", digest(key))


# --- constructor validation ---------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "a_b", "_aw", "aw_", "a-b", "a b", "a.b"])
def test_bad_prefix_is_rejected(prefix: str) -> None:
    """A prefix that is empty or not plain alphanumeric (e.g. contains '_') raises ValueError."""
    with pytest.raises(ValueError, match="prefix"):
        KeyFormat(prefix=prefix)


@pytest.mark.parametrize(
    ("alphabet", "random_length"),
    [
        (ALPHABETS["base62"], 10),
        (ALPHABETS["base62"], 21),
        (ALPHABETS["hex"], 31),
        (ALPHABETS["urlsafe"], 21),
    ],
)
def test_too_little_entropy_is_rejected(alphabet: str, random_length: int) -> None:
    """A random part under 128 bits raises ValueError."""
    with pytest.raises(ValueError, match="bits"):
        KeyFormat(alphabet=alphabet, random_length=random_length)


@pytest.mark.parametrize(
    ("alphabet", "random_length"),
    [(ALPHABETS["base62"], 22), (ALPHABETS["hex"], 32), (ALPHABETS["urlsafe"], 22)],
)
def test_just_enough_entropy_is_accepted(alphabet: str, random_length: int) -> None:
    """The shortest random part with at least 128 bits is accepted and round-trips."""
    fmt = KeyFormat(alphabet=alphabet, random_length=random_length)
    assert fmt.parse(fmt.generate("test")).environment == "test"


@pytest.mark.parametrize("alphabet", ["0123456789abcde", "0123456789abcdef0", "aa" * 20])
def test_small_or_repetitive_alphabet_is_rejected(alphabet: str) -> None:
    """An alphabet with fewer than 16 distinct, non-repeated characters raises ValueError."""
    with pytest.raises(ValueError, match="alphabet"):
        KeyFormat(alphabet=alphabet, random_length=64)


@pytest.mark.parametrize(
    "env_tags",
    [
        (("live", "x"), ("test", "x")),
        (("live", "live"), ("test", "live")),
        (("live", ""), ("test", "")),
    ],
)
def test_duplicate_tags_are_rejected(env_tags: tuple[tuple[str, str], ...]) -> None:
    """Two environments with the same tag (including two empty tags) raise ValueError."""
    with pytest.raises(ValueError, match="tag"):
        KeyFormat(env_tags=env_tags)
