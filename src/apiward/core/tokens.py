"""Access tokens: JWTs in the RFC 9068 profile, and the signing keys behind them.

An access token is ``typ: at+jwt`` and carries ``iss``, ``sub``, ``aud``, ``exp``,
``iat``, ``jti``, ``client_id`` and ``scope`` (RFC 9068 section 2.2), plus apiward's
``org``, ``env``, ``uid`` (the user it acts as), ``space`` (for entity-user tokens),
``sid`` (the refresh-token family, so ending a session ends its access tokens) and
``act`` (RFC 8693 section 4.1, for tokens obtained by exchange).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ALGORITHMS = ("ES256", "EdDSA", "RS256")
JWT_TYPE = "at+jwt"

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


def generate_private_key(alg: str) -> PrivateKey:
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unsupported signing algorithm {alg!r}; use one of {ALGORITHMS}")


def private_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_pem(pem: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(
        key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
    ):
        raise ValueError("unsupported private key type")
    return key


def public_jwk(key: PrivateKey, kid: str, alg: str) -> dict[str, Any]:
    """The RFC 7517 JSON Web Key of the public half."""
    public = key.public_key()
    algorithm = jwt.get_algorithm_by_name(alg)
    jwk: dict[str, Any] = algorithm.to_jwk(public, as_dict=True)
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return jwk


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    alg: str
    private: PrivateKey | None
    jwk: dict[str, Any]
    created_at: float
    retired_at: float | None = None
    public: Any = field(default=None, compare=False)
    header: bytes = field(default=b"", init=False, compare=False)
    """The token's encoded JOSE header (RFC 7515 5.1 step 2), the same for every token
    this key signs: computed once."""

    def __post_init__(self) -> None:
        if self.public is None:
            algorithm = jwt.get_algorithm_by_name(self.alg)
            object.__setattr__(self, "public", algorithm.from_jwk(self.jwk))
        fields = {"alg": self.alg, "kid": self.kid, "typ": JWT_TYPE}
        object.__setattr__(self, "header", _b64(_json(fields)))


@dataclass(frozen=True, slots=True)
class AccessClaims:
    iss: str
    aud: str
    sub: str
    org: str
    env: str
    uid: str
    scope: str
    client_id: str
    jti: str
    iat: int
    exp: int
    space: str | None = None
    sid: str | None = None
    act: dict[str, str] | None = None
    ver: str | None = None
    cexp: int | None = None
    """When the OAuth client behind the token expires: what it may give never outlives it."""

    def as_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__slots__}
        return {k: v for k, v in data.items() if v is not None}


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _json(data: dict[str, Any]) -> bytes:
    return _COMPACT.encode(data).encode()


_COMPACT = json.JSONEncoder(separators=(",", ":"))
"""``json.dumps(data, separators=(",", ":"))``'s encoder, made once (``dumps`` makes one
per call when given any option)."""


def sign(claims: AccessClaims, key: SigningKey) -> str:
    """The JWS compact serialisation (RFC 7515 7.1) of ``claims`` under ``key``: its
    precomputed header, the claims, and the signature made with ``cryptography``
    directly (RFC 7518 3.4: an ECDSA signature is R and S, 32 bytes each for P-256)."""
    private = key.private
    if private is None:
        raise ValueError(f"signing key {key.kid} has no private half")
    signing_input = key.header + b"." + _b64(_json(claims.as_dict()))
    if key.alg == "ES256" and isinstance(private, ec.EllipticCurvePrivateKey):
        if not isinstance(private.curve, ec.SECP256R1):
            raise ValueError(f"signing key {key.kid} is ES256 but not on P-256")
        r, s = decode_dss_signature(private.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    elif key.alg == "EdDSA" and isinstance(private, ed25519.Ed25519PrivateKey):
        signature = private.sign(signing_input)
    elif key.alg == "RS256" and isinstance(private, rsa.RSAPrivateKey):
        signature = private.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    else:
        raise ValueError(f"signing key {key.kid} does not match its algorithm {key.alg}")
    return (signing_input + b"." + _b64(signature)).decode()


class TokenInvalid(Exception):
    """The token is not one of ours, is malformed, or its signature does not verify."""


class TokenExpired(Exception):
    """The token verified but its ``exp`` has passed."""


def looks_like_jwt(token: str) -> bool:
    return token.startswith("eyJ") and token.count(".") == 2


def verify(
    token: str, keys: dict[str, SigningKey], *, issuer: str, audience: str, now: float | None = None
) -> AccessClaims:
    """Check header, signature, issuer, audience and expiry; return the claims."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise TokenInvalid("malformed token") from exc
    key = keys.get(str(header.get("kid")))
    if key is None or header.get("typ") != JWT_TYPE or header.get("alg") != key.alg:
        raise TokenInvalid("token not signed by this issuer")
    try:
        data = jwt.decode(
            token,
            key.public,
            algorithms=[key.alg],
            audience=audience,
            issuer=issuer,
            options={
                "require": ["exp", "iat", "jti", "sub"],
                "verify_exp": False,
                "verify_iat": False,
            },
        )
    except jwt.PyJWTError as exc:
        raise TokenInvalid(str(exc)) from exc
    required = ("iss", "aud", "sub", "org", "env", "uid", "scope", "client_id", "jti")
    if any(not isinstance(data.get(k), str) for k in required):
        raise TokenInvalid("missing claims")
    claims = AccessClaims(**{k: data.get(k) for k in AccessClaims.__slots__})  # type: ignore[arg-type]
    if not isinstance(claims.exp, int) or claims.exp <= (now if now is not None else time.time()):
        raise TokenExpired()
    return claims
