"""Verifying a presented credential and turning it into a principal: the hot path.

A warm verification does no I/O: the key's record, its acting user's roles and the
org's spaces sit in a bounded in-process cache keyed by the key's digest. Writes that
change any of them invalidate the cache at once in this process and, through the
store's invalidation log, in every other process within the poll interval.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime

from apiward.core.clock import Clock
from apiward.core.errors import (
    DisabledCredential,
    ExpiredCredential,
    InvalidCredential,
    IpNotAllowed,
    MissingCredential,
    NoSpaceAccess,
    RevokedCredential,
    SpaceNotAllowed,
    UnknownSpace,
)
from apiward.core.keys import KeyFormat
from apiward.core.models import (
    ApiKey,
    CredentialKind,
    IPNetwork,
    Principal,
    RequestContext,
)
from apiward.core.scopes import ScopeSet
from apiward.services.ports import Cache, Store
from apiward.services.tenancy import Tenancy


@dataclass(slots=True)
class VerifiedKey:
    """Everything needed to decide on a key without touching the store."""

    key: ApiKey
    user_active: bool
    roles: dict[str | None, ScopeSet]
    spaces: frozenset[str]
    default_space: str
    networks: tuple[IPNetwork, ...]
    key_scopes: ScopeSet
    space_allow: frozenset[str]
    effective: dict[str, ScopeSet] = field(default_factory=dict)

    def scopes_in(self, space_id: str) -> ScopeSet | None:
        """Key scopes ∩ the acting user's role in the space (memoised)."""
        cached = self.effective.get(space_id)
        if cached is None:
            role = self.roles.get(space_id) or self.roles.get(None)
            if role is None:
                return None
            cached = self.effective[space_id] = self.key_scopes.intersect(role)
        return cached


_UNKNOWN = object()


class UsageRecorder:
    """Collects "last used" per key in memory; the server flushes it in batches."""

    def __init__(self) -> None:
        self._pending: dict[str, tuple[datetime, str | None]] = {}

    def record(self, key_id: str, at: datetime, ip: str | None) -> None:
        self._pending[key_id] = (at, ip)

    def drain(self) -> list[tuple[str, datetime, str | None]]:
        pending, self._pending = self._pending, {}
        return [(key_id, at, ip) for key_id, (at, ip) in pending.items()]

    async def flush(self, store: Store) -> int:
        batch = self.drain()
        if batch:
            async with store.begin() as tx:
                await tx.touch_keys(batch)
        return len(batch)


def bearer_token(authorization: str | None) -> str:
    """The credential of an ``Authorization: Bearer <token>`` header (RFC 6750 2.1)."""
    if not authorization:
        raise MissingCredential()
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise MissingCredential()
    return token


class Authenticator:
    def __init__(
        self,
        store: Store,
        cache: Cache,
        clock: Clock,
        fmt: KeyFormat,
        tenancy: Tenancy,
        usage: UsageRecorder,
        *,
        space_header: str = "Apiward-Space-Id",
    ) -> None:
        self._store = store
        self._cache = cache
        self._clock = clock
        self._fmt = fmt
        self._tenancy = tenancy
        self._usage = usage
        self._space_header = space_header

    async def _load(self, key_digest: str) -> VerifiedKey | None:
        async with self._store.begin() as tx:
            key = await tx.find_key_by_digest(key_digest)
            if key is None:
                return None
            user = await tx.get_user(key.org_id, key.acting_user_id)
            roles = await self._tenancy.role_scopes(tx, key.org_id, key.acting_user_id)
            spaces = await tx.active_space_ids(key.org_id)
            default = await tx.default_space(key.org_id)
        return VerifiedKey(
            key=key,
            user_active=user is not None and user.disabled_at is None,
            roles=roles,
            spaces=frozenset(spaces),
            default_space=default.id if default else "",
            networks=tuple(ipaddress.ip_network(n) for n in key.ip_allow),
            key_scopes=ScopeSet(key.scopes),
            space_allow=frozenset(key.space_allow),
        )

    async def verified(self, plaintext: str) -> VerifiedKey:
        """The cached record of a key, or ``InvalidCredential``."""
        parsed = self._fmt.parse(plaintext)
        entry = self._cache.get(parsed.digest)
        if entry is None:
            entry = await self._load(parsed.digest)
            self._cache.set(parsed.digest, _UNKNOWN if entry is None else entry)
        if entry is _UNKNOWN or entry is None:
            raise InvalidCredential()
        assert isinstance(entry, VerifiedKey)
        return entry

    async def authenticate_key(self, plaintext: str, context: RequestContext) -> Principal:
        """Verify an API key for one request and return who is calling."""
        entry = await self.verified(plaintext)
        key = entry.key
        now = self._clock.now()
        if key.revoked_at is not None:
            raise RevokedCredential()
        if key.expires_at is not None and key.expires_at <= now:
            raise ExpiredCredential()
        if key.disabled_at is not None:
            raise DisabledCredential()
        if not entry.user_active:
            raise DisabledCredential(
                "The user this API key acts as is disabled or was removed. "
                "Use a key of an active user."
            )
        if entry.networks:
            self._check_ip(entry.networks, context.ip)
        space_id = context.space_id or entry.default_space
        if space_id not in entry.spaces:
            raise UnknownSpace(space_id, self._space_header)
        if entry.space_allow and space_id not in entry.space_allow:
            raise SpaceNotAllowed(space_id)
        scopes = entry.scopes_in(space_id)
        if scopes is None:
            raise NoSpaceAccess(space_id)
        self._usage.record(key.id, now, context.ip)
        return Principal(
            org_id=key.org_id,
            environment=key.environment,
            space_id=space_id,
            user_id=key.acting_user_id,
            scopes=scopes,
            credential_id=key.id,
            credential_kind=CredentialKind.API_KEY,
            context=context,
            api_version=context.api_version,
        )

    @staticmethod
    def _check_ip(networks: tuple[IPNetwork, ...], ip: str | None) -> None:
        try:
            address = ipaddress.ip_address(ip or "")
        except ValueError:
            raise IpNotAllowed(ip or "an unknown address") from None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if not any(address in net for net in networks):
            raise IpNotAllowed(str(address))

    async def authenticate(self, authorization: str | None, context: RequestContext) -> Principal:
        return await self.authenticate_key(bearer_token(authorization), context)
