"""API keys: create (plaintext returned once), read, update, disable, revoke, roll."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from apiward.core import times
from apiward.core.clock import Clock
from apiward.core.errors import (
    Conflict,
    EnvironmentMismatch,
    InvalidInput,
    NotFound,
)
from apiward.core.ids import new_id
from apiward.core.keys import KeyFormat, digest
from apiward.core.limits import OWN_SUFFIX, Credits, Policy
from apiward.core.models import (
    ApiKey,
    AuditEvent,
    KeyFilter,
    KeyState,
    OAuthClient,
    Page,
    PageRequest,
    Principal,
    RateOverride,
)
from apiward.core.owners import MetaValue, check_external_id, check_meta
from apiward.core.scopes import Catalogue, normalise
from apiward.services.audit import audit_event
from apiward.services.authority import (
    BOUNDED,
    check_credential,
    check_credits,
    key_grant,
    maker,
    operator_bounds,
    own_limits,
)
from apiward.services.ports import AuditTx, Cache, CredentialsTx, InvalidationsTx, Store, TenancyTx
from apiward.services.tenancy import check_name


class KeysTx(CredentialsTx, TenancyTx, AuditTx, InvalidationsTx, Protocol):
    """What managing API keys touches."""


MAX_ALLOW_LIST = 100
_Change = Callable[[KeysTx, ApiKey, datetime], Awaitable[ApiKey]]
MAX_GRACE = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class CreatedKey:
    key: ApiKey
    plaintext: str


def parse_networks(cidrs: list[str]) -> tuple[str, ...]:
    """Validate and normalise an IP allow-list (``10.0.0.0/8``, ``2001:db8::/32``, ``1.2.3.4``)."""
    if len(cidrs) > MAX_ALLOW_LIST:
        raise InvalidInput(f"An IP allow-list holds at most {MAX_ALLOW_LIST} entries.")
    out: list[str] = []
    for cidr in cidrs:
        try:
            out.append(str(ipaddress.ip_network(cidr.strip(), strict=False)))
        except (ValueError, AttributeError):
            raise InvalidInput(
                f"{cidr!r} is not an IP address or CIDR block (e.g. 203.0.113.0/24)."
            ) from None
    return tuple(dict.fromkeys(out))


def credential_scopes(scopes: list[str], what: str) -> list[str]:
    """Normalised scopes for a credential (whether its author may give them is
    ``apiward.services.authority.check_credential``'s to say)."""
    normalised = normalise(scopes)
    if not normalised:
        raise InvalidInput(f"{what} needs at least one scope, e.g. 'customers:read'.")
    return normalised


def check_rate_limits(limits: list[RateOverride]) -> tuple[RateOverride, ...]:
    """Validate a credential's own limits; names are unique."""
    if len(limits) > 20:
        raise InvalidInput("A credential holds at most 20 rate limits.")
    for i, limit in enumerate(limits):
        try:
            if limit.name.endswith(OWN_SUFFIX):
                raise ValueError(f"Limit names ending in {OWN_SUFFIX!r} are reserved.")
            Policy.parse(limit.name, limit.rate, key=limit.key, mode=limit.mode)  # type: ignore[arg-type]
        except ValueError as exc:
            raise InvalidInput(f"rate_limits[{i}] ({limit.name!r}): {exc}") from None
    names = [limit.name for limit in limits]
    if len(set(names)) != len(names):
        raise InvalidInput("Rate limit names must be unique on a credential.")
    return tuple(limits)


def check_expiry(expires_at: datetime | None, now: datetime) -> None:
    """An expiry with a time zone, in the range of ``times.instant``, in the future."""
    if expires_at is not None and times.instant(expires_at, name="expires_at", zoned=True) <= now:
        raise InvalidInput("expires_at must be in the future.")


def owned(credential: ApiKey | OAuthClient) -> dict[str, object]:
    """What an audit event (and so a webhook) about a key or client says of whom it
    belongs to: its ``external_id``, when it has one."""
    return {} if credential.external_id is None else {"external_id": credential.external_id}


def owner_changes(
    external_id: str | None, clear_external_id: bool, meta: dict[str, object] | None
) -> dict[str, object]:
    """The ``external_id`` and ``meta`` an update sets, checked (``core.owners``)."""
    changes: dict[str, object] = {}
    if external_id is not None:
        changes["external_id"] = check_external_id(external_id)
    elif clear_external_id:
        changes["external_id"] = None
    if meta is not None:
        checked: dict[str, MetaValue] = check_meta(meta)
        changes["meta"] = checked
    return changes


SEARCH_MAX = 200


def check_search(search: str) -> str:
    """A key search: at most ``SEARCH_MAX`` characters, surrounding spaces dropped."""
    if len(search) > SEARCH_MAX:
        raise InvalidInput(f"A key search is at most {SEARCH_MAX} characters.")
    return search.strip()


def effective_environment(principal: Principal, wanted: str | None) -> str:
    """Data never crosses environments: an API key acts only within its own."""
    env = wanted or principal.environment
    if not principal.sees(env):
        raise EnvironmentMismatch(principal.environment, env)
    return env


async def write_key_change(tx: KeysTx, updated: ApiKey, event: AuditEvent) -> None:
    """How a changed key is written, whoever changed it: the row, its audit event (and
    so its webhook), and the invalidation every process drops its cached copy on. The
    caller invalidates its own cache once the transaction has committed."""
    await tx.update_key(updated)
    await tx.insert_audit(event)
    await tx.insert_invalidation("key", updated.digest, updated.updated_at)


class Keys:
    def __init__(
        self,
        store: Store[KeysTx],
        cache: Cache,
        clock: Clock,
        fmt: KeyFormat,
        versions: tuple[str, ...] = (),
        catalogue: Catalogue | None = None,
    ) -> None:
        self._versions = versions
        self._catalogue = catalogue or Catalogue()
        self._store = store
        self._cache = cache
        self._clock = clock
        self._fmt = fmt
        self._environments = tuple(env for env, _ in fmt.env_tags)

    async def _check_spaces(self, tx: KeysTx, org_id: str, spaces: list[str]) -> tuple[str, ...]:
        if len(spaces) > MAX_ALLOW_LIST:
            raise InvalidInput(f"A space allow-list holds at most {MAX_ALLOW_LIST} entries.")
        for space_id in spaces:
            space = await tx.get_space(org_id, space_id)
            if space is None or space.archived_at is not None:
                raise InvalidInput(f"Space {space_id!r} does not exist or is archived.")
        return tuple(dict.fromkeys(spaces))

    def _check_version(self, version: str | None) -> None:
        """A key may pin an API version (used when a request names none): a known one."""
        if version is not None and version not in self._versions:
            raise InvalidInput(
                f"Unknown API version {version!r}; use one of: {', '.join(self._versions)}."
            )

    def _check_expiry(self, expires_at: datetime | None) -> None:
        check_expiry(expires_at, self._clock.now())

    async def create(
        self,
        principal: Principal,
        *,
        name: str,
        scopes: list[str],
        environment: str | None = None,
        user_id: str | None = None,
        expires_at: datetime | None = None,
        ip_allow: list[str] | None = None,
        space_allow: list[str] | None = None,
        api_version: str | None = None,
        rate_limits: list[RateOverride] | None = None,
        credits: Credits | None = None,
        external_id: str | None = None,
        meta: dict[str, object] | None = None,
    ) -> CreatedKey:
        env = effective_environment(principal, environment)
        owner = check_external_id(external_id) if external_id is not None else None
        data = check_meta(meta) if meta is not None else {}
        self._check_version(api_version)
        overrides = check_rate_limits(rate_limits or [])
        if env not in self._environments:
            raise InvalidInput(
                f"Unknown environment {env!r}; use one of: {', '.join(self._environments)}."
            )
        name = check_name(name, "key")
        normalised = credential_scopes(scopes, "An API key")
        self._catalogue.check(normalised)
        check_credits(principal, None, credits)
        networks = parse_networks(ip_allow or [])
        self._check_expiry(expires_at)
        now = self._clock.now()
        plaintext = self._fmt.generate(env)
        async with self._store.begin() as tx:
            created_by, user_id = await maker(tx, principal, user_id)
            if user_id is not None:
                user = await tx.get_user(principal.org_id, user_id)
                if user is None:
                    raise InvalidInput(f"User {user_id!r} does not exist in this organisation.")
                if user.disabled_at is not None:
                    raise InvalidInput(f"User {user_id!r} is disabled.")
            key = ApiKey(
                id=new_id("key"),
                org_id=principal.org_id,
                environment=env,
                name=name,
                digest=digest(plaintext),
                prefix=self._fmt.display_prefix(env),
                last4=plaintext[-4:],
                scopes=tuple(normalised),
                created_by=created_by,
                created_at=now,
                updated_at=now,
                user_id=user_id,
                expires_at=expires_at,
                ip_allow=networks,
                space_allow=await self._check_spaces(tx, principal.org_id, space_allow or []),
                api_version=api_version,
                rate_limits=own_limits(principal, overrides),
                credits=credits,
                external_id=owner,
                meta=data,
            )
            key = operator_bounds(principal, key, BOUNDED)
            await check_credential(
                tx, principal, key_grant(key), key.acting_user_id, "The new API key"
            )
            await tx.insert_key(key)
            await tx.insert_audit(
                audit_event(
                    principal,
                    "key.created",
                    now,
                    target_type="api_key",
                    target_id=key.id,
                    data={
                        "name": name,
                        "scopes": normalised,
                        "environment": env,
                        **owned(key),
                        **({"meta": data} if data else {}),
                    },
                )
            )
        return CreatedKey(key, plaintext)

    async def _get(self, tx: KeysTx, principal: Principal, key_id: str) -> ApiKey:
        key = await tx.get_key(principal.org_id, key_id)
        if key is None or not principal.sees(key.environment):
            raise NotFound("API key", key_id)
        return key

    async def get(self, principal: Principal, key_id: str) -> ApiKey:
        async with self._store.begin() as tx:
            return await self._get(tx, principal, key_id)

    async def list_keys(
        self,
        principal: Principal,
        page: PageRequest,
        *,
        environment: str | None = None,
        user_id: str | None = None,
        include_revoked: bool = True,
        every_environment: bool = False,
        external_id: str | None = None,
        search: str | None = None,
        state: KeyState | None = None,
        expiring_within: timedelta | None = None,
        unused_for: timedelta | None = None,
    ) -> Page[ApiKey]:
        """A page of keys of the principal's environment (or ``environment``); with
        ``every_environment``, of all, for a principal that spans them (the CLI); with
        ``external_id``, only the keys of that id; with ``search``, those whose name
        contains it or whose id, last four characters or hint it is; with ``state``,
        those in that state now; with ``expiring_within``, those whose expiry comes
        before that much time has passed; with ``unused_for``, those not used (or, never
        used, created) for that long."""
        if every_environment and principal.viewed_environment is None:
            env: str | None = None
        else:
            env = effective_environment(principal, environment)
        if external_id is not None:
            check_external_id(external_id)
        now = self._clock.now()
        flt = KeyFilter(
            environment=env,
            user_id=user_id,
            include_revoked=include_revoked,
            external_id=external_id,
            search=check_search(search) if search else None,
            state=state,
            now=now,
            expires_before=(
                times.later(now, expiring_within.total_seconds(), name="The expiry horizon")
                if expiring_within is not None
                else None
            ),
            unused_before=now - unused_for if unused_for is not None else None,
        )
        async with self._store.begin() as tx:
            return await tx.list_keys(principal.org_id, flt, page)

    async def _change(
        self,
        principal: Principal,
        key_id: str,
        event: str,
        data: dict[str, object],
        change: _Change,
    ) -> ApiKey:
        now = self._clock.now()
        async with self._store.begin() as tx:
            key = await self._get(tx, principal, key_id)
            updated = replace(await change(tx, key, now), updated_at=now)
            await write_key_change(
                tx,
                updated,
                audit_event(
                    principal,
                    event,
                    now,
                    target_type="api_key",
                    target_id=key.id,
                    data={**data, **owned(updated)},
                ),
            )
        self._cache.invalidate(key.digest)
        return updated

    async def update(
        self,
        principal: Principal,
        key_id: str,
        *,
        name: str | None = None,
        scopes: list[str] | None = None,
        ip_allow: list[str] | None = None,
        space_allow: list[str] | None = None,
        expires_at: datetime | None = None,
        clear_expiry: bool = False,
        api_version: str | None = None,
        clear_api_version: bool = False,
        rate_limits: list[RateOverride] | None = None,
        credits: Credits | None = None,
        clear_credits: bool = False,
        external_id: str | None = None,
        clear_external_id: bool = False,
        meta: dict[str, object] | None = None,
    ) -> ApiKey:
        """Change what is given; ``meta`` replaces the whole object (``{}`` empties it)."""
        changes: dict[str, object] = {}
        changes.update(owner_changes(external_id, clear_external_id, meta))
        overrides = check_rate_limits(rate_limits) if rate_limits is not None else None
        if credits is not None or clear_credits:
            changes["credits"] = credits
        if api_version is not None:
            self._check_version(api_version)
            changes["api_version"] = api_version
        elif clear_api_version:
            changes["api_version"] = None
        if name is not None:
            changes["name"] = check_name(name, "key")
        if scopes is not None:
            held = credential_scopes(scopes, "An API key")
            self._catalogue.check(held)
            changes["scopes"] = tuple(held)
        if ip_allow is not None:
            changes["ip_allow"] = parse_networks(ip_allow)
        if expires_at is not None:
            self._check_expiry(expires_at)
            changes["expires_at"] = expires_at
        elif clear_expiry:
            changes["expires_at"] = None

        async def apply(tx: KeysTx, key: ApiKey, now: datetime) -> ApiKey:
            self._require_not_revoked(key)
            if space_allow is not None:
                changes["space_allow"] = await self._check_spaces(tx, key.org_id, space_allow)
            if overrides is not None:
                changes["rate_limits"] = own_limits(principal, overrides, key.rate_limits)
            if "credits" in changes:
                current = await tx.key_credits_for_update(key.id)
                check_credits(principal, current, credits)
            updated = replace(key, **changes)  # type: ignore[arg-type]
            updated = operator_bounds(principal, updated, changes)
            await self._check_change(tx, principal, updated)
            if "credits" in changes:
                await tx.set_key_credits(key.id, credits)
            return updated

        if overrides is not None:
            changes["rate_limits"] = overrides
        audit = dict(changes)
        if space_allow is not None:
            audit["space_allow"] = space_allow
        return await self._change(principal, key_id, "key.updated", audit, apply)

    @staticmethod
    async def _check_change(tx: KeysTx, principal: Principal, key: ApiKey) -> None:
        """A key as a change leaves it (or a roll issues it) confers nothing its
        author does not hold (restricting changes, disabling and revoking, need not)."""
        what = f"This change to API key {key.id}"
        await check_credential(tx, principal, key_grant(key), key.acting_user_id, what)

    @staticmethod
    def _require_not_revoked(key: ApiKey) -> None:
        if key.revoked_at is not None:
            raise Conflict(f"API key {key.id} is revoked; revocation is permanent.")

    async def disable(self, principal: Principal, key_id: str) -> ApiKey:
        async def apply(tx: KeysTx, key: ApiKey, now: datetime) -> ApiKey:
            self._require_not_revoked(key)
            return key if key.disabled_at else replace(key, disabled_at=now)

        return await self._change(principal, key_id, "key.disabled", {}, apply)

    async def enable(self, principal: Principal, key_id: str) -> ApiKey:
        async def apply(tx: KeysTx, key: ApiKey, now: datetime) -> ApiKey:
            self._require_not_revoked(key)
            enabled = replace(key, disabled_at=None)
            await self._check_change(tx, principal, enabled)
            return enabled

        return await self._change(principal, key_id, "key.enabled", {}, apply)

    async def revoke(self, principal: Principal, key_id: str) -> ApiKey:
        async def apply(tx: KeysTx, key: ApiKey, now: datetime) -> ApiKey:
            return key if key.revoked_at else replace(key, revoked_at=now)

        return await self._change(principal, key_id, "key.revoked", {}, apply)

    async def roll(
        self, principal: Principal, key_id: str, *, grace: timedelta = timedelta(0)
    ) -> CreatedKey:
        """Issue a key with the same settings; the old one works for ``grace``, then stops."""
        if grace < timedelta(0) or grace > MAX_GRACE:
            raise InvalidInput(f"The grace period must be between 0 and {MAX_GRACE.days} days.")
        now = self._clock.now()
        async with self._store.begin() as tx:
            old = await self._get(tx, principal, key_id)
            state = old.state(now)
            if state in (KeyState.REVOKED, KeyState.EXPIRED):
                raise Conflict(f"API key {old.id} is {state.value}; create a new key instead.")
            if old.rolled_to is not None:
                raise Conflict(f"API key {old.id} was already rolled to {old.rolled_to}.")
            plaintext = self._fmt.generate(old.environment)
            created_by, _ = await maker(tx, principal, old.acting_user_id)
            new = replace(
                old,
                id=new_id("key"),
                digest=digest(plaintext),
                last4=plaintext[-4:],
                user_id=old.acting_user_id,  # the new key acts as the old one did
                created_by=created_by,
                created_at=now,
                updated_at=now,
                disabled_at=None,
                last_used_at=None,
                last_used_ip=None,
                rolled_to=None,
            )
            balance = await tx.key_credits_for_update(old.id)
            new = replace(new, credits=balance)
            await self._check_change(tx, principal, new)
            await tx.insert_key(new)
            if balance is not None:
                # One balance, not two: the new key takes it over, and the old one spends
                # from it during its grace period (``Authenticator.limited``).
                await tx.set_key_credits(old.id, Credits(0))
            ends = now + grace
            old_after = replace(
                old,
                rolled_to=new.id,
                updated_at=now,
                revoked_at=now if grace == timedelta(0) else None,
                expires_at=ends
                if grace and (old.expires_at is None or ends < old.expires_at)
                else old.expires_at,
            )
            await tx.update_key(old_after)
            await tx.insert_audit(
                audit_event(
                    principal,
                    "key.rolled",
                    now,
                    target_type="api_key",
                    target_id=old.id,
                    data={
                        "new_key_id": new.id,
                        "grace_seconds": grace.total_seconds(),
                        **owned(old),
                    },
                )
            )
            await tx.insert_invalidation("key", old.digest, now)
        self._cache.invalidate(old.digest)
        return CreatedKey(new, plaintext)
