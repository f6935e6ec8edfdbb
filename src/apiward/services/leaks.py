"""Leaked-credential response: a reported secret is checked offline, then revoked at once.

Reports come from GitHub's secret scanning partner program (``POST /v1/leaks/github``:
a JSON array of ``{token, type, url, source}`` signed with ECDSA P-256 / SHA-256 over
the raw body, the signing key named by ``Github-Public-Key-Identifier``) or from an
operator (``apiward keys report-leak``). For each token:

1. its format and checksum are checked offline with this deployment's key formats
   (API keys ``{prefix}_``, client secrets ``{prefix}cs_``, refresh tokens
   ``{prefix}rt_``); anything else, another deployment's keys included, is a false
   positive and nothing is looked up;
2. the credential is found by its SHA-256 digest; none is a false positive;
3. a live credential is revoked through the ordinary services (a key is revoked; a
   client secret revokes its client and its access tokens; a refresh token revokes its
   session), on the authority of the organisation's owner, as the CLI acts; then a
   ``key.leaked`` audit event records the URL, the source and whether this report
   revoked it. The audit events are what webhooks deliver (``key.revoked``,
   ``key.leaked``).

The answer labels every reported token ``true_positive`` (a credential of this
deployment, revoked now or before) or ``false_positive``, GitHub's feedback format.
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import structlog
from cryptography.exceptions import InvalidSignature as BadSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from apiward.core import jsontext
from apiward.core.clock import Clock
from apiward.core.errors import (
    ApiwardError,
    AuthenticationError,
    InvalidInput,
    InvalidSignature,
)
from apiward.core.keys import MAX_KEY_LENGTH, KeyFormats, digest
from apiward.core.models import AuditFilter, PageRequest, Principal, RequestContext
from apiward.core.readings import Reading
from apiward.services.audit import new_event
from apiward.services.clients import Clients
from apiward.services.keys import Keys
from apiward.services.ports import (
    AuditTx,
    CredentialsTx,
    Store,
    TokensTx,
)
from apiward.services.tokens import Tokens


class LeaksTx(CredentialsTx, TokensTx, AuditTx, Protocol):
    """What handling a leaked-credential report touches."""


log = structlog.get_logger("apiward.leaks")

TRUE_POSITIVE = "true_positive"
FALSE_POSITIVE = "false_positive"
MAX_TOKENS = 1000
GITHUB_REPORTER = "github-secret-scanning"

Operator = Callable[[str, str], Awaitable[Principal]]


@dataclass(frozen=True, slots=True)
class LeakReport:
    token: str
    type: str = ""
    url: str | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class LeakVerdict:
    report: LeakReport
    label: str
    kind: str | None = None
    """``api_key``, ``oauth_client`` or ``refresh_token`` for a true positive."""
    credential_id: str | None = None
    org_id: str | None = None
    revoked: bool = False
    """Whether this report revoked it (False: it was revoked already)."""


@dataclass(frozen=True, slots=True)
class _Found:
    org_id: str
    environment: str
    id: str
    """The key's or client's id; a refresh token's session (family) id."""
    live: bool


@dataclass(frozen=True, slots=True)
class LeakFormats:
    key: KeyFormats
    client: KeyFormats
    refresh: KeyFormats
    imported_prefixes: tuple[str, ...] = ()
    """Prefixes of keys imported from another system: no checksum, digest look-up only."""


def load_public_keys(pems: Mapping[str, str]) -> dict[str, ec.EllipticCurvePublicKey]:
    """The reporters' public keys by identifier; ``ValueError`` for anything but P-256."""
    keys: dict[str, ec.EllipticCurvePublicKey] = {}
    for key_id, pem in pems.items():
        try:
            key = load_pem_public_key(pem.encode())
        except (ValueError, TypeError) as exc:
            raise ValueError(f"leak report public key {key_id!r} is not a PEM public key") from exc
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise ValueError(f"leak report public key {key_id!r} is not an ECDSA P-256 key")
        keys[key_id] = key
    return keys


def verify_report(
    keys: Mapping[str, ec.EllipticCurvePublicKey],
    key_id: str | None,
    signature: str | None,
    body: bytes,
) -> None:
    """Check GitHub's ``ECDSA-NIST-P256V1-SHA256`` signature (base64 DER) of the raw body."""
    if not key_id or not signature:
        raise InvalidSignature(
            "Send the Github-Public-Key-Identifier and Github-Public-Key-Signature headers."
        )
    key = keys.get(key_id)
    if key is None:
        if not keys:
            raise InvalidSignature(
                "Leak reports are not accepted: no public key is configured "
                "(APIWARD_LEAK_REPORT_PUBLIC_KEYS)."
            )
        raise InvalidSignature(f"Unknown public key identifier {key_id[:80]!r}.")
    try:
        raw = base64.b64decode(signature.strip(), validate=True)
        key.verify(raw, body, ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, ValueError, BadSignature):
        raise InvalidSignature("The signature does not match the body.") from None


def _text(item: Mapping[str, object], name: str, limit: int) -> str | None:
    value = item.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"Each match's {name!r} must be a string.")
    return value[:limit]


def parse_reports(body: bytes) -> list[LeakReport]:
    """GitHub's body: a JSON array of ``{token, type, url, source}`` objects."""
    try:
        data = jsontext.load(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput(
            "The body is not valid JSON (nested at most "
            f"{jsontext.MAX_DEPTH} levels): send an array of matches."
        ) from None
    if not isinstance(data, list):
        raise InvalidInput("The body must be a JSON array of {token, type, url, source}.")
    if len(data) > MAX_TOKENS:
        raise InvalidInput(f"Send at most {MAX_TOKENS} matches in one report.")
    reports = []
    for item in data:
        if not isinstance(item, dict):
            raise InvalidInput("Each match must be an object {token, type, url, source}.")
        token = item.get("token")
        if not isinstance(token, str) or not token:
            raise InvalidInput("Each match needs a non-empty string 'token'.")
        reports.append(
            LeakReport(
                token=token[:1024],
                type=_text(item, "type", 200) or "",
                url=_text(item, "url", 2048),
                source=_text(item, "source", 100),
            )
        )
    return reports


class Leaks:
    def __init__(
        self,
        store: Store[LeaksTx],
        clock: Clock,
        keys: Keys,
        clients: Clients,
        tokens: Tokens,
        operator: Operator,
        formats: LeakFormats,
        public_keys: Mapping[str, str] | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._keys = keys
        self._clients = clients
        self._tokens = tokens
        self._operator = operator
        self._formats = formats
        self.public_keys = load_public_keys(public_keys or {})
        self.labels: Counter[str] = Counter()
        """Reported tokens by label, for metrics."""

    def readings(self) -> list[Reading]:
        return [
            Reading.counts(
                "leak_reports",
                "Reported leaked tokens, by label (true_positive, false_positive).",
                ("label",),
                self.labels,
            )
        ]

    def verify(self, key_id: str | None, signature: str | None, body: bytes) -> None:
        verify_report(self.public_keys, key_id, signature, body)

    def _identify(self, token: str) -> tuple[str, str] | None:
        """``(kind, digest)`` when the token has the shape and checksum of ours."""
        fmts = self._formats
        for kind, fmt in (
            ("api_key", fmts.key),
            ("oauth_client", fmts.client),
            ("refresh_token", fmts.refresh),
        ):
            try:
                return kind, fmt.parse(token).digest
            except AuthenticationError:
                continue
        if (
            fmts.imported_prefixes
            and token.startswith(fmts.imported_prefixes)
            and token.isascii()
            and len(token) <= MAX_KEY_LENGTH
        ):
            return "api_key", digest(token)
        return None

    async def report(
        self, reports: Sequence[LeakReport], context: RequestContext, *, reporter: str
    ) -> list[LeakVerdict]:
        """Label every reported token; revoke the live credentials among them."""
        seen: dict[str, LeakVerdict] = {}
        verdicts = []
        for report in reports:
            earlier = seen.get(report.token)
            verdict = (
                replace(earlier, report=report)
                if earlier
                else await self._one(report, context, reporter)
            )
            seen[report.token] = verdict
            verdicts.append(verdict)
            self.labels[verdict.label] += 1
        return verdicts

    async def _find(self, kind: str, token_digest: str) -> _Found | None:
        async with self._store.begin() as tx:
            if kind == "api_key":
                key = await tx.find_key_by_digest(token_digest)
                if key is None:
                    return None
                return _Found(key.org_id, key.environment, key.id, key.revoked_at is None)
            if kind == "oauth_client":
                client = await tx.find_client_by_secret(token_digest)
                if client is None:
                    return None
                return _Found(
                    client.org_id, client.environment, client.id, client.revoked_at is None
                )
            token = await tx.find_refresh_for_update(token_digest)
            if token is None:
                return None
            return _Found(
                token.org_id, token.environment, token.family_id, token.revoked_at is None
            )

    async def _one(self, report: LeakReport, context: RequestContext, reporter: str) -> LeakVerdict:
        identified = self._identify(report.token)
        found = None if identified is None else await self._find(*identified)
        if identified is None or found is None:
            return LeakVerdict(report, FALSE_POSITIVE)
        verdict = LeakVerdict(report, TRUE_POSITIVE, identified[0], found.id, found.org_id)
        if found.live:
            try:
                await self._revoke(verdict, found.environment, context, reporter)
                verdict = replace(verdict, revoked=True)
            except ApiwardError as exc:
                log.error(
                    "leaked_credential_not_revoked",
                    kind=verdict.kind,
                    id=found.id,
                    error=exc.message,
                )
        await self._record(verdict, found.environment, context, reporter)
        return verdict

    async def _record(
        self, verdict: LeakVerdict, environment: str, context: RequestContext, reporter: str
    ) -> None:
        report = verdict.report
        assert verdict.org_id is not None
        event = new_event(
            "key.leaked",
            self._clock.now(),
            context,
            org_id=verdict.org_id,
            environment=environment,
            actor_credential_id=reporter,
            target_type=verdict.kind,
            target_id=verdict.credential_id,
            data={
                "url": report.url,
                "source": report.source,
                "token_type": report.type,
                "last4": report.token[-4:],
                "revoked": verdict.revoked,
                "reporter": reporter,
            },
        )
        async with self._store.begin() as tx:
            if not verdict.revoked and await self._reported_before(tx, verdict):
                return  # a replayed report (or one re-signed): recorded once per credential
            await tx.insert_audit(event)

    @staticmethod
    async def _reported_before(tx: LeaksTx, verdict: LeakVerdict) -> bool:
        assert verdict.org_id is not None
        flt = AuditFilter(type="key.leaked", target_id=verdict.credential_id)
        return (await tx.list_audit(verdict.org_id, flt, PageRequest(1, 1))).total > 0

    async def _revoke(
        self,
        verdict: LeakVerdict,
        environment: str,
        context: RequestContext,
        reporter: str,
    ) -> None:
        assert verdict.org_id is not None and verdict.credential_id is not None
        if verdict.kind == "refresh_token":
            await self._tokens.revoke(verdict.report.token, "refresh_token", context)
            return
        owner = await self._operator(verdict.org_id, environment)
        principal = replace(owner, credential_id=reporter, context=context)
        if verdict.kind == "api_key":
            await self._keys.revoke(principal, verdict.credential_id)
        else:
            await self._clients.revoke(principal, verdict.credential_id)
