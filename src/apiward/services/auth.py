"""Verifying a presented credential and turning it into a principal: the hot path.

One function serves every way of protecting an API. It accepts apiward API keys and
apiward access tokens (JWTs); a protected route tells them apart only by the principal's
``credential_kind``.

A warm verification does no I/O: the key's record (or the token's verified claims), the
acting user's roles and the org's spaces sit in a bounded in-process cache. Writes that
change any of them invalidate the cache at once in this process and, through the
store's invalidation log, in every other process within the poll interval.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from apiward.core import tokens as jwt_tokens
from apiward.core.analytics import WOULD_REFUSE, outcome_of
from apiward.core.authority import Grant, effective_scopes
from apiward.core.clock import Clock
from apiward.core.errors import (
    ApiwardError,
    AuthenticationError,
    DisabledCredential,
    ExpiredCredential,
    ExpiredToken,
    InsufficientScope,
    InvalidCredential,
    InvalidToken,
    IpNotAllowed,
    MissingCredential,
    MissingSpace,
    NoSpaceAccess,
    PermissionDenied,
    RateLimited,
    RevokedCredential,
    RevokedToken,
    ServiceUnavailable,
    SpaceNotAllowed,
    StoreSaturated,
    UnknownSpace,
)
from apiward.core.keys import MAX_KEY_LENGTH, KeyFormats, digest
from apiward.core.models import (
    ApiKey,
    CredentialKind,
    IPNetwork,
    OAuthClient,
    Principal,
    RequestContext,
)
from apiward.core.owners import EMPTY, Meta, empty, frozen
from apiward.core.scopes import ScopeSet
from apiward.services.addresses import AddressTally
from apiward.services.allowed import AllowedTally
from apiward.services.analytics import Verifications
from apiward.services.authority import is_active, key_grant, user_roles
from apiward.services.clients import client_cache_key, find_client
from apiward.services.flights import Flights
from apiward.services.ports import UNKNOWN, Cache, CredentialsTx, PortalTx, Store, TenancyTx
from apiward.services.revocations import Revocations
from apiward.services.scope_usage import ScopeTally
from apiward.services.usage import UsageRecorder

if TYPE_CHECKING:
    from apiward.services.limiting import RequestLimits
    from apiward.services.signing import Keyring


class AuthenticatorTx(TenancyTx, CredentialsTx, PortalTx, Protocol):
    """What verifying a credential reads: the key, its organisation, user and spaces."""


@dataclass(slots=True)
class Subject:
    """The user a credential acts as, as much as the guard needs to know of them."""

    active: bool
    roles: dict[str | None, ScopeSet]
    spaces: frozenset[str]
    default_space: str
    rate_tier: str | None = None


@dataclass(slots=True)
class VerifiedKey:
    """Everything needed to decide on a key without touching the store."""

    key: ApiKey
    subject: Subject
    networks: tuple[IPNetwork, ...]
    key_scopes: ScopeSet
    space_allow: frozenset[str]
    grant: Grant
    effective: dict[str, ScopeSet] = field(default_factory=dict)
    meta: Meta = field(default_factory=empty)
    """The key's ``meta``, read-only: what every principal of the key carries."""


@dataclass(slots=True)
class VerifiedToken:
    claims: jwt_tokens.AccessClaims
    subject: Subject
    token_scopes: ScopeSet
    grant: Grant
    effective: dict[str, ScopeSet] = field(default_factory=dict)
    external_id: str | None = None
    meta: Meta = field(default_factory=empty)
    """The ``external_id`` and ``meta`` of the token's OAuth client, as it was when the
    token was first verified (a change to them invalidates the organisation's records)."""


@dataclass(frozen=True, slots=True)
class KeyVerdict:
    """What the verify API answers of one key (``Authenticator.verify``)."""

    code: str
    """``VALID``, ``NOT_FOUND`` or the outcome of the refusal (``core.analytics``)."""
    message: str | None = None
    key: ApiKey | None = None
    """The key, when it is one of the caller's organisation and environment."""
    principal: Principal | None = None
    """Who the key acts as, when it is valid."""
    rate_limit: Mapping[str, str] = field(default_factory=dict)
    """The rate-limit header fields the decision produced (none when it was not limited)."""

    @property
    def valid(self) -> bool:
        return self.code == "VALID"


NOT_FOUND = KeyVerdict("NOT_FOUND", "No such key.")


def _effective(
    granted: ScopeSet, subject: Subject, space_id: str, memo: dict[str, ScopeSet]
) -> ScopeSet:
    """Credential scopes ∩ the acting user's role in the space (memoised per space), or
    ``NoSpaceAccess`` when the user has no role there."""
    cached = memo.get(space_id)
    if cached is None:
        role = subject.roles.get(space_id) or subject.roles.get(None)
        if role is None:
            raise NoSpaceAccess(space_id)
        cached = memo[space_id] = effective_scopes(granted, role)
    return cached


def _counted(context: RequestContext) -> str | None:
    return context.counted_route or context.route


def require_scopes(principal: Principal, scopes: tuple[str, ...] | list[str]) -> Principal:
    """The one scope check: a 403 naming the first scope the principal lacks."""
    missing = principal.scopes.first_missing(scopes)
    if missing is not None:
        raise InsufficientScope(missing)
    return principal


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
        store: Store[AuthenticatorTx],
        cache: Cache,
        clock: Clock,
        fmt: KeyFormats,
        usage: UsageRecorder,
        verifications: Verifications,
        limits: RequestLimits,
        keyring: Keyring,
        revocations: Revocations,
        *,
        issuer: str,
        audience: str,
        space_header: str = "Apiward-Space-Id",
        require_space: bool = False,
        default_version: str | None = None,
        imported_prefixes: tuple[str, ...] = (),
        scope_tally: ScopeTally | None = None,
        address_tally: AddressTally | None = None,
    ) -> None:
        self._imported_prefixes = imported_prefixes
        self.scope_tally = scope_tally if scope_tally is not None else ScopeTally()
        """The scopes allowed requests used (``apiward.services.scope_usage``)."""
        self.address_tally = address_tally if address_tally is not None else AddressTally()
        """The networks allowed requests came from (``apiward.services.addresses``)."""
        self.allowed = AllowedTally(verifications, self.scope_tally, self.address_tally)
        """Allowed requests, for the analytics, the scopes used and the networks."""
        self._store = store
        self._cache = cache
        self.flights = Flights()
        """Store reads shared by the requests that miss one record at once."""
        self._clock = clock
        self._fmt = fmt
        self._usage = usage
        self._verifications = verifications
        self._space_header = space_header
        self._require_space = require_space
        self._own_prefix = fmt.current.prefix + "_"
        self._default_version = default_version
        self._limits = limits
        """Rate limits and usage credits, spent by every authenticated request."""
        self._keyring = keyring
        """The keys apiward access tokens are verified with."""
        self._revocations = revocations
        self._issuer = issuer
        self._audience = audience

    async def acts(self, org_id: str, user_id: str) -> bool:
        """Whether the user may act through a credential now (neither it nor its portal
        account disabled), as keys and tokens are judged: from the cached subject, which
        a change to the user or the account invalidates in every process."""
        return (await self._subject(org_id, user_id)).active

    async def _subject(self, org_id: str, user_id: str) -> Subject:
        cache_key = f"user:{org_id}:{user_id}"
        cached = self._cache.get(cache_key)
        if isinstance(cached, Subject):
            return cached
        since = self._cache.epoch
        try:
            subject = await self.flights.share(
                cache_key, since, lambda: self._read_subject(org_id, user_id)
            )
        except StoreSaturated:
            raise  # an overloaded process, not an outage: nothing is served stale
        except ServiceUnavailable:
            stale = self._cache.stale(cache_key)
            if isinstance(stale, Subject):
                return stale
            raise
        self._cache.set(cache_key, subject, org=org_id, since=since)
        return subject

    async def _read_subject(self, org_id: str, user_id: str) -> Subject:
        async with self._store.begin() as tx:
            active = await is_active(tx, await tx.get_user(org_id, user_id))
            org = await tx.get_org(org_id)
            roles = await user_roles(tx, org_id, user_id)
            spaces = await tx.active_space_ids(org_id)
            default = await tx.default_space(org_id)
        return Subject(
            active=active,
            roles=roles,
            spaces=frozenset(spaces),
            default_space=default.id if default else "",
            rate_tier=org.rate_tier if org else None,
        )

    async def _load_key(self, key_digest: str) -> VerifiedKey | None:
        async with self._store.begin() as tx:
            key = await tx.find_key_by_digest(key_digest)
        if key is None:
            return None
        grant = key_grant(key)
        return VerifiedKey(
            key=key,
            subject=await self._subject(key.org_id, key.acting_user_id),
            networks=grant.networks,
            key_scopes=grant.scopes,
            space_allow=grant.spaces,
            grant=grant,
            meta=frozen(key.meta),
        )

    async def verified(self, plaintext: str) -> VerifiedKey:
        """The cached record of a key, or ``InvalidCredential``.

        A key starting with one of ``imported_prefixes`` (brought from another system by
        ``apiward keys import``) has no checksum of ours and is looked up by its digest
        alone; every other key passes the offline format and checksum check first, by the
        current format or an earlier one of this deployment.
        """
        if len(plaintext) <= MAX_KEY_LENGTH and plaintext.startswith(self._own_prefix):
            # A key seen before is in the cache under its digest, verified or known
            # unknown: only a first sight pays for the offline format check.
            seen = self._cache.get(digest(plaintext))
            if isinstance(seen, VerifiedKey):
                return seen
            if seen is UNKNOWN:
                raise InvalidCredential()
        if self._imported_prefixes and plaintext.startswith(self._imported_prefixes):
            if not plaintext.isascii() or len(plaintext) > MAX_KEY_LENGTH:
                raise InvalidCredential()
            key_digest = digest(plaintext)
        else:
            key_digest = self._fmt.parse(plaintext).digest
        entry = self._cache.get(key_digest)
        if entry is None:
            since = self._cache.epoch
            try:
                entry = await self.flights.share(
                    key_digest, since, lambda: self._load_key(key_digest)
                )
            except StoreSaturated:
                raise  # an overloaded process, not an outage: nothing is served stale
            except ServiceUnavailable:
                # The database is down: a key verified before the outage goes on working
                # for the deployment's serve-stale bound (docs/operations.md).
                entry = self._cache.stale(key_digest)
                if not isinstance(entry, VerifiedKey):
                    raise
                return entry
            if entry is None:
                self._cache.set_unknown(key_digest, since=since)
            else:
                self._cache.set(key_digest, entry, org=entry.key.org_id, since=since)
        if not isinstance(entry, VerifiedKey):
            raise InvalidCredential()
        return entry

    def _space(self, subject: Subject, context: RequestContext) -> str:
        """The space a request acts in: the one it names (which the settings may require)
        or the org's default; ``UnknownSpace`` unless it is an active space of the org."""
        if self._require_space and context.acts_in_space and not context.space_id:
            raise MissingSpace(self._space_header)
        space_id = context.space_id or subject.default_space
        if space_id not in subject.spaces:
            raise UnknownSpace(space_id, self._space_header)
        return space_id

    async def authenticate_key(self, plaintext: str, context: RequestContext) -> Principal:
        """Verify an API key for one request and return who is calling, spending
        nothing (``limited`` spends its rate limits and credits; ``authenticate`` is
        the whole of a protected request)."""
        return self._key_principal(await self.verified(plaintext), context)

    async def verify(
        self,
        caller: Principal,
        plaintext: str,
        context: RequestContext,
        scopes: tuple[str, ...] | list[str] = (),
    ) -> KeyVerdict:
        """The verify API: may the key ``plaintext`` make the request ``context``
        describes (as the ``caller``, a service of the key's organisation, asserts it),
        holding ``scopes``? When it may, its rate limits and credits are spent, as for
        a protected request. A key of another organisation, or of an environment the
        caller does not see, is ``NOT_FOUND`` like no key at all, and nothing of it is
        touched. Every answer is counted under ``context.counted_route``; a store that
        cannot answer for a key never seen is ``ServiceUnavailable``, not a verdict."""
        try:
            entry = await self.verified(plaintext)
        except AuthenticationError:
            entry = None
        if entry is None or not self._caller_sees(caller, entry.key):
            self._verifications.count(
                caller.org_id, caller.environment, NOT_FOUND.code, route=_counted(context)
            )
            return NOT_FOUND
        key = entry.key
        try:
            principal = self._key_principal(entry, context)
            require_scopes(principal, scopes)
            principal = await self.limited(entry, principal)
        except ApiwardError as exc:
            self._count_refusal(entry, context, exc)
            headers = exc.headers if isinstance(exc, RateLimited) else {}
            return KeyVerdict(outcome_of(exc), exc.message, key, rate_limit=headers)
        self.allowed.count(principal, scopes)
        for _ in principal.would_refuse:  # limits in report mode
            self._count(principal, WOULD_REFUSE)
        return KeyVerdict("VALID", key=key, principal=principal, rate_limit=principal.rate_limit)

    @staticmethod
    def _caller_sees(caller: Principal, key: ApiKey) -> bool:
        return key.org_id == caller.org_id and caller.sees(key.environment)

    async def limited(self, entry: VerifiedKey, principal: Principal) -> Principal:
        """Spend a key request's rate limits and credits."""
        key = entry.key
        credits_key = None
        if key.credits is not None:  # a rolled key spends its successor's balance
            credits_key = key.rolled_to or key.id
        return await self._limits.apply(
            principal,
            tier=entry.subject.rate_tier,
            overrides=key.rate_limits,
            credits_key=credits_key,
        )

    def _key_principal(self, entry: VerifiedKey, context: RequestContext) -> Principal:
        key = entry.key
        now = self._clock.now()
        if key.revoked_at is not None:
            raise RevokedCredential()
        if key.expires_at is not None and key.expires_at <= now:
            raise ExpiredCredential()
        if key.disabled_at is not None:
            raise DisabledCredential()
        if not entry.subject.active:
            raise DisabledCredential(
                "The user this API key acts as is disabled or was removed. "
                "Use a key of an active user."
            )
        if entry.networks:
            self._check_ip(entry.networks, context.ip)
        space_id = self._space(entry.subject, context)
        if entry.space_allow and space_id not in entry.space_allow:
            raise SpaceNotAllowed(space_id)
        scopes = _effective(entry.key_scopes, entry.subject, space_id, entry.effective)
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
            api_version=context.api_version or key.api_version or self._default_version,
            grant=entry.grant,
            external_id=key.external_id,
            meta=entry.meta,
        )

    async def _verified_token(self, token: str) -> VerifiedToken:
        cache_key = "jwt:" + hashlib.sha256(token.encode()).hexdigest()
        entry = self._cache.get(cache_key)
        now = self._clock.now().timestamp()
        if not isinstance(entry, VerifiedToken):
            since = self._cache.epoch
            try:
                claims = jwt_tokens.verify(
                    token, self._keyring.keys, issuer=self._issuer, audience=self._audience, now=now
                )
            except jwt_tokens.TokenExpired:
                raise ExpiredToken() from None
            except jwt_tokens.TokenInvalid:
                raise InvalidToken() from None
            scopes = ScopeSet(claims.scope.split())
            client = await self._client(claims.client_id)
            entry = VerifiedToken(
                claims,
                await self._subject(claims.org, claims.uid),
                scopes,
                Grant(
                    scopes,
                    frozenset({claims.env}),
                    frozenset({claims.space}) if claims.space else frozenset(),
                    expires_at=datetime.fromtimestamp(claims.cexp, UTC) if claims.cexp else None,
                ),
                external_id=client.external_id if client else None,
                meta=frozen(client.meta) if client else EMPTY,
            )
            self._cache.set(cache_key, entry, org=claims.org, since=since)
        return entry

    async def _client(self, client_id: str) -> OAuthClient | None:
        """The OAuth client a token was issued to (None for a token of no client), from
        the cache the token endpoint shares (``Tokens``), else the store."""
        if not client_id.startswith("client_"):
            return None
        cache_key = client_cache_key(client_id)
        client = self._cache.get(cache_key)
        if client is None:
            since = self._cache.epoch
            try:
                client = await self.flights.share(
                    cache_key, since, lambda: find_client(self._store, client_id)
                )
            except StoreSaturated:
                raise
            except ServiceUnavailable:
                client = self._cache.stale(cache_key)
                if not isinstance(client, OAuthClient):
                    raise
                return client
            if client is None:
                self._cache.set_unknown(cache_key, since=since)
            else:
                self._cache.set(cache_key, client, org=client.org_id, since=since)
        return client if isinstance(client, OAuthClient) else None

    def _token_principal(self, entry: VerifiedToken, context: RequestContext) -> Principal:
        claims = entry.claims
        if claims.exp <= self._clock.now().timestamp():
            raise ExpiredToken()
        if self._revocations.revoked(claims):
            raise RevokedToken()
        if not entry.subject.active:
            raise InvalidToken("The user this access token acts for is disabled.")
        asked = context
        if claims.space is not None:  # a token of one space (RFC 8693 exchange)
            if context.space_id not in (None, claims.space):
                raise SpaceNotAllowed(context.space_id or "")
            asked = replace(context, space_id=claims.space)
        context_space = self._space(entry.subject, asked)
        scopes = _effective(entry.token_scopes, entry.subject, context_space, entry.effective)
        is_client = claims.sub == claims.client_id
        return Principal(
            org_id=claims.org,
            environment=claims.env,
            space_id=context_space,
            user_id=claims.uid,
            scopes=scopes,
            credential_id=claims.client_id if is_client else (claims.sid or claims.jti),
            credential_kind=CredentialKind.ACCESS_TOKEN,
            context=context,
            client_id=claims.client_id if claims.client_id.startswith("client_") else None,
            api_version=context.api_version or self._default_version,
            grant=entry.grant,
            external_id=entry.external_id,
            meta=entry.meta,
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

    async def authenticate(
        self,
        authorization: str | None,
        context: RequestContext,
        *,
        exempt: bool = False,
        scopes: tuple[str, ...] | list[str] = (),
        report_scopes: tuple[str, ...] | list[str] = (),
    ) -> Principal:
        """The one authentication of every protected request: API key or access token,
        then the ``scopes`` it needs, then its rate limits and credits (unless the route
        is ``exempt``). A request refused on the way spends nothing. ``report_scopes``
        are required in report mode: a request lacking one is admitted, and counted as
        what that requirement would refuse (``WOULD_REFUSE``)."""
        known: VerifiedKey | VerifiedToken | None = None
        try:
            token = bearer_token(authorization)
            if jwt_tokens.looks_like_jwt(token):
                known = verified_token = await self._verified_token(token)
                principal = self._token_principal(verified_token, context)
            else:
                known = entry = await self.verified(token)
                principal = self._key_principal(entry, context)
        except AuthenticationError as exc:
            self._count_refusal(known, context, exc)
            await self._limits.authentication_failed(context.ip)
            raise
        except PermissionDenied as exc:
            self._count_refusal(known, context, exc)
            raise
        try:
            require_scopes(principal, scopes)
            if not exempt:
                if jwt_tokens.looks_like_jwt(token):
                    tier = verified_token.subject.rate_tier
                    principal = await self._limits.apply(principal, tier=tier)
                else:
                    principal = await self.limited(entry, principal)
        except (PermissionDenied, RateLimited) as exc:
            self._count_refusal(known, context, exc)
            raise
        self.allowed.count(principal, scopes)
        if report_scopes:
            principal = self.scopes_in_report(principal, report_scopes, counted=False)
        for _ in principal.would_refuse:
            self._count(principal, WOULD_REFUSE)
        return principal

    def scopes_in_report(
        self,
        principal: Principal,
        scopes: tuple[str, ...] | list[str],
        *,
        counted: bool = True,
    ) -> Principal:
        """``principal`` with the ``scopes`` it lacks noted as refusals a requirement in
        report mode would make (``scope:{scope}``), each counted ``WOULD_REFUSE`` unless
        the caller counts them (``counted=False``). Nothing is refused."""
        missing = tuple(f"scope:{s}" for s in scopes if not principal.scopes.grants(s))
        if not missing:
            return principal
        for name in missing:
            self._limits.count_would_refuse(name)
            if counted:
                self._count(principal, WOULD_REFUSE)
        return replace(principal, would_refuse=(*principal.would_refuse, *missing))

    def _count(self, principal: Principal, outcome: str) -> None:
        """One decision for the analytics: by key, or by the client behind a token."""
        is_key = principal.credential_kind is CredentialKind.API_KEY
        self._verifications.count(
            principal.org_id,
            principal.environment,
            outcome,
            key_id=principal.credential_id if is_key else None,
            client_id=principal.client_id,
            route=principal.context.counted_route or principal.context.route,
        )

    def _count_refusal(
        self, known: VerifiedKey | VerifiedToken | None, context: RequestContext, exc: ApiwardError
    ) -> None:
        """A refused decision, under what the credential tells: an unknown one under no
        organisation (the deployment's count)."""
        outcome = outcome_of(exc)
        if isinstance(known, VerifiedKey):
            key = known.key
            self._verifications.count(
                key.org_id, key.environment, outcome, key_id=key.id, route=_counted(context)
            )
        elif isinstance(known, VerifiedToken):
            claims = known.claims
            client = claims.client_id if claims.client_id.startswith("client_") else None
            self._verifications.count(
                claims.org, claims.env, outcome, client_id=client, route=_counted(context)
            )
        else:
            self._verifications.count(None, None, outcome, route=_counted(context))
