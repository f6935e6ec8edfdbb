"""The signing keys of access tokens: generated on first start, sealed at rest, rotated.

A rotated key stops signing at once but stays in the JWKS until every token it signed
has expired, so verifiers holding a cached JWKS never see a valid token they cannot check.

The signing key belongs to the deployment, not to one organisation, but a rotation
changes what every organisation's verifiers must trust. So a rotation writes one
``signing_key.rotated`` audit event into each organisation's log (environment-wide,
actor ``system`` or the CLI), in the rotation's own transaction.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Protocol

from apiward.core.clock import Clock
from apiward.core.crypto import Sealer, SealError
from apiward.core.errors import ServiceUnavailable
from apiward.core.ids import new_id
from apiward.core.models import RequestContext, StoredSigningKey
from apiward.core.tokens import (
    PrivateKey,
    SigningKey,
    generate_private_key,
    load_private_pem,
    private_pem,
    public_jwk,
)
from apiward.services.audit import new_event
from apiward.services.ports import AuditTx, InvalidationsTx, Store, TenancyTx, TokensTx


class KeyringTx(TokensTx, TenancyTx, AuditTx, InvalidationsTx, Protocol):
    """What keeping and rotating the signing keys touches."""


_SEAL_CONTEXT = "signing-key:"


class Keyring:
    def __init__(
        self, store: Store[KeyringTx], clock: Clock, sealer: Sealer, alg: str, token_ttl: timedelta
    ) -> None:
        self._store = store
        self._clock = clock
        self._sealer = sealer
        self._alg = alg
        self._token_ttl = token_ttl
        self._keys: dict[str, SigningKey] = {}
        self._current: SigningKey | None = None
        self._current_created: datetime | None = None

    async def load(self) -> None:
        """Read the keys; create the first one when there is none for this algorithm."""
        async with self._store.begin() as tx:
            stored = await tx.list_signing_keys()
        if not any(k.retired_at is None and k.alg == self._alg for k in stored):
            await self.rotate(reason="initial" if not stored else "algorithm_changed")
            return
        self._install(stored)

    def _install(self, stored: list[StoredSigningKey]) -> None:
        now = self._clock.now()
        keys: dict[str, SigningKey] = {}
        current: tuple[SigningKey, datetime] | None = None
        for record in stored:
            if record.expires_at is not None and record.expires_at <= now:
                continue
            active = record.retired_at is None and record.alg == self._alg
            private = self._open(record) if active else None
            key = SigningKey(
                record.kid,
                record.alg,
                private,
                dict(record.jwk),
                record.created_at.timestamp(),
                record.retired_at.timestamp() if record.retired_at else None,
            )
            keys[key.kid] = key
            if active and (current is None or record.created_at >= current[1]):
                current = (key, record.created_at)
        self._keys = keys
        if current is not None:
            self._current, self._current_created = current

    def _open(self, record: StoredSigningKey) -> PrivateKey:
        try:
            pem = self._sealer.open(record.private_sealed, _SEAL_CONTEXT + record.kid)
        except SealError as exc:
            raise ServiceUnavailable(
                f"Signing key {record.kid} was sealed with another secret. Set the same "
                "APIWARD_SECRET_KEY on every process that shares this database."
            ) from exc
        return load_private_pem(pem)

    async def rotate(
        self,
        *,
        reason: str = "manual",
        actor: str = "system",
        context: RequestContext | None = None,
    ) -> SigningKey:
        """Make a new current key; retire the others once their tokens have expired.

        ``reason`` (``manual``, ``scheduled``, ...) and ``actor`` are recorded in the
        ``signing_key.rotated`` audit event of every organisation.
        """
        now = self._clock.now()
        ctx = context or RequestContext()
        private = generate_private_key(self._alg)
        kid = new_id("sig")
        record = StoredSigningKey(
            kid=kid,
            alg=self._alg,
            jwk=public_jwk(private, kid, self._alg),
            private_sealed=self._sealer.seal(private_pem(private), _SEAL_CONTEXT + kid),
            created_at=now,
        )
        async with self._store.begin() as tx:
            retired = []
            for old in await tx.list_signing_keys():
                if old.retired_at is None:
                    retired.append(old.kid)
                    await tx.retire_signing_key(
                        old.kid, now, now + self._token_ttl + timedelta(minutes=5)
                    )
            await tx.insert_signing_key(record)
            for org in await tx.list_orgs():
                await tx.insert_audit(
                    new_event(
                        "signing_key.rotated",
                        now,
                        ctx,
                        org_id=org.id,
                        environment=None,
                        actor_credential_id=actor,
                        target_type="signing_key",
                        target_id=kid,
                        data={"reason": reason, "algorithm": self._alg, "retired": retired},
                    )
                )
            await tx.insert_invalidation("signing", kid, now)
            stored = await tx.list_signing_keys()
        self._install(stored)
        assert self._current is not None
        return self._current

    async def rotate_if_due(self, every: timedelta) -> bool:
        if self._current_created is None or self._clock.now() - self._current_created < every:
            return False
        await self.rotate(reason="scheduled")
        return True

    @property
    def current(self) -> SigningKey:
        if self._current is None:
            raise ServiceUnavailable("No signing key is loaded yet. Retry shortly.")
        return self._current

    @property
    def keys(self) -> dict[str, SigningKey]:
        return self._keys

    def jwks(self) -> dict[str, list[dict[str, object]]]:
        """RFC 7517 JWK Set of every key whose tokens may still be valid, newest first."""
        ordered = sorted(self._keys.values(), key=lambda k: k.created_at, reverse=True)
        return {"keys": [json.loads(json.dumps(k.jwk)) for k in ordered]}
