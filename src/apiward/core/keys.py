"""API key format: ``{prefix}_{env}_{random}{checksum}``.

The checksum is CRC32 of everything before it, written in the random part's own
alphabet with a fixed width (GitHub's token format does the same). It lets a mistyped
or truncated key be rejected without a database look-up, and lets a secret scanner
recognise a real key offline. It is not a security measure: the random part is.

Keys are stored only as SHA-256 digests. The random part carries at least 128 bits of
entropy, so a digest cannot be inverted by search, and no server-side secret is needed
(one that could be lost or leaked, and that would stop hashes imported from other
systems from matching).
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

from apiward.core.errors import InvalidCredential, WrongEnvironment, WrongInstance

ALPHABETS: dict[str, str] = {
    "base62": "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    "hex": "0123456789abcdef",
    "urlsafe": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
}

MIN_ENTROPY_BITS = 128
MAX_KEY_LENGTH = 256


@dataclass(frozen=True, slots=True)
class KeyFormat:
    """How this deployment spells its keys.

    ``env_tags`` maps an environment to the tag written in the key. An empty tag drops
    the segment, so a deployment can issue ``mon_test_...`` and ``mon_...``.
    """

    prefix: str = "aw"
    env_tags: tuple[tuple[str, str], ...] = (("live", "live"), ("test", "test"))
    random_length: int = 32
    alphabet: str = ALPHABETS["base62"]

    def __post_init__(self) -> None:
        if not (self.prefix.isascii() and self.prefix.isalnum()):
            raise ValueError(f"key prefix must be ASCII letters and digits: {self.prefix!r}")
        if not self.alphabet.isascii() or any(c.isspace() for c in self.alphabet):
            raise ValueError("key alphabet must be printable ASCII")
        if len(set(self.alphabet)) != len(self.alphabet) or len(self.alphabet) < 16:
            raise ValueError("key alphabet needs at least 16 distinct characters")
        bits = self.random_length * math.log2(len(self.alphabet))
        if bits < MIN_ENTROPY_BITS:
            raise ValueError(
                f"random part carries {bits:.0f} bits; at least {MIN_ENTROPY_BITS} are needed"
            )
        envs = [env for env, _ in self.env_tags]
        tags = [tag for _, tag in self.env_tags]
        if not envs or len(set(envs)) != len(envs):
            raise ValueError("environments must be named once each")
        if sum(1 for tag in tags if not tag) > 1:
            raise ValueError("at most one environment may have an empty tag")
        if len(set(tags)) != len(tags):
            raise ValueError("environment tags must be distinct")
        if any(tag and not (tag.isascii() and tag.isalnum()) for tag in tags):
            raise ValueError("environment tags must be ASCII letters and digits")
        longest = len(self.prefix) + 2 + max(len(t) for t in tags) + self.random_length + 8
        if longest > MAX_KEY_LENGTH:
            raise ValueError(f"keys of this format would exceed {MAX_KEY_LENGTH} characters")

    @property
    def checksum_length(self) -> int:
        return math.ceil(32 / math.log2(len(self.alphabet)))

    def tag_for(self, environment: str) -> str:
        for env, tag in self.env_tags:
            if env == environment:
                return tag
        raise ValueError(f"unknown environment {environment!r}")

    def generate(self, environment: str) -> str:
        """A new plaintext key for ``environment``."""
        tag = self.tag_for(environment)
        head = f"{self.prefix}_{tag}_" if tag else f"{self.prefix}_"
        body = head + "".join(secrets.choice(self.alphabet) for _ in range(self.random_length))
        return body + self._checksum(body)

    def _checksum(self, body: str) -> str:
        value = zlib.crc32(body.encode())
        base = len(self.alphabet)
        digits = []
        for _ in range(self.checksum_length):
            value, rem = divmod(value, base)
            digits.append(self.alphabet[rem])
        return "".join(reversed(digits))

    def checksum_ok(self, key: str) -> bool:
        n = self.checksum_length
        return len(key) > n and self._checksum(key[:-n]) == key[-n:]

    def parse(self, key: str) -> ParsedKey:
        """Check a presented key's shape and checksum, offline.

        Raises ``InvalidCredential`` for anything that cannot be one of our keys,
        ``WrongInstance`` for a well-formed key of another deployment, and
        ``WrongEnvironment`` for one of ours whose environment this server does not
        serve.
        """
        if not key.isascii() or len(key) > MAX_KEY_LENGTH or not self.checksum_ok(key):
            raise InvalidCredential()
        prefix, sep, rest = key.partition("_")
        if not sep:
            raise InvalidCredential()
        if prefix != self.prefix:
            raise WrongInstance(
                f"This API key was issued by another instance (prefix '{prefix}_'); "
                f"this instance accepts keys starting with '{self.prefix}_'."
            )
        environment = self._environment_of(rest)
        if environment is None:
            tag = rest.split("_", 1)[0]
            raise WrongEnvironment(
                f"This API key is for environment '{tag}', which this instance does not "
                f"serve. Use a key of: {', '.join(env for env, _ in self.env_tags)}."
            )
        return ParsedKey(environment=environment, digest=digest(key), last4=key[-4:])

    def _environment_of(self, rest: str) -> str | None:
        body_length = self.random_length + self.checksum_length
        for env, tag in self.env_tags:
            if tag and rest.startswith(tag + "_") and len(rest) == len(tag) + 1 + body_length:
                return env
        for env, tag in self.env_tags:
            if not tag and len(rest) == body_length:
                return env
        return None

    def display_prefix(self, environment: str) -> str:
        tag = self.tag_for(environment)
        return f"{self.prefix}_{tag}_" if tag else f"{self.prefix}_"

    @property
    def display_prefixes(self) -> frozenset[str]:
        """The prefix a key of each environment starts with."""
        return frozenset(self.display_prefix(env) for env, _ in self.env_tags)

    @property
    def spec(self) -> str:
        """This format as one canonical line of JSON, which ``from_spec`` reads back: how
        the store records the formats a deployment has issued keys in."""
        return json.dumps(
            {
                "prefix": self.prefix,
                "env_tags": [list(pair) for pair in self.env_tags],
                "random_length": self.random_length,
                "alphabet": self.alphabet,
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_spec(cls, spec: str) -> KeyFormat:
        fields = json.loads(spec)
        return cls(
            prefix=fields["prefix"],
            env_tags=tuple((env, tag) for env, tag in fields["env_tags"]),
            random_length=fields["random_length"],
            alphabet=fields["alphabet"],
        )

    def with_suffix(self, suffix: str) -> KeyFormat:
        """The same format under ``{prefix}{suffix}``: client secrets and refresh tokens
        are spelt like keys with a prefix of their own."""
        return replace(self, prefix=self.prefix + suffix)


class KeyFormats:
    """The format new keys are issued in, and the earlier formats of this deployment,
    whose keys keep working after a change of format (``docs/operations.md``).

    A key is parsed by the current format; one it refuses is tried against each earlier
    format, so an earlier key keeps its offline checksum check. The earlier formats are
    learnt from the store when the server starts (``learn``); the derived views (client
    secrets, refresh tokens) follow.
    """

    def __init__(self, current: KeyFormat, suffix: str = "") -> None:
        self.suffix = suffix
        self.current = current.with_suffix(suffix) if suffix else current
        self.earlier: tuple[KeyFormat, ...] = ()
        self._views: list[KeyFormats] = []

    def view(self, suffix: str) -> KeyFormats:
        """The same formats under ``{prefix}{suffix}``, kept in step with ``learn``."""
        view = KeyFormats(self.current, suffix)
        view.learn(self.earlier)
        self._views.append(view)
        return view

    def learn(self, earlier: Sequence[KeyFormat]) -> None:
        """Accept keys of these earlier formats too (the current one is left out)."""
        fmts = tuple(dict.fromkeys(f for f in earlier if f != self.current))
        if self.suffix:
            fmts = tuple(f.with_suffix(self.suffix) for f in fmts)
        self.earlier = tuple(f for f in fmts if f != self.current)
        for view in self._views:
            view.learn(earlier)

    def parse(self, key: str) -> ParsedKey:
        """``KeyFormat.parse`` by the current format, else by the first earlier format
        that accepts the key; the current format's refusal when none does."""
        try:
            return self.current.parse(key)
        except (InvalidCredential, WrongInstance, WrongEnvironment):
            for fmt in self.earlier:
                try:
                    return fmt.parse(key)
                except (InvalidCredential, WrongInstance, WrongEnvironment):
                    continue
            raise

    def issued_by(self, prefix: str) -> str | None:
        """Which format a stored key's display prefix belongs to: ``current``,
        ``earlier``, or None for neither (an imported key, or a format never recorded)."""
        if prefix in self.current.display_prefixes:
            return "current"
        if any(prefix in f.display_prefixes for f in self.earlier):
            return "earlier"
        return None


@dataclass(frozen=True, slots=True)
class ParsedKey:
    environment: str
    digest: str
    last4: str


def digest(secret: str) -> str:
    """The stored form of a high-entropy secret: SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()
