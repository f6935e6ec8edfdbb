"""Importing API keys from another system by their hashes, so nobody reissues keys.

The input is JSON Lines, one key a line::

    {"hash": "<SHA-256 of the plaintext key>", "hash_encoding": "hex",
     "prefix": "sk_live_", "last4": "abcd", "name": "ci", "scopes": ["things:read"],
     "environment": "live", "expires_at": "2030-01-01T00:00:00Z",
     "user_id": "usr_...", "external_id": "key_123"}

Only ``hash``, ``prefix`` and ``scopes`` are required. ``hash_encoding`` is ``hex``
(the default), ``base64`` or ``base64url``; the digest is stored as
apiward's own hex SHA-256, so an imported key is found exactly like a native one.

All or nothing for mistakes, batch by batch for writes:

1. every line is validated first (JSON, fields, scopes, environment, expiry, that the
   user exists), and when any line is wrong the report lists each one with its line
   number and **nothing is imported**;
2. then the keys are written in batches (1,000 rows a transaction), each with one
   ``key.imported`` audit event. A key whose hash is already stored, or repeats an
   earlier line, is skipped and counted as a duplicate.

Should a batch fail while writing (the database goes away), the batches before it stay
imported and the report says where it stopped; running the same file again resumes,
since what is already stored is skipped as duplicates.

Imported keys keep their original spelling (``sk_live_...``), which has no apiward
checksum: the server accepts them only when their prefix is listed in the
``imported_key_prefixes`` setting (see ``Authenticator``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from apiward.core import times
from apiward.core.clock import Clock
from apiward.core.errors import ApiwardError, InvalidInput
from apiward.core.ids import new_id
from apiward.core.keys import KeyFormat
from apiward.core.models import ApiKey, Principal
from apiward.services.audit import audit_event
from apiward.services.authority import BOUNDED, check_credential, key_grant, operator_bounds
from apiward.services.keys import check_expiry, credential_scopes, effective_environment
from apiward.services.ports import AuditTx, Cache, CredentialsTx, InvalidationsTx, Store, TenancyTx
from apiward.services.tenancy import check_name


class ImporterTx(CredentialsTx, TenancyTx, AuditTx, InvalidationsTx, Protocol):
    """What a bulk import of keys touches."""


IMPORT_BATCH_SIZE = 1000
MAX_LISTED = 1000
"""Errors and duplicates listed one by one in a report (all of them are counted)."""

DEFAULT_NAME = "imported key"
HASH_ENCODINGS = ("hex", "base64", "base64url")
FIELDS = frozenset(
    {
        "hash",
        "hash_encoding",
        "prefix",
        "last4",
        "name",
        "scopes",
        "environment",
        "expires_at",
        "user_id",
        "external_id",
    }
)
MAX_PREFIX = 64
MAX_EXTERNAL_ID = 200
_PRINTABLE = frozenset(string.ascii_letters + string.digits + string.punctuation)
_HEX = re.compile(r"[0-9a-fA-F]{64}")
_B64 = re.compile(r"[A-Za-z0-9+/]{43}=?")
_B64URL = re.compile(r"[A-Za-z0-9_-]{43}=?")

Source = Callable[[], Iterable[str | bytes]]
"""Returns the file's lines each time it is called (the file is read twice)."""


@dataclass(frozen=True, slots=True)
class ImportedKey:
    """One valid line of an import file."""

    line: int
    digest: str
    prefix: str
    last4: str
    name: str
    scopes: tuple[str, ...]
    environment: str
    expires_at: datetime | None = None
    user_id: str | None = None
    external_id: str | None = None


@dataclass(frozen=True, slots=True)
class LineError:
    line: int
    message: str


@dataclass(frozen=True, slots=True)
class Duplicate:
    line: int
    reason: str


class LineInvalid(ValueError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(p.rstrip(".") for p in problems))


@dataclass
class ImportReport:
    """What an import did: counts, and the lines it refused or skipped."""

    dry_run: bool = False
    lines: int = 0
    """Non-blank lines read."""
    imported: int = 0
    """Keys written (with ``dry_run``: that would be written)."""
    duplicates: int = 0
    errors: int = 0
    batches: int = 0
    error_lines: list[LineError] = field(default_factory=list)
    duplicate_lines: list[Duplicate] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    failure: str | None = None
    """Why writing stopped part-way (earlier batches stay imported)."""

    @property
    def ok(self) -> bool:
        return self.errors == 0 and self.failure is None

    def error(self, line: int, message: str) -> None:
        self.errors += 1
        if len(self.error_lines) < MAX_LISTED:
            self.error_lines.append(LineError(line, message))

    def duplicate(self, line: int, reason: str) -> None:
        self.duplicates += 1
        if len(self.duplicate_lines) < MAX_LISTED:
            self.duplicate_lines.append(Duplicate(line, reason))

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "dry_run": self.dry_run,
            "lines": self.lines,
            "imported": self.imported,
            "duplicates": self.duplicates,
            "errors": self.errors,
            "batches": self.batches,
            "error_lines": [{"line": e.line, "message": e.message} for e in self.error_lines],
            "duplicate_lines": [{"line": d.line, "reason": d.reason} for d in self.duplicate_lines],
            "warnings": self.warnings,
            "failure": self.failure,
        }


def decode_hash(value: object, encoding: object) -> str:
    """A SHA-256 digest given as hex, base64 or base64url, as apiward stores it (hex)."""
    if encoding not in HASH_ENCODINGS:
        raise ValueError(f"hash_encoding must be one of {', '.join(HASH_ENCODINGS)}")
    if not isinstance(value, str):
        raise ValueError("hash must be a string")
    if encoding == "hex":
        if _HEX.fullmatch(value):
            return value.lower()
        hint = ""
        if _B64.fullmatch(value) or _B64URL.fullmatch(value):
            hint = ' (it looks like base64: add "hash_encoding": "base64" or "base64url")'
        raise ValueError(
            f"hash must be a SHA-256 digest in 64 hexadecimal characters; got {len(value)} "
            f"characters{hint}"
        )
    pattern = _B64 if encoding == "base64" else _B64URL
    if not pattern.fullmatch(value):
        raise ValueError(
            f"hash must be a SHA-256 digest in {encoding}: 43 characters of its alphabet and "
            f"an optional '='; got {len(value)} characters"
        )
    altchars = b"-_" if encoding == "base64url" else None
    try:
        raw = base64.b64decode(value.rstrip("=") + "=", altchars=altchars, validate=True)
    except binascii.Error as exc:  # pragma: no cover - the pattern already guarantees it
        raise ValueError(f"hash is not valid {encoding}: {exc}") from None
    return raw.hex()


def _text(item: dict[str, Any], name: str, problems: list[str]) -> str | None:
    value = item.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(f"{name} must be a string")
        return None
    return value


def _printable(value: str) -> bool:
    return all(c in _PRINTABLE for c in value)


def parse_line(
    raw: str | bytes,
    line: int,
    *,
    principal: Principal,
    default_environment: str,
    environments: tuple[str, ...],
    now: datetime,
) -> ImportedKey:
    """Validate one line; raises ``LineInvalid`` listing every problem found in it."""
    try:
        item = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise LineInvalid([f"not valid JSON ({exc})"]) from None
    if not isinstance(item, dict):
        raise LineInvalid(['must be a JSON object, e.g. {"hash": ..., "prefix": ...}'])
    problems: list[str] = []
    unknown = sorted(set(item) - FIELDS)
    if unknown:
        problems.append(
            f"unknown field(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(FIELDS))}"
        )

    key_digest = ""
    if "hash" not in item:
        problems.append("hash is required (the SHA-256 of the plaintext key)")
    else:
        try:
            key_digest = decode_hash(item["hash"], item.get("hash_encoding", "hex"))
        except ValueError as exc:
            problems.append(str(exc))

    prefix = item.get("prefix")
    if prefix is None:
        problems.append('prefix is required: how the keys start, e.g. "sk_live_"')
    elif not (isinstance(prefix, str) and 1 <= len(prefix) <= MAX_PREFIX and _printable(prefix)):
        problems.append(f"prefix must be 1 to {MAX_PREFIX} printable ASCII characters")

    last4 = _text(item, "last4", problems) or ""
    if len(last4) > 4 or not _printable(last4):
        problems.append("last4 must be at most 4 printable ASCII characters")

    name = DEFAULT_NAME
    given_name = _text(item, "name", problems)
    if given_name is not None:
        try:
            name = check_name(given_name, "key")
        except InvalidInput as exc:
            problems.append(exc.message)

    scopes: list[str] = []
    raw_scopes = item.get("scopes")
    if not isinstance(raw_scopes, list) or not all(isinstance(s, str) for s in raw_scopes):
        problems.append('scopes must be a list of strings, e.g. ["things:read"]')
    else:
        try:
            scopes = credential_scopes(raw_scopes, "An imported key")
        except ApiwardError as exc:
            problems.append(exc.message)

    environment = _text(item, "environment", problems) or default_environment
    if environment not in environments:
        problems.append(
            f"unknown environment {environment!r}; use one of: {', '.join(environments)}"
        )
    else:
        try:
            effective_environment(principal, environment)
        except ApiwardError as exc:
            problems.append(exc.message)

    expires_at = None
    raw_expiry = _text(item, "expires_at", problems)
    if raw_expiry is not None:
        try:
            expires_at = times.instant(raw_expiry, name="expires_at", zoned=True)
            check_expiry(expires_at, now)
        except InvalidInput as exc:
            problems.append(exc.message)

    user_id = _text(item, "user_id", problems)

    external_id = item.get("external_id")
    if external_id is not None:
        if isinstance(external_id, bool) or not isinstance(external_id, str | int):
            problems.append("external_id must be a string")
        elif not 1 <= len(str(external_id)) <= MAX_EXTERNAL_ID:
            problems.append(f"external_id must be 1 to {MAX_EXTERNAL_ID} characters")
        external_id = str(external_id)

    if problems:
        raise LineInvalid(problems)
    assert isinstance(prefix, str)
    return ImportedKey(
        line=line,
        digest=key_digest,
        prefix=prefix,
        last4=last4,
        name=name,
        scopes=tuple(scopes),
        environment=environment,
        expires_at=expires_at,
        user_id=user_id,
        external_id=external_id,
    )


class KeyImporter:
    """``apiward keys import``: validate a whole file, then write it in batches."""

    def __init__(
        self,
        store: Store[ImporterTx],
        cache: Cache,
        clock: Clock,
        fmt: KeyFormat,
        *,
        imported_prefixes: tuple[str, ...] = (),
        batch_size: int = IMPORT_BATCH_SIZE,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._store = store
        self._cache = cache
        self._clock = clock
        self._fmt = fmt
        self._environments = tuple(env for env, _ in fmt.env_tags)
        self._imported_prefixes = imported_prefixes
        self._batch_size = batch_size

    def _lines(
        self, principal: Principal, source: Source, environment: str, now: datetime
    ) -> Iterable[tuple[int, ImportedKey | LineInvalid]]:
        for number, raw in enumerate(source(), 1):
            if not raw.strip():
                continue
            try:
                yield (
                    number,
                    parse_line(
                        raw,
                        number,
                        principal=principal,
                        default_environment=environment,
                        environments=self._environments,
                        now=now,
                    ),
                )
            except LineInvalid as exc:
                yield number, exc

    async def run(
        self,
        principal: Principal,
        source: Source,
        *,
        environment: str | None = None,
        dry_run: bool = False,
    ) -> ImportReport:
        env = environment or principal.environment
        now = self._clock.now()
        report = ImportReport(dry_run=dry_run)
        users: dict[str, list[int]] = {}
        unlisted: set[str] = set()
        for number, parsed in self._lines(principal, source, env, now):
            report.lines += 1
            if isinstance(parsed, LineInvalid):
                report.error(number, str(parsed))
                continue
            if parsed.user_id is not None:
                users.setdefault(parsed.user_id, []).append(number)
            if not self._accepted(parsed.prefix):
                unlisted.add(parsed.prefix)
        await self._check_users(principal, users, report)
        if report.errors:
            report.error_lines.sort(key=lambda e: e.line)
            return report
        if unlisted:
            shown = ", ".join(sorted(unlisted)[:10])
            report.warnings.append(
                f"keys with the prefix(es) {shown} are refused until the server lists them "
                "in APIWARD_IMPORTED_KEY_PREFIXES"
            )
        await self._write(principal, source, env, now, report)
        report.duplicate_lines.sort(key=lambda d: d.line)
        return report

    def _accepted(self, prefix: str) -> bool:
        """Whether a server with this configuration would accept keys of ``prefix``."""
        if prefix.startswith(f"{self._fmt.prefix}_"):
            return True  # apiward's own format (another apiward instance)
        return any(prefix.startswith(p) or p.startswith(prefix) for p in self._imported_prefixes)

    async def _check_users(
        self, principal: Principal, users: dict[str, list[int]], report: ImportReport
    ) -> None:
        if not users:
            return
        async with self._store.begin() as tx:
            for user_id, lines in users.items():
                user = await tx.get_user(principal.org_id, user_id)
                problem = None
                if user is None:
                    problem = f"user {user_id!r} does not exist in this organisation"
                elif user.disabled_at is not None:
                    problem = f"user {user_id!r} is disabled"
                if problem:
                    for line in lines:
                        report.error(line, problem)

    async def _write(
        self,
        principal: Principal,
        source: Source,
        env: str,
        now: datetime,
        report: ImportReport,
    ) -> None:
        seen: dict[bytes, int] = {}
        batch: list[ImportedKey] = []
        for number, parsed in self._lines(principal, source, env, now):
            if isinstance(parsed, LineInvalid):
                report.failure = (
                    f"line {number} became invalid while importing (was the file changed?): "
                    f"{parsed}"
                )
                break
            raw_digest = bytes.fromhex(parsed.digest)
            first = seen.setdefault(raw_digest, number)
            if first != number:
                report.duplicate(number, f"same hash as line {first}")
                continue
            batch.append(parsed)
            if len(batch) >= self._batch_size:
                if not await self._flush(principal, batch, now, report):
                    break
                batch = []
        else:
            if batch:
                await self._flush(principal, batch, now, report)
        if report.imported and not report.dry_run:
            # A key presented before it was imported may sit in the caches as unknown:
            # every process forgets its unknown credentials (and the org's records) once.
            self._cache.invalidate_org(principal.org_id)
            self._cache.forget_unknown()
            try:
                async with self._store.begin() as tx:
                    await tx.insert_invalidation("org", principal.org_id, now)
                    await tx.insert_invalidation("unknown", "", now)
            except ApiwardError as exc:
                report.warnings.append(
                    f"other server processes were not told to drop their caches ({exc.message}); "
                    "a key refused just before it was imported is accepted once the cache "
                    "entry expires (APIWARD_CACHE_TTL_SECONDS)"
                )

    async def _flush(
        self, principal: Principal, batch: list[ImportedKey], now: datetime, report: ImportReport
    ) -> bool:
        try:
            async with self._store.begin() as tx:
                stored = await tx.existing_key_digests([k.digest for k in batch])
                fresh = [k for k in batch if k.digest not in stored]
                for k in batch:
                    if k.digest in stored:
                        report.duplicate(k.line, "a key with this hash is already stored")
                if not fresh:
                    return True
                keys = [self._key(principal, k, now) for k in fresh]
                for key in keys:  # the CLI's operator covers every key; the rule is kept
                    what = "An imported key"
                    await check_credential(tx, principal, key_grant(key), key.acting_user_id, what)
                if not report.dry_run:
                    await tx.insert_keys_bulk(keys)
                    await tx.insert_audit(
                        audit_event(
                            principal,
                            "key.imported",
                            now,
                            target_type="api_key",
                            data={
                                "count": len(keys),
                                "lines": [fresh[0].line, fresh[-1].line],
                                "keys": [
                                    {"id": key.id, "external_id": k.external_id}
                                    if k.external_id is not None
                                    else {"id": key.id}
                                    for key, k in zip(keys, fresh, strict=True)
                                ],
                            },
                        )
                    )
        except ApiwardError as exc:
            report.failure = (
                f"writing the batch of lines {batch[0].line}-{batch[-1].line} failed: "
                f"{exc.message} The {report.imported} key(s) before it are imported; run the "
                "same import again to continue (what is stored is skipped)."
            )
            return False
        report.imported += len(keys)
        report.batches += 1
        return True

    @staticmethod
    def _key(principal: Principal, k: ImportedKey, now: datetime) -> ApiKey:
        key = ApiKey(
            id=new_id("key"),
            org_id=principal.org_id,
            environment=k.environment,
            name=k.name,
            digest=k.digest,
            prefix=k.prefix,
            last4=k.last4,
            scopes=k.scopes,
            created_by=principal.user_id,
            created_at=now,
            updated_at=now,
            user_id=k.user_id,
            expires_at=k.expires_at,
        )
        return operator_bounds(principal, key, BOUNDED)
