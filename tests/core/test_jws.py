"""Access tokens are signed with ``cryptography`` over a header encoded once per key
(``core/tokens.sign``): each token must be exactly what a JWS library makes of the same
header and claims (byte for byte where the algorithm is deterministic), and verify."""

from __future__ import annotations

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from apiward.core import tokens

ALPHABET = st.characters(min_codepoint=0x20, max_codepoint=0x2FFF, blacklist_categories=["Cs"])


def signing_key(alg: str) -> tokens.SigningKey:
    private = tokens.generate_private_key(alg)
    kid = f"k_{alg.lower()}"
    return tokens.SigningKey(kid, alg, private, tokens.public_jwk(private, kid, alg), 0.0)


KEYS = {alg: signing_key(alg) for alg in tokens.ALGORITHMS}


def claims(scope: str = "things:read", space: str | None = None) -> tokens.AccessClaims:
    return tokens.AccessClaims(
        iss="https://auth.example",
        aud="https://api.example",
        sub="cli_1",
        org="org_1",
        env="live",
        uid="usr_1",
        scope=scope,
        client_id="cli_1",
        jti="j" * 22,
        iat=1_800_000_000,
        exp=1_800_000_900,
        space=space,
        act={"sub": "usr_2"},
    )


def by_library(made: tokens.AccessClaims, key: tokens.SigningKey) -> str:
    assert key.private is not None
    return jwt.encode(
        made.as_dict(), key.private, algorithm=key.alg, headers={"kid": key.kid, "typ": "at+jwt"}
    )


@pytest.mark.parametrize("alg", ["EdDSA", "RS256"])
@settings(max_examples=25, deadline=None)
@given(scope=st.text(ALPHABET, max_size=40), space=st.none() | st.text(ALPHABET, max_size=12))
def test_deterministic_signatures_are_the_libraries_byte_for_byte(
    alg: str, scope: str, space: str | None
) -> None:
    made = claims(scope, space)
    assert tokens.sign(made, KEYS[alg]) == by_library(made, KEYS[alg])


@pytest.mark.parametrize("alg", tokens.ALGORITHMS)
@settings(max_examples=25, deadline=None)
@given(scope=st.text(ALPHABET, max_size=40))
def test_every_token_has_the_libraries_header_and_claims_and_verifies(alg: str, scope: str) -> None:
    key = KEYS[alg]
    made = claims(scope)
    token = tokens.sign(made, key)
    header, _, _ = token.partition(".")
    assert header == by_library(made, key).partition(".")[0]
    assert jwt.get_unverified_header(token) == {"alg": alg, "kid": key.kid, "typ": "at+jwt"}
    verified = tokens.verify(
        token, {key.kid: key}, issuer=made.iss, audience=made.aud, now=made.iat + 1
    )
    assert verified == made


def test_an_es256_signature_is_r_and_s_of_32_bytes_each() -> None:
    """RFC 7518 3.4: 64 bytes, not the DER sequence ``cryptography`` returns."""
    token = tokens.sign(claims(), KEYS["ES256"])
    signature = jwt.utils.base64url_decode(token.rsplit(".", 1)[1])
    assert len(signature) == 64


def test_a_key_without_its_private_half_signs_nothing() -> None:
    key = KEYS["ES256"]
    public_only = tokens.SigningKey(key.kid, key.alg, None, key.jwk, 0.0)
    with pytest.raises(ValueError, match="no private half"):
        tokens.sign(claims(), public_only)


def test_a_key_that_does_not_match_its_algorithm_signs_nothing() -> None:
    """An ES256 key on another curve, or a key of another type, is refused rather than
    signed with: a verifier would reject the token anyway."""
    p384 = ec.generate_private_key(ec.SECP384R1())
    for alg, private in (("ES256", p384), ("EdDSA", KEYS["ES256"].private)):
        key = tokens.SigningKey("k_bad", alg, private, KEYS[alg].jwk, 0.0)
        with pytest.raises(ValueError, match="signing key k_bad"):
            tokens.sign(claims(), key)
