"""Organisations, spaces, users, roles and memberships."""

from __future__ import annotations

import asyncio
import re
import unicodedata
from dataclasses import dataclass, replace
from typing import Protocol

from apiward.core.clock import Clock
from apiward.core.errors import (
    Conflict,
    InsufficientScope,
    InvalidInput,
    NotFound,
    SpaceNotAllowed,
)
from apiward.core.hygiene import HygienePolicy
from apiward.core.ids import new_id
from apiward.core.models import (
    Account,
    Environment,
    Membership,
    Organisation,
    Page,
    PageRequest,
    Principal,
    RequestContext,
    Role,
    Space,
    User,
)
from apiward.core.passwords import Passwords, weakness
from apiward.core.roles import BUILTIN_ROLES, OWNER
from apiward.core.scopes import Catalogue, ScopeSet, normalise
from apiward.services.audit import audit_event, request_event
from apiward.services.authority import (
    OPERATOR_TIERS,
    Roles,
    check_role_grant,
    check_role_scopes,
    check_space_change,
    check_user_change,
    require_everywhere,
    require_operator,
    require_org_wide,
    user_roles,
)
from apiward.services.ports import AuditTx, Cache, InvalidationsTx, Store, TenancyTx


class TenancyServiceTx(TenancyTx, AuditTx, InvalidationsTx, Protocol):
    """What managing organisations, spaces, users and roles touches."""


_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
_ROLE_NAME = re.compile(r"^[a-z][a-z0-9_-]{1,39}$")
DEFAULT_SPACE_NAME = "Default"


def check_email(email: str) -> str:
    email = email.strip()
    if len(email) > 254 or not _EMAIL.match(email):
        raise InvalidInput(f"{email!r} is not a valid email address.")
    return email.lower()


def check_role_name(name: str) -> None:
    if not _ROLE_NAME.match(name):
        raise InvalidInput(
            f"Invalid role name {name!r}: use 2 to 40 lowercase letters, digits, '-' or '_', "
            "starting with a letter."
        )


def check_name(name: str, what: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise InvalidInput(f"The {what} name must be 1 to 200 characters long.")
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in name):
        raise InvalidInput(f"The {what} name must not contain line breaks or control characters.")
    return name


@dataclass(frozen=True, slots=True)
class Bootstrap:
    org: Organisation
    environments: list[Environment]
    space: Space
    owner: User


class Tenancy:
    def __init__(
        self,
        store: Store[TenancyServiceTx],
        cache: Cache,
        clock: Clock,
        passwords: Passwords,
        environments: tuple[str, ...],
        tiers: tuple[str, ...] = (),
        hygiene: HygienePolicy | None = None,
        catalogue: Catalogue | None = None,
    ) -> None:
        self._catalogue = catalogue or Catalogue()
        """The protected API's scopes: a role holds only those and apiward's own."""
        self._tiers = tiers
        self.hygiene = hygiene or HygienePolicy()
        """The operator's key hygiene policy, which an organisation may only tighten."""
        self._store = store
        self._cache = cache
        self._clock = clock
        self._passwords = passwords
        self._environments = environments

    async def hash_password(self, password: str, email: str) -> str:
        """The Argon2id hash of a new password, once it passes the strength check."""
        problem = weakness(password, email=email)
        if problem:
            raise InvalidInput(problem)
        return await asyncio.to_thread(self._passwords.hash, password)

    async def _changed(self, tx: TenancyServiceTx, org_id: str) -> None:
        """Every verified credential of the org may now resolve differently."""
        await tx.insert_invalidation("org", org_id, self._clock.now())

    def _after_change(self, org_id: str) -> None:
        """This process drops the org's verified credentials at once (other processes
        when they read the invalidation log); every other org's stay warm."""
        self._cache.invalidate_org(org_id)

    async def require_everywhere(
        self, principal: Principal, scopes: tuple[str, ...], what: str
    ) -> None:
        """The principal holds ``scopes`` in every space, as a change to the whole
        organisation needs (``apiward.services.authority.require_everywhere``)."""
        async with self._store.begin() as tx:
            await require_everywhere(tx, principal, scopes, what)

    # organisations ---------------------------------------------------------------

    async def bootstrap(
        self,
        org_name: str,
        owner_email: str,
        owner_password: str,
        *,
        owner_name: str | None = None,
        allow_another: bool = False,
    ) -> Bootstrap:
        """Create an org, its environments, a default space and its owner (named by
        ``owner_name``, else by the address's local part)."""
        org_name = check_name(org_name, "organisation")
        email = check_email(owner_email)
        name = check_name(owner_name, "owner's") if owner_name else email.split("@")[0]
        password_hash = await self.hash_password(owner_password, email)
        now = self._clock.now()
        org = Organisation(new_id("org"), org_name, now)
        owner = User(new_id("usr"), org.id, email, name, password_hash, now)
        async with self._store.begin() as tx:
            existing = await tx.list_orgs()
            if existing and not allow_another:
                names = ", ".join(f"{o.name} ({o.id})" for o in existing)
                raise Conflict(
                    f"This instance already has an organisation: {names}. "
                    "Pass --new-org to create another one."
                )
            if any(o.name == org_name for o in existing):
                raise Conflict(f"An organisation named {org_name!r} already exists.")
            return await self._found(tx, org, owner)

    async def create_project(
        self, name: str, account: Account, context: RequestContext
    ) -> Bootstrap:
        """A portal project: an org with its environments and default space, owned by the
        account's new user there (whose password is the account's)."""
        name = check_name(name, "project")
        now = self._clock.now()
        org = Organisation(new_id("org"), name, now)
        owner = User(
            new_id("usr"), org.id, account.email, account.name, None, now, account_id=account.id
        )
        async with self._store.begin() as tx:
            founded = await self._found(tx, org, owner)
            await tx.insert_audit(
                request_event(
                    "project.created",
                    now,
                    context,
                    org_id=org.id,
                    target_type="org",
                    target_id=org.id,
                    actor_user_id=owner.id,
                    data={"name": name, "account_id": account.id},
                )
            )
        return founded

    async def _found(self, tx: TenancyServiceTx, org: Organisation, owner: User) -> Bootstrap:
        """Write a new org, its environments, its default space and its owner."""
        now = org.created_at
        envs = [Environment(new_id("env"), org.id, name, now) for name in self._environments]
        space = Space(new_id("spc"), org.id, DEFAULT_SPACE_NAME, True, now)
        await tx.insert_org(org)
        for env in envs:
            await tx.insert_environment(env)
        await tx.insert_space(space)
        await tx.insert_user(owner)
        await tx.put_membership(Membership(org.id, owner.id, None, OWNER, now))
        return Bootstrap(org, envs, space, owner)

    async def list_orgs(self) -> list[Organisation]:
        async with self._store.begin() as tx:
            return await tx.list_orgs()

    async def get_org(self, org_id: str) -> Organisation:
        async with self._store.begin() as tx:
            org = await tx.get_org(org_id)
        if org is None:
            raise NotFound("organisation", org_id)
        return org

    def hygiene_in_force(self, org: Organisation) -> HygienePolicy:
        """The key hygiene policy that applies to ``org``: the operator's, tightened by
        the organisation's own."""
        return self.hygiene.tightened_by(org.key_hygiene)

    async def update_org(
        self,
        principal: Principal,
        *,
        name: str | None,
        rate_tier: str | None,
        clear_tier: bool = False,
        key_hygiene: HygienePolicy | None = None,
        clear_hygiene: bool = False,
        require_mfa: bool | None = None,
    ) -> Organisation:
        """Rename the org, move it to another rate-limit tier (no restart needed), set
        its own key hygiene policy, which may only tighten the operator's, or require
        a second factor of every member in the dashboard (an owner's decision: turning it
        on or off needs an owner's powers, ``owner:manage``)."""
        if key_hygiene is not None and (loosened := self.hygiene.loosened_by(key_hygiene)):
            raise InvalidInput(loosened)
        if rate_tier is not None or clear_tier:
            require_operator(principal, OPERATOR_TIERS, "An organisation's rate-limit tier")
        if rate_tier is not None and rate_tier not in self._tiers:
            known = ", ".join(self._tiers) or "none are configured"
            raise InvalidInput(f"Unknown rate-limit tier {rate_tier!r}; tiers: {known}.")
        now = self._clock.now()
        async with self._store.begin() as tx:
            org = await tx.get_org(principal.org_id)
            if org is None:
                raise NotFound("organisation", principal.org_id)
            changes: dict[str, object] = {}
            if name is not None:
                org = replace(org, name=check_name(name, "organisation"))
                changes["name"] = org.name
            if rate_tier is not None or clear_tier:
                org = replace(org, rate_tier=rate_tier)
                changes["rate_tier"] = rate_tier
            if key_hygiene is not None or clear_hygiene:
                org = replace(org, key_hygiene=key_hygiene)
                changes["key_hygiene"] = (
                    None
                    if key_hygiene is None
                    else {
                        "unused_days": key_hygiene.unused_days,
                        "expiry_days": key_hygiene.expiry_days,
                        "credit_percents": key_hygiene.credit_percents,
                        "shared_networks": key_hygiene.shared_networks,
                        "shared_countries": key_hygiene.shared_countries,
                        "shared_disable": key_hygiene.shared_disable,
                    }
                )
            if require_mfa is not None:
                if not principal.grants("owner:manage"):
                    raise InsufficientScope("owner:manage")
                org = replace(org, require_mfa=require_mfa)
                changes["require_mfa"] = require_mfa
            await tx.update_org(org)
            await tx.insert_audit(
                audit_event(
                    principal, "org.updated", now, target_type="org", target_id=org.id, data=changes
                )
            )
            await self._changed(tx, principal.org_id)
        self._after_change(principal.org_id)
        return org

    # spaces ----------------------------------------------------------------------

    async def create_space(self, principal: Principal, name: str) -> Space:
        now = self._clock.now()
        space = Space(new_id("spc"), principal.org_id, check_name(name, "space"), False, now)
        async with self._store.begin() as tx:
            await tx.insert_space(space)
            await tx.insert_audit(
                audit_event(
                    principal,
                    "space.created",
                    now,
                    target_type="space",
                    target_id=space.id,
                    data={"name": space.name},
                )
            )
            await self._changed(tx, principal.org_id)
        self._after_change(principal.org_id)
        return space

    async def get_space(self, principal: Principal, space_id: str) -> Space:
        async with self._store.begin() as tx:
            return await self._space(tx, principal.org_id, space_id)

    async def _space(self, tx: TenancyServiceTx, org_id: str, space_id: str) -> Space:
        space = await tx.get_space(org_id, space_id)
        if space is None:
            raise NotFound("space", space_id)
        return space

    async def list_spaces(
        self, principal: Principal, page: PageRequest, *, include_archived: bool = False
    ) -> Page[Space]:
        async with self._store.begin() as tx:
            return await tx.list_spaces(principal.org_id, page, include_archived=include_archived)

    async def update_space(
        self, principal: Principal, space_id: str, *, name: str | None, archived: bool | None
    ) -> Space:
        if principal.grant.spaces and space_id not in principal.grant.spaces:
            raise SpaceNotAllowed(space_id)  # a key kept to some spaces changes no other
        now = self._clock.now()
        async with self._store.begin() as tx:
            space = await self._space(tx, principal.org_id, space_id)
            toggled = archived is not None and archived != (space.archived_at is not None)
            await check_space_change(tx, principal, space, unarchive=toggled and not archived)
            changes: dict[str, object] = {}
            if name is not None:
                space = replace(space, name=check_name(name, "space"))
                changes["name"] = space.name
            if toggled:
                if archived and space.is_default:
                    raise Conflict("The default space cannot be archived.")
                by = principal.user_id if archived else None
                space = replace(space, archived_at=now if archived else None, archived_by=by)
                changes["archived"] = archived
            await tx.update_space(space)
            await tx.insert_audit(
                audit_event(
                    principal,
                    "space.updated",
                    now,
                    target_type="space",
                    target_id=space.id,
                    data=changes,
                )
            )
            await self._changed(tx, principal.org_id)
        self._after_change(principal.org_id)
        return space

    # users -----------------------------------------------------------------------

    async def create_user(
        self,
        principal: Principal,
        email: str,
        *,
        name: str | None = None,
        password: str | None = None,
        role: str | None = None,
        space_id: str | None = None,
    ) -> User:
        require_org_wide(principal, self._environments[0])
        email = check_email(email)
        password_hash = await self.hash_password(password, email) if password else None
        now = self._clock.now()
        user = User(
            new_id("usr"),
            principal.org_id,
            email,
            check_name(name or email.split("@")[0], "user"),
            password_hash,
            now,
        )
        async with self._store.begin() as tx:
            if await tx.find_user_by_email(principal.org_id, email):
                raise Conflict(f"A user with email {email} already exists in this organisation.")
            await tx.insert_user(user)
            if role is not None:
                membership = Membership(principal.org_id, user.id, space_id, role, now)
                await self._grant(tx, principal, membership, {})
            await tx.insert_audit(
                audit_event(
                    principal,
                    "user.created",
                    now,
                    target_type="user",
                    target_id=user.id,
                    data={"email": email, "role": role},
                )
            )
            await self._changed(tx, principal.org_id)
        self._after_change(principal.org_id)
        return user

    async def get_user(self, principal: Principal, user_id: str) -> User:
        async with self._store.begin() as tx:
            return await self._user(tx, principal.org_id, user_id)

    async def _user(self, tx: TenancyServiceTx, org_id: str, user_id: str) -> User:
        user = await tx.get_user(org_id, user_id)
        if user is None:
            raise NotFound("user", user_id)
        return user

    async def list_users(self, principal: Principal, page: PageRequest) -> Page[User]:
        async with self._store.begin() as tx:
            return await tx.list_users(principal.org_id, page)

    async def update_user(
        self, principal: Principal, user_id: str, *, name: str | None, disabled: bool | None
    ) -> User:
        now = self._clock.now()
        async with self._store.begin() as tx:
            user = await self._user(tx, principal.org_id, user_id)
            changes: dict[str, object] = {}
            if name is not None:
                # A name is how everyone sees the person: only those who cover the user
                # change it (only an owner renames an owner).
                await check_user_change(tx, principal, user.id, None, f"Renaming user {user.id}")
                user = replace(user, name=check_name(name, "user"))
                changes["name"] = user.name
            if disabled is not None and disabled != (user.disabled_at is not None):
                if disabled and user.id == principal.user_id:
                    raise Conflict("You cannot disable your own user.")
                require_org_wide(principal, self._environments[0])
                verb = "Disabling" if disabled else "Enabling"
                await check_user_change(tx, principal, user.id, None, f"{verb} user {user.id}")
                user = replace(user, disabled_at=now if disabled else None)
                changes["disabled"] = disabled
            await tx.update_user(user)
            await tx.insert_audit(
                audit_event(
                    principal,
                    "user.updated",
                    now,
                    target_type="user",
                    target_id=user.id,
                    data=changes,
                )
            )
            await self._changed(tx, principal.org_id)
        self._after_change(principal.org_id)
        return user

    # roles -----------------------------------------------------------------------

    async def list_roles(self, principal: Principal) -> list[Role]:
        async with self._store.begin() as tx:
            custom = await tx.list_roles(principal.org_id)
        return [*BUILTIN_ROLES.values(), *custom]

    async def get_role(self, principal: Principal, name: str) -> Role:
        async with self._store.begin() as tx:
            return await self._role(tx, principal.org_id, name)

    async def _role(self, tx: TenancyServiceTx, org_id: str, name: str) -> Role:
        role = BUILTIN_ROLES.get(name) or await tx.get_role(org_id, name)
        if role is None:
            raise NotFound("role", name)
        return role

    async def create_role(
        self, principal: Principal, name: str, scopes: list[str], description: str = ""
    ) -> Role:
        check_role_name(name)
        if name in BUILTIN_ROLES:
            raise Conflict(f"{name!r} is a built-in role; choose another name.")
        require_org_wide(principal, self._environments[0])
        normalised = normalise(scopes)
        if not normalised:
            raise InvalidInput("A role needs at least one scope.")
        self._catalogue.check(normalised)
        now = self._clock.now()
        role = Role(name, tuple(normalised), description[:500], False, principal.org_id, now)
        async with self._store.begin() as tx:
            await check_role_scopes(tx, principal, ScopeSet(normalised))
            if await tx.get_role(principal.org_id, name):
                raise Conflict(f"A role named {name!r} already exists.")
            await tx.insert_role(role)
            await tx.insert_audit(
                audit_event(
                    principal,
                    "role.created",
                    now,
                    target_type="role",
                    target_id=name,
                    data={"scopes": normalised},
                )
            )
        return role

    async def update_role(
        self,
        principal: Principal,
        name: str,
        *,
        scopes: list[str] | None,
        description: str | None,
    ) -> Role:
        if name in BUILTIN_ROLES:
            raise Conflict(f"{name!r} is a built-in role and cannot be changed.")
        require_org_wide(principal, self._environments[0])
        now = self._clock.now()
        async with self._store.begin() as tx:
            role = await self._role(tx, principal.org_id, name)
            # Changing a role changes its holders: its author must cover what it gives
            # now, as well as what it will give.
            await check_role_scopes(tx, principal, ScopeSet(role.scopes))
            if scopes is not None:
                normalised = normalise(scopes)
                if not normalised:
                    raise InvalidInput("A role needs at least one scope.")
                self._catalogue.check(normalised)
                await check_role_scopes(tx, principal, ScopeSet(normalised))
                role = replace(role, scopes=tuple(normalised))
            if description is not None:
                role = replace(role, description=description[:500])
            await tx.update_role(role)
            await tx.insert_audit(
                audit_event(
                    principal,
                    "role.updated",
                    now,
                    target_type="role",
                    target_id=name,
                    data={"scopes": list(role.scopes)},
                )
            )
            await self._changed(tx, principal.org_id)
        self._after_change(principal.org_id)
        return role

    async def delete_role(self, principal: Principal, name: str) -> None:
        if name in BUILTIN_ROLES:
            raise Conflict(f"{name!r} is a built-in role and cannot be deleted.")
        require_org_wide(principal, self._environments[0])
        now = self._clock.now()
        async with self._store.begin() as tx:
            role = await self._role(tx, principal.org_id, name)
            await check_role_scopes(tx, principal, ScopeSet(role.scopes))
            if await tx.role_in_use(principal.org_id, name):
                raise Conflict(f"Role {name!r} is still granted; remove its memberships first.")
            await tx.delete_role(principal.org_id, name)
            await tx.insert_audit(
                audit_event(principal, "role.deleted", now, target_type="role", target_id=name)
            )

    # memberships -----------------------------------------------------------------

    async def grantable_role(
        self, tx: TenancyServiceTx, principal: Principal, name: str, space_id: str | None
    ) -> Role:
        """The role, if the principal may offer it in ``space_id`` (None: every space):
        it holds every scope of the role there (the owner role's ``owner:*`` included)."""
        require_org_wide(principal, self._environments[0])
        role = await self._role(tx, principal.org_id, name)
        what = f"Offering the role {name!r}"
        await check_role_grant(tx, principal, ScopeSet(role.scopes), space_id, what)
        return role

    async def _grant(
        self, tx: TenancyServiceTx, principal: Principal, membership: Membership, before: Roles
    ) -> None:
        """Put a membership, if the principal covers the user before and after it."""
        require_org_wide(principal, self._environments[0])
        role = await self._role(tx, principal.org_id, membership.role)
        if membership.space_id is not None:
            await self._space(tx, principal.org_id, membership.space_id)
        after = {**before, membership.space_id: ScopeSet(role.scopes)}
        where = f"in space {membership.space_id}" if membership.space_id else "in every space"
        what = f"Giving user {membership.user_id} the role {role.name!r} {where}"
        await check_user_change(tx, principal, membership.user_id, after, what)
        await tx.put_membership(membership)

    async def grant(
        self, principal: Principal, user_id: str, role: str, space_id: str | None
    ) -> Membership:
        now = self._clock.now()
        membership = Membership(principal.org_id, user_id, space_id, role, now)
        async with self._store.begin() as tx:
            await self._user(tx, principal.org_id, user_id)
            before = await user_roles(tx, principal.org_id, user_id)
            await self._grant(tx, principal, membership, before)
            await tx.insert_audit(
                audit_event(
                    principal,
                    "membership.granted",
                    now,
                    target_type="user",
                    target_id=user_id,
                    data={"role": role, "space_id": space_id},
                )
            )
            await self._changed(tx, principal.org_id)
        self._after_change(principal.org_id)
        return membership

    async def revoke_membership(
        self, principal: Principal, user_id: str, space_id: str | None
    ) -> None:
        now = self._clock.now()
        async with self._store.begin() as tx:
            await self._user(tx, principal.org_id, user_id)
            current = [
                m
                for m in await tx.list_memberships(principal.org_id, user_id)
                if m.space_id == space_id
            ]
            if not current:
                raise NotFound("membership", f"{user_id}/{space_id or '*'}")
            if current[0].role == OWNER and user_id == principal.user_id and space_id is None:
                raise Conflict("You cannot remove your own owner role.")
            require_org_wide(principal, self._environments[0])
            after = await user_roles(tx, principal.org_id, user_id)
            after.pop(space_id, None)
            where = f"in space {space_id}" if space_id else "in every space"
            what = f"Removing the role of user {user_id} {where}"
            await check_user_change(tx, principal, user_id, after, what)
            await tx.delete_membership(principal.org_id, user_id, space_id)
            await tx.insert_audit(
                audit_event(
                    principal,
                    "membership.removed",
                    now,
                    target_type="user",
                    target_id=user_id,
                    data={"space_id": space_id},
                )
            )
            await self._changed(tx, principal.org_id)
        self._after_change(principal.org_id)

    async def memberships(self, principal: Principal, user_id: str) -> list[Membership]:
        async with self._store.begin() as tx:
            await self._user(tx, principal.org_id, user_id)
            return await tx.list_memberships(principal.org_id, user_id)
