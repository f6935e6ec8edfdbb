"""The SQLAlchemy store: SQLite (WAL) by default, PostgreSQL with asyncpg."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from apiward.adapters.storage import tables as t
from apiward.core.analytics import GRANULARITIES, Bucket, Query
from apiward.core.errors import Conflict, ServiceUnavailable
from apiward.core.limits import Credits, Refill
from apiward.core.models import (
    Account,
    ApiKey,
    AuditEvent,
    AuditFilter,
    DashboardSession,
    EmailLink,
    Environment,
    Invalidation,
    KeyFilter,
    LinkPurpose,
    Membership,
    OAuthClient,
    Organisation,
    Page,
    PageRequest,
    RateOverride,
    RefreshToken,
    Role,
    Space,
    StoredSigningKey,
    User,
)
from apiward.core.webhooks import WebhookDelivery, WebhookEndpoint

NOTIFY_CHANNEL = "apiward_invalidations"
_CONNECTION_LOST = ("connection", "could not connect", "server closed", "terminating")


@contextlib.contextmanager
def map_db_errors() -> Iterator[None]:
    """Translate driver errors into domain errors at the adapter's edge."""
    try:
        yield
    except IntegrityError as exc:
        raise Conflict("The change conflicts with an existing record.") from exc
    except (OperationalError, PoolTimeout, OSError, ConnectionError) as exc:
        raise ServiceUnavailable("The database is unreachable. Retry shortly.") from exc
    except DBAPIError as exc:
        if exc.connection_invalidated or any(w in str(exc).lower() for w in _CONNECTION_LOST):
            raise ServiceUnavailable("The database is unreachable. Retry shortly.") from exc
        raise


def private_sqlite_file(url: str) -> None:
    """Create the SQLite database file readable by its owner only (it holds password
    hashes, emails and addresses), and narrow an existing one and its ``-wal``/``-shm``
    files to that. SQLite gives the journal files the database file's permissions."""
    if ":///" not in url:
        return
    name = url.split(":///", 1)[1].split("?", 1)[0]
    if not name or name == ":memory:" or name.startswith("file:"):
        return
    path = Path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for file in (path, Path(f"{name}-wal"), Path(f"{name}-shm")):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if file.stat().st_mode & 0o077:
                file.chmod(0o600)


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    if url.startswith("sqlite"):
        private_sqlite_file(url)
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # FULL: a key whose plaintext was returned survives power loss too.
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
            # Let SQLAlchemy's "begin" event below issue BEGIN itself.
            dbapi_conn.isolation_level = None

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(conn: Any) -> None:
            # Take the write lock up front: a deferred transaction that reads and then
            # writes fails at once (SQLITE_BUSY_SNAPSHOT) when another writer got in
            # between, where an immediate one waits its turn.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_async_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, pool_timeout=10
    )


_VERIFICATION_KEY = tuple(t.verification_counts.primary_key.columns.keys())


def _row(r: Any, cls: type[Any], **extra: Any) -> Any:
    data = dict(r._mapping)
    data.update(extra)
    return cls(**data)


_KEY_LISTS = ("scopes", "ip_allow", "space_allow")
_CREDIT_COLUMNS = (
    "credits_remaining",
    "refill_amount",
    "refill_interval",
    "refill_day",
    "credits_refilled",
)


def _credits(m: Any) -> Credits | None:
    if m["credits_remaining"] is None:
        return None
    refill = None
    if m["refill_amount"] is not None:
        refill = Refill(int(m["refill_amount"]), m["refill_interval"], int(m["refill_day"] or 1))
    refilled = m["credits_refilled"]
    return Credits(int(m["credits_remaining"]), refill, None if refilled is None else int(refilled))


def _credit_values(credits: Credits | None) -> dict[str, Any]:
    refill = credits.refill if credits else None
    return {
        "credits_remaining": credits.remaining if credits else None,
        "refill_amount": refill.amount if refill else None,
        "refill_interval": refill.interval if refill else None,
        "refill_day": refill.day if refill else None,
        "credits_refilled": credits.refilled if credits else None,
    }


def _key(r: Any) -> ApiKey:
    m = r._mapping
    skip = {*_KEY_LISTS, *_CREDIT_COLUMNS, "rate_limits"}
    return ApiKey(
        **{k: m[k] for k in m if k not in skip},
        scopes=tuple(m["scopes"]),
        ip_allow=tuple(m["ip_allow"]),
        space_allow=tuple(m["space_allow"]),
        rate_limits=tuple(RateOverride(**o) for o in m["rate_limits"] or ()),
        credits=_credits(m),
    )


def _key_values(key: ApiKey) -> dict[str, Any]:
    values = asdict(key)
    for name in _KEY_LISTS:
        values[name] = list(values[name])
    values["rate_limits"] = [asdict(o) for o in key.rate_limits]
    values.pop("credits")
    values.update(_credit_values(key.credits))
    return values


def _client(r: Any) -> OAuthClient:
    m = r._mapping
    return OAuthClient(**{k: m[k] for k in m if k != "scopes"}, scopes=tuple(m["scopes"]))


def _client_values(client: OAuthClient) -> dict[str, Any]:
    values = asdict(client)
    values["scopes"] = list(values["scopes"])
    return values


def _webhook(r: Any) -> WebhookEndpoint:
    m = r._mapping
    return WebhookEndpoint(**{k: m[k] for k in m if k != "events"}, events=tuple(m["events"]))


def _webhook_values(endpoint: WebhookEndpoint) -> dict[str, Any]:
    values = asdict(endpoint)
    values["events"] = list(endpoint.events)
    return values


def _delivery(r: Any) -> WebhookDelivery:
    m = r._mapping
    fields = {k: m[k] for k in m if k not in ("locked_until", "attempt_log")}
    return WebhookDelivery(**fields, attempt_log=tuple(m["attempt_log"] or ()))


def _delivery_values(delivery: WebhookDelivery) -> dict[str, Any]:
    values = asdict(delivery)
    values["attempt_log"] = list(delivery.attempt_log)
    return values


class SqlTransaction:
    def __init__(self, conn: AsyncConnection) -> None:
        self._c = conn

    async def _all(self, stmt: Any) -> list[Any]:
        return list((await self._c.execute(stmt)).fetchall())

    async def _one(self, stmt: Any) -> Any:
        return (await self._c.execute(stmt)).first()

    async def _page(
        self, stmt: Any, order: Sequence[Any], page: PageRequest, conv: Any
    ) -> Page[Any]:
        total = (
            await self._c.execute(sa.select(sa.func.count()).select_from(stmt.subquery()))
        ).scalar_one()
        rows = await self._all(stmt.order_by(*order).limit(page.page_size).offset(page.offset))
        return Page([conv(r) for r in rows], int(total), page.page, page.page_size)

    # organisations and environments
    async def insert_org(self, org: Organisation) -> None:
        await self._c.execute(t.orgs.insert().values(asdict(org)))

    async def get_org(self, org_id: str) -> Organisation | None:
        r = await self._one(t.orgs.select().where(t.orgs.c.id == org_id))
        return _row(r, Organisation) if r else None

    async def list_orgs(self) -> list[Organisation]:
        rows = await self._all(t.orgs.select().order_by(t.orgs.c.created_at, t.orgs.c.id))
        return [_row(r, Organisation) for r in rows]

    async def insert_environment(self, env: Environment) -> None:
        await self._c.execute(t.environments.insert().values(asdict(env)))

    async def list_environments(self, org_id: str) -> list[Environment]:
        rows = await self._all(
            t.environments.select()
            .where(t.environments.c.org_id == org_id)
            .order_by(t.environments.c.name)
        )
        return [_row(r, Environment) for r in rows]

    # spaces
    async def insert_space(self, space: Space) -> None:
        await self._c.execute(t.spaces.insert().values(asdict(space)))

    async def get_space(self, org_id: str, space_id: str) -> Space | None:
        r = await self._one(
            t.spaces.select().where(t.spaces.c.org_id == org_id, t.spaces.c.id == space_id)
        )
        return _row(r, Space) if r else None

    async def list_spaces(
        self, org_id: str, page: PageRequest, *, include_archived: bool
    ) -> Page[Space]:
        stmt = t.spaces.select().where(t.spaces.c.org_id == org_id)
        if not include_archived:
            stmt = stmt.where(t.spaces.c.archived_at.is_(None))
        return await self._page(
            stmt, [t.spaces.c.created_at, t.spaces.c.id], page, lambda r: _row(r, Space)
        )

    async def active_space_ids(self, org_id: str) -> list[str]:
        rows = await self._all(
            sa.select(t.spaces.c.id).where(
                t.spaces.c.org_id == org_id, t.spaces.c.archived_at.is_(None)
            )
        )
        return [r[0] for r in rows]

    async def default_space(self, org_id: str) -> Space | None:
        r = await self._one(
            t.spaces.select().where(t.spaces.c.org_id == org_id, t.spaces.c.is_default.is_(True))
        )
        return _row(r, Space) if r else None

    async def update_space(self, space: Space) -> None:
        await self._c.execute(
            t.spaces.update()
            .where(t.spaces.c.id == space.id, t.spaces.c.org_id == space.org_id)
            .values(name=space.name, archived_at=space.archived_at)
        )

    # users
    async def insert_user(self, user: User) -> None:
        await self._c.execute(t.users.insert().values(asdict(user)))

    async def get_user(self, org_id: str, user_id: str) -> User | None:
        r = await self._one(
            t.users.select().where(t.users.c.org_id == org_id, t.users.c.id == user_id)
        )
        return _row(r, User) if r else None

    async def find_user_by_email(self, org_id: str, email: str) -> User | None:
        r = await self._one(
            t.users.select().where(t.users.c.org_id == org_id, t.users.c.email == email)
        )
        return _row(r, User) if r else None

    async def find_users_by_email(self, email: str) -> list[User]:
        rows = await self._all(
            t.users.select().where(t.users.c.email == email).order_by(t.users.c.created_at)
        )
        return [_row(r, User) for r in rows]

    async def list_users(self, org_id: str, page: PageRequest) -> Page[User]:
        stmt = t.users.select().where(t.users.c.org_id == org_id)
        return await self._page(
            stmt, [t.users.c.created_at, t.users.c.id], page, lambda r: _row(r, User)
        )

    async def update_user(self, user: User) -> None:
        await self._c.execute(
            t.users.update()
            .where(t.users.c.id == user.id, t.users.c.org_id == user.org_id)
            .values(name=user.name, disabled_at=user.disabled_at, password_hash=user.password_hash)
        )

    # roles and memberships
    async def insert_role(self, role: Role) -> None:
        await self._c.execute(
            t.roles.insert().values(
                org_id=role.org_id,
                name=role.name,
                scopes=list(role.scopes),
                description=role.description,
                created_at=role.created_at,
            )
        )

    @staticmethod
    def _role(r: Any) -> Role:
        m = r._mapping
        return Role(
            m["name"], tuple(m["scopes"]), m["description"], False, m["org_id"], m["created_at"]
        )

    async def get_role(self, org_id: str, name: str) -> Role | None:
        r = await self._one(
            t.roles.select().where(t.roles.c.org_id == org_id, t.roles.c.name == name)
        )
        return self._role(r) if r else None

    async def list_roles(self, org_id: str) -> list[Role]:
        rows = await self._all(
            t.roles.select().where(t.roles.c.org_id == org_id).order_by(t.roles.c.name)
        )
        return [self._role(r) for r in rows]

    async def update_role(self, role: Role) -> None:
        await self._c.execute(
            t.roles.update()
            .where(t.roles.c.org_id == role.org_id, t.roles.c.name == role.name)
            .values(scopes=list(role.scopes), description=role.description)
        )

    async def delete_role(self, org_id: str, name: str) -> None:
        await self._c.execute(
            t.roles.delete().where(t.roles.c.org_id == org_id, t.roles.c.name == name)
        )

    async def role_in_use(self, org_id: str, name: str) -> bool:
        r = await self._one(
            sa.select(t.memberships.c.id)
            .where(t.memberships.c.org_id == org_id, t.memberships.c.role == name)
            .limit(1)
        )
        return r is not None

    async def put_membership(self, membership: Membership) -> None:
        space = membership.space_id or ""
        await self._c.execute(
            t.memberships.delete().where(
                t.memberships.c.user_id == membership.user_id, t.memberships.c.space_id == space
            )
        )
        await self._c.execute(
            t.memberships.insert().values(
                org_id=membership.org_id,
                user_id=membership.user_id,
                space_id=space,
                role=membership.role,
                created_at=membership.created_at,
            )
        )

    async def delete_membership(self, org_id: str, user_id: str, space_id: str | None) -> bool:
        result = await self._c.execute(
            t.memberships.delete().where(
                t.memberships.c.org_id == org_id,
                t.memberships.c.user_id == user_id,
                t.memberships.c.space_id == (space_id or ""),
            )
        )
        return bool(result.rowcount)

    async def list_memberships(self, org_id: str, user_id: str) -> list[Membership]:
        rows = await self._all(
            t.memberships.select()
            .where(t.memberships.c.org_id == org_id, t.memberships.c.user_id == user_id)
            .order_by(t.memberships.c.space_id)
        )
        return [
            Membership(r.org_id, r.user_id, r.space_id or None, r.role, r.created_at) for r in rows
        ]

    # API keys
    async def insert_key(self, key: ApiKey) -> None:
        await self._c.execute(t.api_keys.insert().values(_key_values(key)))

    async def get_key(self, org_id: str, key_id: str) -> ApiKey | None:
        r = await self._one(
            t.api_keys.select().where(t.api_keys.c.org_id == org_id, t.api_keys.c.id == key_id)
        )
        return _key(r) if r else None

    async def find_key_by_digest(self, digest: str) -> ApiKey | None:
        r = await self._one(t.api_keys.select().where(t.api_keys.c.digest == digest))
        return _key(r) if r else None

    async def list_keys(self, org_id: str, flt: KeyFilter, page: PageRequest) -> Page[ApiKey]:
        c = t.api_keys.c
        stmt = t.api_keys.select().where(c.org_id == org_id)
        if flt.environment is not None:
            stmt = stmt.where(c.environment == flt.environment)
        if flt.user_id is not None:
            stmt = stmt.where(
                sa.or_(
                    c.user_id == flt.user_id,
                    sa.and_(c.user_id.is_(None), c.created_by == flt.user_id),
                )
            )
        if not flt.include_revoked:
            stmt = stmt.where(c.revoked_at.is_(None))
        return await self._page(stmt, [c.created_at.desc(), c.id], page, _key)

    async def update_key(self, key: ApiKey) -> None:
        values = _key_values(key)
        # last_used_* belong to touch_keys and credits to set_key_credits: a record read
        # before a flush or a spend must not undo it.
        for fixed in (
            *_CREDIT_COLUMNS,
            "id",
            "org_id",
            "digest",
            "created_at",
            "created_by",
            "environment",
            "last_used_at",
            "last_used_ip",
        ):
            values.pop(fixed)
        await self._c.execute(
            t.api_keys.update()
            .where(t.api_keys.c.id == key.id, t.api_keys.c.org_id == key.org_id)
            .values(values)
        )

    async def key_credits_for_update(self, key_id: str) -> Credits | None:
        stmt = sa.select(*(t.api_keys.c[c] for c in _CREDIT_COLUMNS)).where(
            t.api_keys.c.id == key_id
        )
        if self._c.dialect.name != "sqlite":
            stmt = stmt.with_for_update()
        r = await self._one(stmt)
        return _credits(r._mapping) if r else None

    async def set_key_credits(self, key_id: str, credits: Credits | None) -> None:
        await self._c.execute(
            t.api_keys.update().where(t.api_keys.c.id == key_id).values(_credit_values(credits))
        )

    async def insert_keys_bulk(self, keys: Sequence[ApiKey]) -> None:
        if keys:  # one executemany: the driver's batch path, not a statement per row
            await self._c.execute(t.api_keys.insert(), [self._bulk_row(k) for k in keys])

    _BULK_FIELDS = tuple(name for name in ApiKey.__dataclass_fields__ if name != "credits")

    @classmethod
    def _bulk_row(cls, key: ApiKey) -> dict[str, Any]:
        """``_key_values`` without ``asdict``'s deep copies, a third of the cost."""
        values = {name: getattr(key, name) for name in cls._BULK_FIELDS}
        for name in _KEY_LISTS:
            values[name] = list(values[name])
        values["rate_limits"] = [asdict(o) for o in key.rate_limits]
        values.update(_credit_values(key.credits))
        return values

    async def existing_key_digests(self, digests: Sequence[str]) -> set[str]:
        found: set[str] = set()
        column = t.api_keys.c.digest
        for i in range(0, len(digests), 5000):  # well under every driver's bind limit
            rows = await self._all(sa.select(column).where(column.in_(digests[i : i + 5000])))
            found.update(r[0] for r in rows)
        return found

    async def update_org(self, org: Organisation) -> None:
        await self._c.execute(
            t.orgs.update()
            .where(t.orgs.c.id == org.id)
            .values(name=org.name, rate_tier=org.rate_tier)
        )

    async def touch_keys(self, usage: Sequence[tuple[str, datetime, str | None]]) -> None:
        if not usage:
            return
        stmt = (
            t.api_keys.update()
            .where(t.api_keys.c.id == sa.bindparam("key_id"))
            .values(last_used_at=sa.bindparam("at"), last_used_ip=sa.bindparam("ip"))
        )
        await self._c.execute(stmt, [{"key_id": k, "at": at, "ip": ip} for k, at, ip in usage])

    # audit log
    async def insert_audit(self, event: AuditEvent) -> None:
        await self._c.execute(t.audit_events.insert().values(asdict(event)))
        # The webhook outbox: committed with the event, fanned out after (webhooks.py).
        await self._c.execute(
            t.webhook_outbox.insert().values(event_id=event.id, created_at=event.created_at)
        )

    async def list_audit(
        self, org_id: str | None, flt: AuditFilter, page: PageRequest
    ) -> Page[AuditEvent]:
        c = t.audit_events.c
        stmt = t.audit_events.select().where(
            c.org_id.is_(None) if org_id is None else c.org_id == org_id
        )
        if flt.environment is not None:
            stmt = stmt.where(sa.or_(c.environment == flt.environment, c.environment.is_(None)))
        if flt.type is not None:
            stmt = stmt.where(c.type == flt.type)
        if flt.actor_user_id is not None:
            stmt = stmt.where(c.actor_user_id == flt.actor_user_id)
        if flt.target_id is not None:
            stmt = stmt.where(c.target_id == flt.target_id)
        if flt.credential_id is not None:
            cred = flt.credential_id
            stmt = stmt.where(sa.or_(c.actor_credential_id == cred, c.target_id == cred))
        if flt.since is not None:
            stmt = stmt.where(c.created_at >= flt.since)
        if flt.until is not None:
            stmt = stmt.where(c.created_at < flt.until)
        return await self._page(
            stmt, [c.created_at.desc(), c.id], page, lambda r: _row(r, AuditEvent)
        )

    # invalidations
    async def insert_invalidation(self, kind: str, target: str, at: datetime) -> None:
        await self._c.execute(
            t.invalidations.insert().values(kind=kind, target=target, created_at=at)
        )
        if self._c.dialect.name == "postgresql":
            # Delivered at commit: listeners poll the log at once instead of waiting.
            await self._c.execute(sa.text(f"NOTIFY {NOTIFY_CHANNEL}"))

    async def invalidations_since(self, since: datetime) -> list[Invalidation]:
        c = t.invalidations.c
        rows = await self._all(
            sa.select(c.seq, c.kind, c.target).where(c.created_at >= since).order_by(c.seq)
        )
        return [Invalidation(int(r.seq), r.kind, r.target) for r in rows]

    async def prune_invalidations(self, before: datetime) -> None:
        await self._c.execute(t.invalidations.delete().where(t.invalidations.c.created_at < before))

    # signing keys
    async def insert_signing_key(self, key: StoredSigningKey) -> None:
        await self._c.execute(t.signing_keys.insert().values(asdict(key)))

    async def list_signing_keys(self) -> list[StoredSigningKey]:
        rows = await self._all(t.signing_keys.select().order_by(t.signing_keys.c.created_at))
        return [_row(r, StoredSigningKey) for r in rows]

    async def retire_signing_key(self, kid: str, at: datetime, expires_at: datetime) -> None:
        await self._c.execute(
            t.signing_keys.update()
            .where(t.signing_keys.c.kid == kid)
            .values(retired_at=at, expires_at=expires_at)
        )

    # OAuth clients
    async def insert_client(self, client: OAuthClient) -> None:
        await self._c.execute(t.oauth_clients.insert().values(_client_values(client)))

    async def get_client(self, org_id: str, client_id: str) -> OAuthClient | None:
        c = t.oauth_clients.c
        r = await self._one(t.oauth_clients.select().where(c.org_id == org_id, c.id == client_id))
        return _client(r) if r else None

    async def find_client(self, client_id: str) -> OAuthClient | None:
        r = await self._one(t.oauth_clients.select().where(t.oauth_clients.c.id == client_id))
        return _client(r) if r else None

    async def list_clients(
        self, org_id: str, environment: str, page: PageRequest
    ) -> Page[OAuthClient]:
        c = t.oauth_clients.c
        stmt = t.oauth_clients.select().where(c.org_id == org_id, c.environment == environment)
        return await self._page(stmt, [c.created_at.desc(), c.id], page, _client)

    async def update_client(self, client: OAuthClient) -> None:
        values = _client_values(client)
        for fixed in (
            "id",
            "org_id",
            "secret_digest",
            "created_at",
            "created_by",
            "environment",
            "last_used_at",
            "last_used_ip",
        ):
            values.pop(fixed)
        c = t.oauth_clients.c
        await self._c.execute(
            t.oauth_clients.update()
            .where(c.id == client.id, c.org_id == client.org_id)
            .values(values)
        )

    async def touch_clients(self, usage: Sequence[tuple[str, datetime, str | None]]) -> None:
        if not usage:
            return
        stmt = (
            t.oauth_clients.update()
            .where(t.oauth_clients.c.id == sa.bindparam("client_id"))
            .values(last_used_at=sa.bindparam("at"), last_used_ip=sa.bindparam("ip"))
        )
        await self._c.execute(stmt, [{"client_id": k, "at": at, "ip": ip} for k, at, ip in usage])

    # refresh tokens and revocations
    async def insert_refresh(self, token: RefreshToken) -> None:
        await self._c.execute(t.refresh_tokens.insert().values(asdict(token)))

    async def find_refresh_for_update(self, digest: str) -> RefreshToken | None:
        stmt = t.refresh_tokens.select().where(t.refresh_tokens.c.digest == digest)
        if self._c.dialect.name != "sqlite":  # SQLite's BEGIN IMMEDIATE already serialises
            stmt = stmt.with_for_update()
        r = await self._one(stmt)
        return _row(r, RefreshToken) if r else None

    async def update_refresh(self, token: RefreshToken) -> None:
        await self._c.execute(
            t.refresh_tokens.update()
            .where(t.refresh_tokens.c.id == token.id)
            .values(
                used_at=token.used_at,
                successor_id=token.successor_id,
                answer_sealed=token.answer_sealed,
                revoked_at=token.revoked_at,
            )
        )

    async def revoke_family(self, family_id: str, at: datetime) -> int:
        c = t.refresh_tokens.c
        result = await self._c.execute(
            t.refresh_tokens.update()
            .where(c.family_id == family_id, c.revoked_at.is_(None))
            .values(revoked_at=at, answer_sealed=None)
        )
        return int(result.rowcount or 0)

    async def user_families(self, org_id: str, user_id: str) -> list[str]:
        c = t.refresh_tokens.c
        rows = await self._all(
            sa.select(c.family_id)
            .distinct()
            .where(c.org_id == org_id, c.user_id == user_id, c.revoked_at.is_(None))
        )
        return [r[0] for r in rows]

    async def prune_refresh(self, expired_before: datetime, answers_before: datetime) -> None:
        c = t.refresh_tokens.c
        await self._c.execute(t.refresh_tokens.delete().where(c.expires_at < expired_before))
        await self._c.execute(
            t.refresh_tokens.update()
            .where(c.answer_sealed.is_not(None), c.used_at < answers_before)
            .values(answer_sealed=None)
        )
        await self._c.execute(
            t.revocations.delete().where(t.revocations.c.expires_at < expired_before)
        )

    async def insert_revocation(
        self, kind: str, value: str, at: datetime, expires_at: datetime
    ) -> None:
        c = t.revocations.c
        exists = await self._one(sa.select(c.id).where(c.kind == kind, c.value == value))
        if exists is None:
            await self._c.execute(
                t.revocations.insert().values(
                    kind=kind, value=value, created_at=at, expires_at=expires_at
                )
            )

    async def active_revocations(self, now: datetime) -> list[tuple[str, str]]:
        c = t.revocations.c
        rows = await self._all(sa.select(c.kind, c.value).where(c.expires_at > now))
        return [(r.kind, r.value) for r in rows]

    # dashboard sessions
    async def insert_session(self, session: DashboardSession) -> None:
        await self._c.execute(t.dashboard_sessions.insert().values(asdict(session)))

    async def find_session(self, digest: str) -> DashboardSession | None:
        r = await self._one(
            t.dashboard_sessions.select().where(t.dashboard_sessions.c.digest == digest)
        )
        return _row(r, DashboardSession) if r else None

    async def revoke_session(self, session_id: str, at: datetime) -> None:
        c = t.dashboard_sessions.c
        await self._c.execute(
            t.dashboard_sessions.update()
            .where(c.id == session_id, c.revoked_at.is_(None))
            .values(revoked_at=at)
        )

    async def prune_sessions(self, expired_before: datetime) -> int:
        result = await self._c.execute(
            t.dashboard_sessions.delete().where(t.dashboard_sessions.c.expires_at < expired_before)
        )
        return int(result.rowcount or 0)

    async def revoke_sessions(
        self, *, account_id: str | None, user_id: str | None, at: datetime
    ) -> int:
        c = t.dashboard_sessions.c
        if account_id is not None:
            owner = c.account_id == account_id
        elif user_id is not None:
            owner = sa.and_(c.user_id == user_id, c.account_id.is_(None))
        else:
            return 0
        result = await self._c.execute(
            t.dashboard_sessions.update().where(owner, c.revoked_at.is_(None)).values(revoked_at=at)
        )
        return int(result.rowcount or 0)

    async def move_session(self, session_id: str, org_id: str, user_id: str) -> None:
        await self._c.execute(
            t.dashboard_sessions.update()
            .where(t.dashboard_sessions.c.id == session_id)
            .values(org_id=org_id, user_id=user_id)
        )

    # portal accounts and their links
    async def insert_account(self, account: Account) -> None:
        await self._c.execute(t.accounts.insert().values(asdict(account)))

    async def get_account(self, account_id: str) -> Account | None:
        r = await self._one(t.accounts.select().where(t.accounts.c.id == account_id))
        return _row(r, Account) if r else None

    async def find_account_by_email(self, email: str) -> Account | None:
        r = await self._one(t.accounts.select().where(t.accounts.c.email == email))
        return _row(r, Account) if r else None

    async def update_account(self, account: Account) -> None:
        values = asdict(account)
        del values["id"], values["created_at"]
        await self._c.execute(
            t.accounts.update().where(t.accounts.c.id == account.id).values(**values)
        )

    async def list_accounts(self, page: PageRequest) -> Page[Account]:
        c = t.accounts.c
        return await self._page(
            t.accounts.select(), [c.created_at, c.id], page, lambda r: _row(r, Account)
        )

    async def account_projects(self, account_id: str) -> list[tuple[Organisation, User]]:
        u = t.users.c
        rows = await self._all(
            t.users.select().where(u.account_id == account_id).order_by(u.created_at, u.id)
        )
        users = [_row(r, User) for r in rows]
        if not users:
            return []
        orgs = {
            r.id: _row(r, Organisation)
            for r in await self._all(
                t.orgs.select().where(t.orgs.c.id.in_([user.org_id for user in users]))
            )
        }
        return [(orgs[user.org_id], user) for user in users]

    async def insert_link(self, link: EmailLink) -> None:
        await self._c.execute(t.email_links.insert().values(asdict(link)))

    @staticmethod
    def _link(r: Any) -> EmailLink:
        return _row(r, EmailLink, purpose=LinkPurpose(r.purpose))  # type: ignore[no-any-return]

    async def find_link(self, digest: str) -> EmailLink | None:
        r = await self._one(t.email_links.select().where(t.email_links.c.digest == digest))
        return self._link(r) if r else None

    async def get_link(self, link_id: str) -> EmailLink | None:
        r = await self._one(t.email_links.select().where(t.email_links.c.id == link_id))
        return self._link(r) if r else None

    async def use_link(self, link_id: str, at: datetime) -> bool:
        c = t.email_links.c
        result = await self._c.execute(
            t.email_links.update()
            .where(
                c.id == link_id,
                c.used_at.is_(None),
                c.revoked_at.is_(None),
                c.expires_at > at,
            )
            .values(used_at=at)
        )
        return bool(result.rowcount)

    async def revoke_links(
        self,
        purpose: LinkPurpose,
        at: datetime,
        *,
        email: str | None = None,
        org_id: str | None = None,
        link_id: str | None = None,
    ) -> int:
        c = t.email_links.c
        stmt = t.email_links.update().where(
            c.purpose == purpose.value, c.used_at.is_(None), c.revoked_at.is_(None)
        )
        if email is not None:
            stmt = stmt.where(c.email == email)
        if org_id is not None:
            stmt = stmt.where(c.org_id == org_id)
        if link_id is not None:
            stmt = stmt.where(c.id == link_id)
        result = await self._c.execute(stmt.values(revoked_at=at))
        return int(result.rowcount or 0)

    async def pending_links(
        self, purpose: LinkPurpose, org_id: str, now: datetime
    ) -> list[EmailLink]:
        c = t.email_links.c
        rows = await self._all(
            t.email_links.select()
            .where(
                c.purpose == purpose.value,
                c.org_id == org_id,
                c.used_at.is_(None),
                c.revoked_at.is_(None),
                c.expires_at > now,
            )
            .order_by(c.created_at.desc(), c.id)
        )
        return [self._link(r) for r in rows]

    async def prune_links(self, before: datetime) -> int:
        result = await self._c.execute(
            t.email_links.delete().where(t.email_links.c.expires_at < before)
        )
        return int(result.rowcount or 0)

    # audit retention and the webhook outbox
    async def prune_audit(self, before: datetime) -> int:
        result = await self._c.execute(
            t.audit_events.delete().where(t.audit_events.c.created_at < before)
        )
        return int(result.rowcount or 0)

    async def take_outbox(self, limit: int) -> list[AuditEvent]:
        o = t.webhook_outbox.c
        stmt = sa.select(o.event_id).order_by(o.created_at, o.event_id).limit(limit)
        if self._c.dialect.name != "sqlite":  # SQLite's BEGIN IMMEDIATE already serialises
            stmt = stmt.with_for_update(skip_locked=True)
        ids = [r[0] for r in await self._all(stmt)]
        if not ids:
            return []
        await self._c.execute(t.webhook_outbox.delete().where(o.event_id.in_(ids)))
        a = t.audit_events.c
        rows = await self._all(
            t.audit_events.select().where(a.id.in_(ids)).order_by(a.created_at, a.id)
        )
        return [_row(r, AuditEvent) for r in rows]

    # webhooks
    async def insert_webhook(self, endpoint: WebhookEndpoint) -> None:
        await self._c.execute(t.webhook_endpoints.insert().values(_webhook_values(endpoint)))

    async def get_webhook(self, org_id: str, webhook_id: str) -> WebhookEndpoint | None:
        c = t.webhook_endpoints.c
        r = await self._one(
            t.webhook_endpoints.select().where(c.org_id == org_id, c.id == webhook_id)
        )
        return _webhook(r) if r else None

    async def list_webhooks(
        self, org_id: str, environment: str | None, page: PageRequest
    ) -> Page[WebhookEndpoint]:
        c = t.webhook_endpoints.c
        stmt = t.webhook_endpoints.select().where(c.org_id == org_id)
        if environment is not None:
            stmt = stmt.where(c.environment == environment)
        return await self._page(stmt, [c.created_at.desc(), c.id], page, _webhook)

    async def active_webhooks(self) -> list[WebhookEndpoint]:
        c = t.webhook_endpoints.c
        rows = await self._all(
            t.webhook_endpoints.select().where(c.disabled_at.is_(None)).order_by(c.created_at)
        )
        return [_webhook(r) for r in rows]

    async def update_webhook(self, endpoint: WebhookEndpoint) -> None:
        values = _webhook_values(endpoint)
        for fixed in ("id", "org_id", "environment", "created_at", "created_by"):
            values.pop(fixed)
        c = t.webhook_endpoints.c
        await self._c.execute(
            t.webhook_endpoints.update()
            .where(c.id == endpoint.id, c.org_id == endpoint.org_id)
            .values(values)
        )

    async def delete_webhook(self, org_id: str, webhook_id: str) -> bool:
        d, c = t.webhook_deliveries.c, t.webhook_endpoints.c
        await self._c.execute(
            t.webhook_deliveries.delete().where(d.org_id == org_id, d.endpoint_id == webhook_id)
        )
        result = await self._c.execute(
            t.webhook_endpoints.delete().where(c.org_id == org_id, c.id == webhook_id)
        )
        return bool(result.rowcount)

    async def insert_deliveries(self, deliveries: Sequence[WebhookDelivery]) -> int:
        from sqlalchemy.dialects import postgresql, sqlite

        added = 0
        for delivery in deliveries:
            values = _delivery_values(delivery)
            stmt: Any
            if self._c.dialect.name == "postgresql":
                stmt = postgresql.insert(t.webhook_deliveries).values(values)
            else:
                stmt = sqlite.insert(t.webhook_deliveries).values(values)
            result = await self._c.execute(stmt.on_conflict_do_nothing())
            added += int(result.rowcount or 0)
        return added

    async def claim_deliveries(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> list[WebhookDelivery]:
        d, e = t.webhook_deliveries.c, t.webhook_endpoints.c
        stmt = (
            sa.select(d.id)
            .join_from(t.webhook_deliveries, t.webhook_endpoints, d.endpoint_id == e.id)
            .where(
                d.status == "pending",
                d.next_attempt_at <= now,
                sa.or_(d.locked_until.is_(None), d.locked_until <= now),
                e.disabled_at.is_(None),
            )
            .order_by(d.next_attempt_at, d.id)
            .limit(limit)
        )
        if self._c.dialect.name != "sqlite":
            stmt = stmt.with_for_update(of=t.webhook_deliveries, skip_locked=True)
        ids = [r[0] for r in await self._all(stmt)]
        if not ids:
            return []
        await self._c.execute(
            t.webhook_deliveries.update().where(d.id.in_(ids)).values(locked_until=lease_until)
        )
        rows = await self._all(
            t.webhook_deliveries.select().where(d.id.in_(ids)).order_by(d.next_attempt_at, d.id)
        )
        return [_delivery(r) for r in rows]

    async def finish_attempt(self, delivery: WebhookDelivery) -> None:
        d = t.webhook_deliveries.c
        await self._c.execute(
            t.webhook_deliveries.update()
            .where(d.id == delivery.id)
            .values(
                status=delivery.status,
                attempts=delivery.attempts,
                next_attempt_at=delivery.next_attempt_at,
                last_attempt_at=delivery.last_attempt_at,
                response_status=delivery.response_status,
                error=(delivery.error or "")[:500] or None,
                completed_at=delivery.completed_at,
                attempt_log=list(delivery.attempt_log),
                locked_until=None,
            )
        )

    async def list_deliveries(
        self, org_id: str, webhook_id: str, page: PageRequest
    ) -> Page[WebhookDelivery]:
        d = t.webhook_deliveries.c
        stmt = t.webhook_deliveries.select().where(d.org_id == org_id, d.endpoint_id == webhook_id)
        return await self._page(stmt, [d.created_at.desc(), d.id], page, _delivery)

    async def prune_deliveries(self, before: datetime) -> int:
        d = t.webhook_deliveries.c
        result = await self._c.execute(
            t.webhook_deliveries.delete().where(d.status != "pending", d.created_at < before)
        )
        return int(result.rowcount or 0)

    # verification analytics
    async def add_verifications(self, rows: Sequence[Bucket]) -> None:
        from sqlalchemy.dialects import postgresql, sqlite

        v = t.verification_counts
        values = sorted(  # one order everywhere: concurrent upserts cannot deadlock
            (
                {
                    "org_id": b.org_id,
                    "environment": b.environment,
                    "granularity": b.granularity,
                    "bucket": b.start,
                    "key_id": b.key_id,
                    "client_id": b.client_id,
                    "route": b.route[:256],
                    "outcome": b.outcome,
                    "count": b.count,
                }
                for b in rows
            ),
            key=lambda r: tuple(str(r[k]) for k in _VERIFICATION_KEY),
        )
        if not values:
            return
        dialect: Any = postgresql if self._c.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(v)
        stmt = stmt.on_conflict_do_update(
            index_elements=list(_VERIFICATION_KEY),
            set_={"count": v.c["count"] + stmt.excluded["count"]},  # add, never overwrite
        )
        await self._c.execute(stmt, values)

    async def verification_counts(
        self, org_id: str, environment: str, query: Query
    ) -> list[Bucket]:
        v = t.verification_counts.c
        named = {
            "outcome": v.outcome,
            "key": v.key_id,
            "client": v.client_id,
            "route": v.route,
            "environment": v.environment,
        }
        groups = [named[g] for g in query.group_by]
        seconds = GRANULARITIES[query.granularity]
        start = int(query.since.timestamp()) // seconds * seconds
        where = [
            v.org_id == org_id,
            v.environment == environment,
            v.granularity == query.granularity,
            v.bucket >= start,
            v.bucket < int(query.until.timestamp()),
        ]
        for column, wanted in (
            (v.key_id, query.key_id),
            (v.client_id, query.client_id),
            (v.route, query.route),
            (v.outcome, query.outcome),
        ):
            if wanted is not None:
                where.append(column == wanted)
        total = sa.func.sum(v["count"]).label("total")
        stmt: Any
        if query.limit is not None:  # top consumers over the whole span
            stmt = (
                sa.select(*groups, total)
                .where(*where)
                .group_by(*groups)
                .order_by(total.desc(), *groups)
                .limit(query.limit)
            )
        else:
            stmt = (
                sa.select(v.bucket, *groups, total)
                .where(*where)
                .group_by(v.bucket, *groups)
                .order_by(v.bucket, *groups)
            )
        out = []
        for row in await self._all(stmt):
            data = row._mapping
            out.append(
                Bucket(
                    query.granularity,
                    int(data["bucket"]) if "bucket" in data else start,
                    org_id,
                    str(data.get("environment", environment)),
                    str(data.get("key_id", "")),
                    str(data.get("client_id", "")),
                    str(data.get("route", "")),
                    str(data.get("outcome", "")),
                    int(data["total"]),
                )
            )
        return out

    async def prune_verifications(self, granularity: str, before: datetime) -> int:
        v = t.verification_counts.c
        result = await self._c.execute(
            t.verification_counts.delete().where(
                v.granularity == granularity, v.bucket < int(before.timestamp())
            )
        )
        return int(result.rowcount or 0)

    # leaked-credential reports
    async def find_client_by_secret(self, secret_digest: str) -> OAuthClient | None:
        c = t.oauth_clients.c
        r = await self._one(t.oauth_clients.select().where(c.secret_digest == secret_digest))
        return _client(r) if r else None


class SqlStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.unavailable = 0
        """Transactions that failed because the database was unreachable (for metrics)."""

    @classmethod
    def from_url(cls, url: str) -> SqlStore:
        return cls(create_engine(url))

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[SqlTransaction]:
        try:
            with map_db_errors():
                async with self.engine.begin() as conn:
                    yield SqlTransaction(conn)
        except ServiceUnavailable:
            self.unavailable += 1
            raise

    async def ping(self) -> None:
        with map_db_errors():
            async with self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()

    async def listen(self, on_notify: Callable[[], None]) -> Callable[[], Awaitable[None]] | None:
        """On PostgreSQL, call ``on_notify`` whenever any process writes an invalidation.

        Returns a function that stops listening, or None on back-ends without
        notifications (SQLite), where the poll alone carries invalidations.
        """
        if self.engine.dialect.name != "postgresql":
            return None
        import asyncpg

        url = self.engine.url.set(drivername="postgresql")
        with map_db_errors():
            conn = await asyncpg.connect(url.render_as_string(hide_password=False))

        def callback(*_: object) -> None:
            on_notify()

        await conn.add_listener(NOTIFY_CHANNEL, callback)

        async def stop() -> None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)

        return stop
