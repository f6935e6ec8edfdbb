"""Token grants (RFC 6749, RFC 8693), refresh rotation, revocation and introspection.

Refresh tokens are opaque, single use, stored as SHA-256 and grouped in families.
Replaying a used one revokes its family (RFC 6819 section 5.2.2.3), with one exception
that the peers get wrong: the same token presented again within the grace window (a
client retry, a second tab) gets the very answer the first presentation got. That
answer is kept sealed (AES-GCM) on the used token's row for the window, never in
plaintext, and concurrent presentations queue on the row's lock, so fifty at once all
receive one pair. After the window, for a bounded time, a used token whose successor was
never used is a retry of a lost answer: the family is rotated again from it, and the
successor handed out before becomes a tripwire (``_retry``).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from apiward.core import tokens as jwt_tokens
from apiward.core.analytics import outcome_of
from apiward.core.authority import Authority
from apiward.core.clock import Clock
from apiward.core.crypto import Sealer, SealError
from apiward.core.errors import (
    ApiwardError,
    AuthenticationError,
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    UnauthorizedClient,
)
from apiward.core.ids import new_id
from apiward.core.keys import KeyFormats, digest
from apiward.core.models import (
    AuditEvent,
    OAuthClient,
    RefreshToken,
    RequestContext,
    User,
    visible_in,
)
from apiward.core.scopes import ScopeSet, normalise
from apiward.services.analytics import Verifications
from apiward.services.audit import new_event
from apiward.services.authority import client_grant, is_active, user_authority, user_roles
from apiward.services.clients import client_cache_key, find_client
from apiward.services.flights import Flights
from apiward.services.ports import (
    AuditTx,
    Cache,
    CredentialsTx,
    InvalidationsTx,
    MfaTx,
    PortalTx,
    Store,
    TenancyTx,
    TokensTx,
)
from apiward.services.revocations import Revocations
from apiward.services.signin import SignIns
from apiward.services.signing import Keyring
from apiward.services.usage import UsageRecorder


class TokensServiceTx(
    TokensTx, CredentialsTx, TenancyTx, PortalTx, MfaTx, AuditTx, InvalidationsTx, Protocol
):
    """What issuing, refreshing and revoking tokens touches."""


PASSWORD_CLIENT = "apiward-login"
EXCHANGE_SCOPE = "tokens:exchange"
USER_ID_TOKEN_TYPE = "urn:apiward:params:oauth:token-type:user-id"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
_ANSWER_CONTEXT = "refresh-answer:"


class Revoke(Protocol):
    """Revoke a ``jti``, a ``family`` (a session) or a ``client``, in a transaction."""

    async def __call__(self, kind: str, value: str, until: datetime | None = None) -> None: ...


TOKEN_ROUTE = "/v1/auth/token"
REFRESH_ROUTE = "/v1/auth/refresh"


@dataclass(frozen=True, slots=True)
class TokenAnswer:
    access_token: str
    expires_in: int
    scope: str
    refresh_token: str | None = None
    issued_token_type: str | None = None

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": self.access_token,
            "expires_in": self.expires_in,
            "scope": self.scope,
        }
        if self.refresh_token is not None:
            body["refresh_token"] = self.refresh_token
        if self.issued_token_type is not None:
            body["issued_token_type"] = self.issued_token_type
        return body


class _NotARefreshToken(InvalidGrant):
    """A refresh token that is malformed or was never issued: a failed authentication."""

    def __init__(self) -> None:
        super().__init__("The refresh token is not valid.")


@dataclass(frozen=True, slots=True)
class TokenSettings:
    issuer: str
    audience: str
    access_ttl: timedelta
    refresh_ttl: timedelta
    grace: timedelta
    default_environment: str
    retry: timedelta = timedelta(0)
    """How long a used refresh token whose successor was never used still gets that
    successor (a retry of a refresh whose answer was lost); 0: never."""


class Tokens:
    def __init__(
        self,
        store: Store[TokensServiceTx],
        cache: Cache,
        clock: Clock,
        keyring: Keyring,
        sealer: Sealer,
        sign_ins: SignIns,
        revocations: Revocations,
        usage: UsageRecorder,
        refresh_format: KeyFormats,
        settings: TokenSettings,
        verifications: Verifications,
        acts: Callable[[str, str], Awaitable[bool]],
        failed: Callable[[str | None, str], Awaitable[None]],
        flights: Flights | None = None,
    ) -> None:
        self._store = store
        self._flights = flights or Flights()
        """Store reads shared by the requests that miss one record at once (the
        authenticator's, so that a grant and a token's verification share them too)."""
        self._acts = acts
        """Whether a user may act now (``Authenticator.acts``: cached, as for keys)."""
        self._failed = failed
        """Counts a failed authentication (of a client, or a refresh token never issued)
        against its address's budget, shared with keys
        (``RequestLimits.authentication_failed``): ``RateLimited`` past it."""
        self._cache = cache
        self._clock = clock
        self._keyring = keyring
        self._sealer = sealer
        self._sign_ins = sign_ins
        self.revocations = revocations
        self._usage = usage
        self._verifications = verifications
        self._refresh_fmt = refresh_format
        self.settings = settings

    # issuing -------------------------------------------------------------------------

    def _access_token(
        self,
        *,
        sub: str,
        org: str,
        env: str,
        uid: str,
        scope: str,
        client_id: str,
        space: str | None = None,
        sid: str | None = None,
        act: dict[str, str] | None = None,
        client: OAuthClient | None = None,
    ) -> tuple[str, int]:
        now = int(self._clock.now().timestamp())
        ttl = int(self.settings.access_ttl.total_seconds())
        claims = jwt_tokens.AccessClaims(
            iss=self.settings.issuer,
            aud=self.settings.audience,
            sub=sub,
            org=org,
            env=env,
            uid=uid,
            scope=scope,
            client_id=client_id,
            jti=new_id("at"),
            iat=now,
            exp=now + ttl,
            space=space,
            sid=sid,
            act=act,
            cexp=int(client.expires_at.timestamp()) if client and client.expires_at else None,
        )
        return jwt_tokens.sign(claims, self._keyring.current), ttl

    def _new_refresh(
        self,
        *,
        family: str,
        org: str,
        env: str,
        user: str,
        scope: str,
        client_id: str | None,
        space: str | None,
    ) -> tuple[RefreshToken, str]:
        now = self._clock.now()
        plaintext = self._refresh_fmt.current.generate(env)
        record = RefreshToken(
            id=new_id("rt"),
            family_id=family,
            digest=digest(plaintext),
            org_id=org,
            environment=env,
            user_id=user,
            scope=scope,
            created_at=now,
            expires_at=now + self.settings.refresh_ttl,
            client_id=client_id,
            space_id=space,
        )
        return record, plaintext

    # password grant (docs/compatibility.md) ---------------------------------------------

    async def password_grant(
        self,
        username: str,
        password: str,
        *,
        scope: str | None,
        org_id: str | None,
        environment: str | None,
        context: RequestContext,
    ) -> TokenAnswer:
        if not username or not password:
            raise InvalidRequest("Send both username and password.")
        env = environment or self.settings.default_environment
        if env not in [e for e, _ in self._refresh_fmt.current.env_tags]:
            raise InvalidRequest(f"Unknown environment {env!r}.")
        who = await self._sign_ins.sign_in(username, password, context, org_id=org_id)
        user = who.user if who is not None else None
        self._verifications.count(
            user.org_id if user else None, env, "VALID" if user else "NOT_FOUND", route=TOKEN_ROUTE
        )
        if user is None:
            raise InvalidGrant("Invalid username or password.")
        async with self._store.begin() as tx:
            # A password alone never passes for someone whose dashboard sign-in asks for
            # a second factor (an account's users share the account's), or whose
            # organisation requires one of its members.
            factor = await tx.get_mfa(user.account_id or user.id)
            org = await tx.get_org(user.org_id)
            required = org is not None and org.require_mfa
            if required or (factor is not None and factor.enabled_at is not None):
                raise InvalidGrant(
                    "This user signs in with a second factor: the password grant is not "
                    "available. Use an API key or an OAuth client."
                )
            granted = await self._user_scopes(tx, user)
            token_scope = self._narrow(granted, scope)
            family = new_id("fam")
            record, refresh = self._new_refresh(
                family=family,
                org=user.org_id,
                env=env,
                user=user.id,
                scope=token_scope,
                client_id=None,
                space=None,
            )
            await tx.insert_refresh(record)
            await tx.insert_audit(
                self._event(
                    user.org_id, env, "login.succeeded", context, user.id, target_id=user.id
                )
            )
        access, ttl = self._access_token(
            sub=user.id,
            org=user.org_id,
            env=env,
            uid=user.id,
            scope=token_scope,
            client_id=PASSWORD_CLIENT,
            sid=family,
        )
        return TokenAnswer(access, ttl, token_scope, refresh)

    async def drain(self) -> None:
        """Wait for writes deferred past their answers (at shutdown, and in tests)."""
        await self._sign_ins.drain()

    async def _user_scopes(self, tx: TokensServiceTx, user: User) -> ScopeSet:
        roles = await user_roles(tx, user.org_id, user.id)
        return ScopeSet(s for role in roles.values() for s in role)

    @staticmethod
    def _narrow(granted: ScopeSet, requested: str | None) -> str:
        """The scope of a new token: what was asked, if it was granted; else all granted."""
        if not requested or not requested.strip():
            return " ".join(granted)
        try:
            wanted = normalise(requested.split())
        except ApiwardError as exc:
            raise InvalidScope(exc.message) from None
        missing = granted.first_missing(wanted)
        if missing is not None:
            raise InvalidScope(f"The scope {missing!r} exceeds what this credential may have.")
        return " ".join(wanted)

    def _event(
        self,
        org: str,
        env: str | None,
        type: str,
        context: RequestContext,
        user_id: str | None,
        *,
        credential: str | None = None,
        target_id: str | None = None,
        data: dict[str, object] | None = None,
    ) -> AuditEvent:
        return new_event(
            type,
            self._clock.now(),
            context,
            org_id=org,
            environment=env,
            actor_user_id=user_id,
            actor_credential_id=credential,
            target_type="user" if target_id else None,
            target_id=target_id,
            data=data,
        )

    # client credentials (RFC 6749 section 4.4) ------------------------------------------

    async def authenticate_client(
        self, client_id: str, secret: str, *, ip: str | None, basic: bool = False
    ) -> OAuthClient:
        """The client, or ``InvalidClient`` (the same answer for unknown id and wrong
        secret). Every failure counts against the address's budget of failed
        authentications, as a failed key does; past it the answer is ``RateLimited``.

        Every door that takes a client's secret (the token endpoint, revocation,
        introspection) authenticates here, so each refuses alike a revoked or expired
        client and one whose user or portal account is disabled (docs/authority.md,
        "Disabled means disabled")."""
        try:
            return await self._client(client_id, secret, basic)
        except InvalidClient:
            await self.client_failed(ip)
            raise

    async def client_failed(self, ip: str | None) -> None:
        """A client failed to authenticate from ``ip`` (wherever it did: unknown id,
        wrong secret, malformed credentials); ``RateLimited`` past the budget."""
        await self._failed(ip, "client")

    async def _client(self, client_id: str, secret: str, basic: bool) -> OAuthClient:
        failure = InvalidClient(
            "Client authentication failed: unknown client or wrong secret.", basic=basic
        )
        if not client_id or not secret or len(client_id) > 64 or len(secret) > 256:
            raise failure
        key = client_cache_key(client_id)
        client = self._cache.get(key)
        if client is None:
            since = self._cache.epoch
            client = await self._flights.share(
                key, since, lambda: find_client(self._store, client_id)
            )
            if client is None:
                self._cache.set_unknown(key, since=since)
            else:
                self._cache.set(key, client, org=client.org_id, since=since)
        presented = digest(secret)
        stored = client.secret_digest if isinstance(client, OAuthClient) else "0" * 64
        if not hmac.compare_digest(presented, stored) or not isinstance(client, OAuthClient):
            raise failure
        now = self._clock.now()
        if client.revoked_at is not None:
            raise InvalidClient("This client has been revoked.", basic=basic)
        if client.expires_at is not None and client.expires_at <= now:
            raise InvalidClient("This client has expired.", basic=basic)
        if not await self._acts(client.org_id, client.acting_user_id):
            raise InvalidClient("The user this client acts for is disabled.", basic=basic)
        return client

    async def client_credentials(
        self,
        client_id: str,
        secret: str,
        *,
        scope: str | None,
        context: RequestContext,
        basic: bool = False,
    ) -> TokenAnswer:
        client = await self._counted_client(client_id, secret, basic, context.ip)
        token_scope = self._narrow(ScopeSet(client.scopes), scope)
        self._verifications.count(
            client.org_id, client.environment, "VALID", client_id=client.id, route=TOKEN_ROUTE
        )
        self._usage.record("client:" + client.id, self._clock.now(), context.ip)
        access, ttl = self._access_token(
            sub=client.id,
            org=client.org_id,
            env=client.environment,
            uid=client.acting_user_id,
            scope=token_scope,
            client_id=client.id,
            client=client,
        )
        return TokenAnswer(access, ttl, token_scope)

    @staticmethod
    async def _require_active(tx: TokensServiceTx, org_id: str, user_id: str) -> None:
        if not await is_active(tx, await tx.get_user(org_id, user_id)):
            raise InvalidClient("The user this client acts for is disabled.")

    async def _counted_client(
        self, client_id: str, secret: str, basic: bool, ip: str | None
    ) -> OAuthClient:
        """``authenticate_client``, with a refusal also counted for the analytics."""
        try:
            return await self._client(client_id, secret, basic)
        except InvalidClient as exc:
            self._verifications.count(None, None, outcome_of(exc), route=TOKEN_ROUTE)
            await self.client_failed(ip)
            raise

    # token exchange: entity-user tokens (RFC 8693) -----------------------------------

    async def exchange(
        self,
        client_id: str,
        secret: str,
        *,
        subject_token: str,
        subject_token_type: str,
        space_id: str | None,
        scope: str | None,
        context: RequestContext,
        basic: bool = False,
    ) -> TokenAnswer:
        client = await self._counted_client(client_id, secret, basic, context.ip)
        self._verifications.count(
            client.org_id, client.environment, "VALID", client_id=client.id, route=TOKEN_ROUTE
        )
        if not ScopeSet(client.scopes).grants(EXCHANGE_SCOPE):
            raise UnauthorizedClient(
                f"This client lacks the {EXCHANGE_SCOPE!r} scope needed for token exchange."
            )
        if subject_token_type != USER_ID_TOKEN_TYPE:
            raise InvalidRequest(f"subject_token_type must be {USER_ID_TOKEN_TYPE}.")
        async with self._store.begin() as tx:
            await self._require_active(tx, client.org_id, client.acting_user_id)
            user = await tx.get_user(client.org_id, subject_token)
            if user is None or not await is_active(tx, user):
                raise InvalidGrant("The subject user does not exist in this organisation.")
            space = (
                await tx.get_space(client.org_id, space_id)
                if space_id
                else await tx.default_space(client.org_id)
            )
            if space is None or space.archived_at is not None:
                raise InvalidRequest(f"Space {space_id!r} does not exist or is archived.")
            roles = await user_roles(tx, client.org_id, user.id)
            if user.id != client.acting_user_id:
                # Acting for another user needs that user's whole authority.
                actor = Authority.of(
                    client_grant(client), await user_roles(tx, client.org_id, client.acting_user_id)
                )
                excess = actor.excess(user_authority(roles, actor))
                if excess is not None:
                    raise UnauthorizedClient(
                        f"This client may not act for user {user.id}: {excess.reason}. A "
                        "client acts only for users who hold no more than its own authority."
                    )
        role = roles.get(space.id) or roles.get(None)
        if role is None:
            raise InvalidGrant(f"The user has no role in space {space.id}.")
        role = role.intersect(ScopeSet(client.scopes))
        token_scope = self._narrow(role, scope)
        access, ttl = self._access_token(
            sub=user.id,
            org=client.org_id,
            env=client.environment,
            uid=user.id,
            scope=token_scope,
            client_id=client.id,
            space=space.id,
            act={"sub": client.id},
            client=client,
        )
        return TokenAnswer(access, ttl, token_scope, issued_token_type=ACCESS_TOKEN_TYPE)

    # refresh (RFC 6749 section 6, and /v1/auth/refresh) ---------------------------------

    async def refresh(
        self, token: str, *, scope: str | None, context: RequestContext
    ) -> TokenAnswer:
        """A fresh pair for a refresh token. One that is malformed or was never issued
        counts against the address's failure limit, as a made-up key does."""
        try:
            return await self._refresh(token, scope=scope, context=context)
        except _NotARefreshToken:
            await self._failed(context.ip, "refresh")
            raise

    async def _refresh(
        self, token: str, *, scope: str | None, context: RequestContext
    ) -> TokenAnswer:
        if not token:
            raise InvalidRequest("Send the refresh_token.")
        try:
            parsed = self._refresh_fmt.parse(token)
        except AuthenticationError:
            raise _NotARefreshToken() from None
        now = self._clock.now()
        reuse: RefreshToken | None = None
        async with self._revoking(now) as (tx, revoke):
            record = await tx.find_refresh_for_update(parsed.digest)
            if record is None:
                raise _NotARefreshToken()
            if record.revoked_at is not None:
                raise InvalidGrant("The refresh token has been revoked. Sign in again.")
            if record.used_at is not None:
                if now - record.used_at <= self.settings.grace and record.answer_sealed:
                    return self._reopen(record)
                if now - record.used_at <= self.settings.retry and record.answer_sealed:
                    retried = await self._retry(tx, record, now, context)
                    if retried is not None:
                        return retried
                reuse = record
                await revoke("family", record.family_id)
                await tx.insert_audit(
                    self._event(
                        record.org_id,
                        record.environment,
                        "refresh_token.reuse_detected",
                        context,
                        record.user_id,
                        target_id=record.user_id,
                        data={"family_id": record.family_id},
                    )
                )
            else:
                if record.expires_at <= now:
                    raise InvalidGrant("The refresh token has expired. Sign in again.")
                if not await is_active(tx, await tx.get_user(record.org_id, record.user_id)):
                    raise InvalidGrant("The account behind this refresh token is disabled.")
                token_scope = self._narrow(ScopeSet(record.scope.split()), scope)
                successor, answer, sealed = self._next_pair(record, token_scope, record)
                self._verifications.count(
                    record.org_id,
                    record.environment,
                    "VALID",
                    client_id=record.client_id,
                    route=REFRESH_ROUTE,
                )
                await tx.insert_refresh(successor)
                await tx.update_refresh(_used(record, now, successor.id, sealed))
                return answer
        assert reuse is not None
        raise InvalidGrant(
            "The refresh token was already used. The session has been revoked; sign in again."
        )

    async def _retry(
        self, tx: TokensServiceTx, record: RefreshToken, now: datetime, context: RequestContext
    ) -> TokenAnswer | None:
        """A used token presented again after the grace window, whose answer the client
        may never have received: while the successor that answer held was never used
        (nor revoked, nor expired), the family is rotated again from this token. A new
        successor goes to the caller, and the earlier one becomes a tripwire (used, with
        no answer kept): a client that lost its answer never held it, and if anyone did
        (the client, when the caller is a thief replaying the used token, or the thief,
        when the caller is the client), presenting it revokes the whole family. The new
        successor expires when the earlier one would have, and the window is counted
        from this token's first use. None: not a retry (reuse)."""
        try:
            earlier = self._reopen(record)
        except InvalidGrant:
            return None
        if earlier.refresh_token is None:
            return None
        successor = await tx.find_refresh_for_update(
            self._refresh_fmt.parse(earlier.refresh_token).digest
        )
        if (
            successor is None
            or successor.used_at is not None
            or successor.revoked_at is not None
            or successor.expires_at <= now
        ):
            return None
        if not await is_active(tx, await tx.get_user(successor.org_id, successor.user_id)):
            raise InvalidGrant("The account behind this refresh token is disabled.")
        fresh, answer, sealed = self._next_pair(successor, successor.scope, record)
        fresh = replace(fresh, expires_at=successor.expires_at)
        await tx.insert_refresh(fresh)
        await tx.update_refresh(replace(successor, used_at=now))  # the tripwire
        await tx.update_refresh(replace(record, successor_id=fresh.id, answer_sealed=sealed))
        await tx.insert_audit(
            self._event(
                record.org_id,
                record.environment,
                "refresh_token.retried",
                context,
                record.user_id,
                target_id=record.user_id,
                data={"family_id": record.family_id},
            )
        )
        return answer

    def _next_pair(
        self, after: RefreshToken, scope: str, used: RefreshToken
    ) -> tuple[RefreshToken, TokenAnswer, str]:
        """A refresh token following ``after`` in its family with an access token for
        ``scope``: the new record, the answer, and the answer sealed for the ``used``
        token's row (where a repeat within the grace window finds it)."""
        successor, plaintext = self._new_refresh(
            family=after.family_id,
            org=after.org_id,
            env=after.environment,
            user=after.user_id,
            scope=scope,
            client_id=after.client_id,
            space=after.space_id,
        )
        access, ttl = self._access_token(
            sub=after.user_id,
            org=after.org_id,
            env=after.environment,
            uid=after.user_id,
            scope=scope,
            client_id=after.client_id or PASSWORD_CLIENT,
            space=after.space_id,
            sid=after.family_id,
        )
        answer = TokenAnswer(access, ttl, scope, plaintext)
        sealed = self._sealer.seal(json.dumps(answer.as_dict()).encode(), _ANSWER_CONTEXT + used.id)
        return successor, answer, sealed

    def _reopen(self, record: RefreshToken) -> TokenAnswer:
        assert record.answer_sealed is not None
        try:
            data = json.loads(self._sealer.open(record.answer_sealed, _ANSWER_CONTEXT + record.id))
        except SealError:
            raise InvalidGrant("The refresh token was already used.") from None
        return TokenAnswer(
            data["access_token"], data["expires_in"], data["scope"], data.get("refresh_token")
        )

    # revocation (RFC 7009) and introspection (RFC 7662) --------------------------------

    async def revoke(
        self,
        token: str,
        hint: str | None,
        context: RequestContext,
        *,
        owner: tuple[str, str] | None = None,
    ) -> None:
        """Revoke an access or refresh token. Unknown tokens are ignored (RFC 7009 2.2),
        and so, when a client authenticated (``owner``: its organisation and
        environment), are tokens of another organisation or environment."""
        now = self._clock.now()
        if jwt_tokens.looks_like_jwt(token):
            claims = self._claims(token, allow_expired=True)
            if claims is None or (owner is not None and not _owns(owner, claims.org, claims.env)):
                return
            until = datetime.fromtimestamp(claims.exp, now.tzinfo)
            async with self._revoking(now) as (_, revoke):
                await revoke("jti", claims.jti, max(until, now))
            return
        try:
            parsed = self._refresh_fmt.parse(token)
        except AuthenticationError:
            return
        async with self._revoking(now) as (tx, revoke):
            record = await tx.find_refresh_for_update(parsed.digest)
            if record is None or (
                owner is not None and not _owns(owner, record.org_id, record.environment)
            ):
                return
            await revoke("family", record.family_id)
            await tx.insert_audit(
                self._event(
                    record.org_id,
                    record.environment,
                    "session.revoked",
                    context,
                    record.user_id,
                    target_id=record.user_id,
                    data={"family_id": record.family_id},
                )
            )

    def _claims(self, token: str, *, allow_expired: bool = False) -> jwt_tokens.AccessClaims | None:
        try:
            return jwt_tokens.verify(
                token,
                self._keyring.keys,
                issuer=self.settings.issuer,
                audience=self.settings.audience,
                now=0 if allow_expired else self._clock.now().timestamp(),
            )
        except (jwt_tokens.TokenInvalid, jwt_tokens.TokenExpired):
            return None

    async def introspect(self, org_id: str, environment: str, token: str) -> dict[str, Any]:
        """RFC 7662: what a token is, for a caller of the same organisation and
        environment only (a test credential never sees a live token)."""
        inactive: dict[str, Any] = {"active": False}
        if jwt_tokens.looks_like_jwt(token):
            claims = self._claims(token)
            if (
                claims is None
                or self.revocations.revoked(claims)
                or not _owns((org_id, environment), claims.org, claims.env)
            ):
                return inactive
            return {
                "active": True,
                "scope": claims.scope,
                "client_id": claims.client_id,
                "sub": claims.sub,
                "exp": claims.exp,
                "iat": claims.iat,
                "iss": claims.iss,
                "aud": claims.aud,
                "jti": claims.jti,
                "token_type": "Bearer",
                "org_id": claims.org,
                "environment": claims.env,
                **({"space_id": claims.space} if claims.space else {}),
            }
        try:
            parsed = self._refresh_fmt.parse(token)
        except AuthenticationError:
            return inactive
        async with self._store.begin() as tx:
            record = await tx.find_refresh_for_update(parsed.digest)
        now = self._clock.now()
        if (
            record is None
            or not _owns((org_id, environment), record.org_id, record.environment)
            or record.revoked_at
            or record.used_at
            or record.expires_at <= now
        ):
            return inactive
        return {
            "active": True,
            "scope": record.scope,
            "sub": record.user_id,
            "client_id": record.client_id or PASSWORD_CLIENT,
            "exp": int(record.expires_at.timestamp()),
            "iat": int(record.created_at.timestamp()),
            "token_type": "refresh_token",
            "org_id": record.org_id,
            "environment": record.environment,
        }

    async def revoke_client_tokens(self, client: OAuthClient) -> None:
        """A revoked client's access tokens stop working at once, though still signed."""
        async with self._revoking(self._clock.now()) as (_, revoke):
            await revoke("client", client.id)

    async def end_sessions(self, org_id: str, user_id: str) -> int:
        """Revoke every session of a user (after a password change, say)."""
        async with self._revoking(self._clock.now()) as (tx, revoke):
            families = await tx.user_families(org_id, user_id)
            for family in families:
                await revoke("family", family)
        return len(families)

    @asynccontextmanager
    async def _revoking(self, now: datetime) -> AsyncIterator[tuple[TokensServiceTx, Revoke]]:
        """A transaction, and the one way to revoke in it: ``revoke(kind, value, until)``
        writes the revocation the guard of every process loads (until the access tokens
        it concerns have expired: one access-token lifetime by default), the
        invalidation that makes them reload it and, for a session (``family``), the end
        of its refresh tokens. This process holds the revocations once they committed."""
        done: list[tuple[str, str]] = []

        async def revoke(kind: str, value: str, until: datetime | None = None) -> None:
            if kind == "family":
                await tx.revoke_family(value, now)
            await tx.insert_revocation(kind, value, now, until or now + self.settings.access_ttl)
            await tx.insert_invalidation("revocation", f"{kind}:{value}", now)
            done.append((kind, value))

        async with self._store.begin() as tx:
            yield tx, revoke
        for kind, value in done:
            self.revocations.add(kind, value)

    async def load_revocations(self) -> None:
        async with self._store.begin() as tx:
            self.revocations.replace(await tx.active_revocations(self._clock.now()))


def _owns(caller: tuple[str, str], org_id: str, environment: str) -> bool:
    """Whether a caller of this organisation and environment may see a token of
    ``org_id`` and ``environment`` (``visible_in``: a test caller never sees a live one)."""
    return caller[0] == org_id and visible_in(environment, caller[1])


def _used(record: RefreshToken, at: datetime, successor: str, sealed: str) -> RefreshToken:
    return replace(record, used_at=at, successor_id=successor, answer_sealed=sealed)
