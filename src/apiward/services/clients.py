"""OAuth clients: ``client_id`` and ``client_secret`` pairs, several per org
(docs/compatibility.md).

The secret is shown once and stored as SHA-256, like API keys; it has the key format
with its own prefix (``{prefix}cs_{env}_...``), so secret scanners can recognise it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from apiward.core.clock import Clock
from apiward.core.errors import Conflict, InvalidInput, NotFound
from apiward.core.ids import new_id
from apiward.core.keys import KeyFormat, digest
from apiward.core.models import OAuthClient, Page, PageRequest, Principal
from apiward.core.owners import check_external_id, check_meta
from apiward.core.scopes import Catalogue
from apiward.services.audit import audit_event
from apiward.services.authority import check_credential, client_grant, maker
from apiward.services.keys import (
    check_expiry,
    credential_scopes,
    effective_environment,
    owned,
    owner_changes,
)
from apiward.services.ports import AuditTx, Cache, CredentialsTx, InvalidationsTx, Store, TenancyTx
from apiward.services.tenancy import check_name


class ClientsTx(CredentialsTx, TenancyTx, AuditTx, InvalidationsTx, Protocol):
    """What managing OAuth clients touches."""


@dataclass(frozen=True, slots=True)
class CreatedClient:
    client: OAuthClient
    secret: str


def client_cache_key(client_id: str) -> str:
    return "client:" + client_id


async def find_client(store: Store[CredentialsTx], client_id: str) -> OAuthClient | None:
    """A client's record read from the store, for a cache miss."""
    async with store.begin() as tx:
        return await tx.find_client(client_id)


class Clients:
    def __init__(
        self,
        store: Store[ClientsTx],
        cache: Cache,
        clock: Clock,
        fmt: KeyFormat,
        end_tokens: Callable[[OAuthClient], Awaitable[None]],
        catalogue: Catalogue | None = None,
    ) -> None:
        self._catalogue = catalogue or Catalogue()
        self._store = store
        self._cache = cache
        self._clock = clock
        self._fmt = fmt
        self._end_tokens = end_tokens
        """Revokes a client's access tokens (``Tokens.revoke_client_tokens``)."""

    async def create(
        self,
        principal: Principal,
        *,
        name: str,
        scopes: list[str],
        environment: str | None = None,
        user_id: str | None = None,
        expires_at: datetime | None = None,
        external_id: str | None = None,
        meta: dict[str, object] | None = None,
    ) -> CreatedClient:
        env = effective_environment(principal, environment)
        owner = check_external_id(external_id) if external_id is not None else None
        data = check_meta(meta) if meta is not None else {}
        environments = [e for e, _ in self._fmt.env_tags]
        if env not in environments:
            raise InvalidInput(
                f"Unknown environment {env!r}; use one of: {', '.join(environments)}."
            )
        normalised = credential_scopes(scopes, "An OAuth client")
        self._catalogue.check(normalised)
        check_expiry(expires_at, self._clock.now())
        now = self._clock.now()
        secret = self._fmt.generate(env)
        name = check_name(name, "client")
        async with self._store.begin() as tx:
            created_by, user_id = await maker(tx, principal, user_id)
            client = OAuthClient(
                id=new_id("client"),
                org_id=principal.org_id,
                environment=env,
                name=name,
                secret_digest=digest(secret),
                secret_last4=secret[-4:],
                scopes=tuple(normalised),
                created_by=created_by,
                created_at=now,
                updated_at=now,
                user_id=user_id,
                expires_at=expires_at,
                external_id=owner,
                meta=data,
            )
            if user_id is not None:
                user = await tx.get_user(principal.org_id, user_id)
                if user is None or user.disabled_at is not None:
                    raise InvalidInput(f"User {user_id!r} does not exist or is disabled.")
            await check_credential(
                tx, principal, client_grant(client), client.acting_user_id, "The new OAuth client"
            )
            await tx.insert_client(client)
            await tx.insert_audit(
                audit_event(
                    principal,
                    "client.created",
                    now,
                    target_type="oauth_client",
                    target_id=client.id,
                    data={
                        "name": client.name,
                        "scopes": normalised,
                        **owned(client),
                        **({"meta": data} if data else {}),
                    },
                )
            )
        return CreatedClient(client, secret)

    async def _get(self, tx: ClientsTx, principal: Principal, client_id: str) -> OAuthClient:
        client = await tx.get_client(principal.org_id, client_id)
        if client is None or not principal.sees(client.environment):
            raise NotFound("OAuth client", client_id)
        return client

    async def get(self, principal: Principal, client_id: str) -> OAuthClient:
        async with self._store.begin() as tx:
            return await self._get(tx, principal, client_id)

    async def list_clients(
        self,
        principal: Principal,
        page: PageRequest,
        *,
        environment: str | None = None,
        external_id: str | None = None,
    ) -> Page[OAuthClient]:
        env = effective_environment(principal, environment)
        if external_id is not None:
            check_external_id(external_id)
        async with self._store.begin() as tx:
            return await tx.list_clients(principal.org_id, env, page, external_id=external_id)

    async def update(
        self,
        principal: Principal,
        client_id: str,
        *,
        name: str | None = None,
        scopes: list[str] | None = None,
        external_id: str | None = None,
        clear_external_id: bool = False,
        meta: dict[str, object] | None = None,
    ) -> OAuthClient:
        """Change what is given; ``meta`` replaces the whole object (``{}`` empties it)."""
        owner = owner_changes(external_id, clear_external_id, meta)
        return await self._change(
            principal, client_id, "client.updated", name=name, scopes=scopes, owner=owner
        )

    async def revoke(self, principal: Principal, client_id: str) -> OAuthClient:
        """Revoke the client for good: no new tokens, and its access tokens stop working
        at once, in every process, though their signatures stay valid."""
        client = await self._change(principal, client_id, "client.revoked", revoke=True)
        await self._end_tokens(client)
        return client

    async def _change(
        self,
        principal: Principal,
        client_id: str,
        event: str,
        *,
        name: str | None = None,
        scopes: list[str] | None = None,
        revoke: bool = False,
        owner: dict[str, object] | None = None,
    ) -> OAuthClient:
        now = self._clock.now()
        changes: dict[str, object] = dict(owner or {})
        if name is not None:
            changes["name"] = check_name(name, "client")
        if scopes is not None:
            held = credential_scopes(scopes, "An OAuth client")
            self._catalogue.check(held)
            changes["scopes"] = tuple(held)
        async with self._store.begin() as tx:
            client = await self._get(tx, principal, client_id)
            if client.revoked_at is not None and (changes or not revoke):
                raise Conflict(f"OAuth client {client_id} is revoked; revocation is permanent.")
            if revoke and client.revoked_at is None:
                changes["revoked_at"] = now
            updated = replace(client, updated_at=now, **changes)  # type: ignore[arg-type]
            if not revoke:
                what = f"This change to OAuth client {client.id}"
                await check_credential(
                    tx, principal, client_grant(updated), updated.acting_user_id, what
                )
            await tx.update_client(updated)
            await tx.insert_audit(
                audit_event(
                    principal,
                    event,
                    now,
                    target_type="oauth_client",
                    target_id=client.id,
                    data={**changes, **owned(updated)},
                )
            )
            await tx.insert_invalidation("key", client_cache_key(client.id), now)
            if owner:
                # The access tokens verified before hold the client's external_id and
                # meta (``Authenticator``): they are its organisation's records.
                await tx.insert_invalidation("org", client.org_id, now)
        self._cache.invalidate(client_cache_key(client.id))
        if owner:
            self._cache.invalidate_org(client.org_id)
        return updated
