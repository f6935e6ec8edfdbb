"""Importing keys by hash: validation per line, all-or-nothing, batches, duplicates,
and verification of the imported plaintexts, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from apiward.adapters.runtime import Runtime, build
from apiward.core.errors import InvalidCredential
from apiward.core.models import AuditFilter, PageRequest, Principal, RequestContext
from apiward.services.importing import (
    IMPORT_BATCH_SIZE,
    ImportReport,
    KeyImporter,
    LineInvalid,
    decode_hash,
)
from tests.conftest import fast_settings

pytestmark = pytest.mark.anyio

PREFIXES = ["sk_live_", "sk_test_"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def runtime(database_url: str) -> AsyncIterator[Runtime]:
    rt = build(fast_settings(database_url=database_url, imported_key_prefixes=PREFIXES))
    await rt.start(background=False)
    await rt.tenancy.bootstrap("Acme", "owner@acme.test", "correct horse battery")
    try:
        yield rt
    finally:
        await rt.stop()


def encode(plaintext: str, encoding: str = "hex") -> str:
    raw = hashlib.sha256(plaintext.encode()).digest()
    if encoding == "hex":
        return raw.hex()
    if encoding == "base64":
        return base64.b64encode(raw).decode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def line(plaintext: str, encoding: str = "hex", **fields: Any) -> str:
    item: dict[str, Any] = {
        "hash": encode(plaintext, encoding),
        "prefix": plaintext[:8],
        "last4": plaintext[-4:],
        "scopes": ["keys:read"],
        **fields,
    }
    if encoding != "hex":
        item["hash_encoding"] = encoding
    return json.dumps(item)


def source(*lines: str) -> Callable[[], list[str]]:
    return lambda: list(lines)


async def operator(runtime: Runtime, env: str = "live") -> Principal:
    return await runtime.operators.principal(None, env)


async def key_count(runtime: Runtime, env: str = "live") -> int:
    page = await runtime.keys.list_keys(await operator(runtime, env), PageRequest(1, 100))
    return page.total


# hashes -------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["hex", "base64", "base64url"])
def test_every_hash_encoding_becomes_the_hex_digest(encoding: str) -> None:
    expected = hashlib.sha256(b"sk_live_abc").hexdigest()
    assert decode_hash(encode("sk_live_abc", encoding), encoding) == expected


def test_padded_base64url_and_upper_case_hex_are_accepted() -> None:
    raw = hashlib.sha256(b"x").digest()
    assert decode_hash(base64.urlsafe_b64encode(raw).decode(), "base64url") == raw.hex()
    assert decode_hash(raw.hex().upper(), "hex") == raw.hex()


@pytest.mark.parametrize(
    ("value", "encoding", "words"),
    [
        ("abc", "hex", "64 hexadecimal"),
        (encode("x", "base64"), "hex", 'hash_encoding": "base64"'),
        (hashlib.md5(b"x").hexdigest(), "hex", "got 32 characters"),  # noqa: S324
        (encode("x", "base64").replace("=", "") + "==", "base64", "43 characters"),
        (encode("x", "base64url") + "+", "base64url", "base64url"),
        (encode("x"), "base32", "hash_encoding must be one of"),
        (12, "hex", "must be a string"),
    ],
)
def test_a_wrong_hash_says_what_is_expected(value: object, encoding: str, words: str) -> None:
    with pytest.raises(ValueError, match="hash") as caught:
        decode_hash(value, encoding)
    assert words in str(caught.value)


# the whole file is validated before anything is written --------------------------------


async def test_a_malformed_line_is_reported_with_its_number_and_nothing_is_imported(
    runtime: Runtime,
) -> None:
    before = await key_count(runtime)
    report = await runtime.importer.run(
        await operator(runtime),
        source(
            line("sk_live_one"),
            "",
            '{"hash": "nope", "prefix": "sk_live_", "scopes": ["keys:read"]}',
            line("sk_live_two"),
            "{not json",
            line("sk_live_three", scopes=["bad scope"], environment="prod"),
            line("sk_live_four", expires_at="2001-01-01T00:00:00Z"),
            line("sk_live_five", expires_at="2099-01-01T00:00:00"),
            line("sk_live_six", user_id="usr_nobody"),
            line("sk_live_seven", colour="blue"),
            line("sk_live_eight", scopes=[]),
            json.dumps({"hash": encode("sk_live_nine")}),
        ),
    )
    assert not report.ok
    assert report.imported == 0 and report.batches == 0
    errors = {e.line: e.message for e in report.error_lines}
    assert sorted(errors) == [3, 5, 6, 7, 8, 9, 10, 11, 12]
    assert report.errors == 9 and report.lines == 11
    assert "64 hexadecimal characters" in errors[3]
    assert "not valid JSON" in errors[5]
    assert "Invalid scope 'bad scope'" in errors[6] and "unknown environment 'prod'" in errors[6]
    assert "in the future" in errors[7]
    assert "time zone" in errors[8]
    assert "'usr_nobody' does not exist" in errors[9]
    assert "unknown field(s) 'colour'" in errors[10]
    assert "at least one scope" in errors[11]
    assert "prefix is required" in errors[12] and "scopes must be a list" in errors[12]
    assert await key_count(runtime) == before


async def test_imported_keys_verify_by_plaintext_and_keep_what_the_file_says(
    runtime: Runtime,
) -> None:
    expiry = datetime.now(UTC) + timedelta(days=30)
    owner = await operator(runtime)
    report = await runtime.importer.run(
        owner,
        source(
            line("sk_live_hexkey0001", name="ci", external_id="unkey_1"),
            line("sk_live_b64key0002", "base64", expires_at=expiry.isoformat()),
            line("sk_test_urlkey0003", "base64url", environment="test", user_id=owner.user_id),
        ),
    )
    assert report.ok and report.imported == 3 and report.batches == 1, report
    assert report.warnings == []
    ctx = RequestContext(ip="127.0.0.1")
    first = await runtime.auth.authenticate_key("sk_live_hexkey0001", ctx)
    second = await runtime.auth.authenticate_key("sk_live_b64key0002", ctx)
    third = await runtime.auth.authenticate_key("sk_test_urlkey0003", ctx)
    assert (first.environment, second.environment, third.environment) == ("live", "live", "test")
    assert first.grants("keys:read") and not first.grants("keys:write")
    key = await runtime.keys.get(owner, first.credential_id)
    assert (key.name, key.prefix, key.last4) == ("ci", "sk_live_", "0001")
    assert key.digest == hashlib.sha256(b"sk_live_hexkey0001").hexdigest()
    imported = await runtime.keys.get(owner, second.credential_id)
    # the operator's import: the expiry is the operator's, which the tenant may only tighten
    assert imported.expires_at == imported.operator_expires_at == expiry
    with pytest.raises(InvalidCredential):
        await runtime.auth.authenticate_key("sk_live_hexkey0002", ctx)


async def test_duplicates_in_the_file_and_in_the_store_are_skipped(runtime: Runtime) -> None:
    owner = await operator(runtime)
    first = await runtime.importer.run(owner, source(line("sk_live_a"), line("sk_live_b")))
    assert first.imported == 2
    again = await runtime.importer.run(
        owner,
        source(
            line("sk_live_a"), line("sk_live_c"), line("sk_live_c", "base64"), line("sk_live_b")
        ),
    )
    assert again.ok and again.imported == 1 and again.duplicates == 3
    assert [(d.line, d.reason) for d in again.duplicate_lines] == [
        (1, "a key with this hash is already stored"),
        (3, "same hash as line 2"),
        (4, "a key with this hash is already stored"),
    ]
    assert await key_count(runtime) == 3


async def test_batches_of_the_size_given_each_with_one_audit_event(runtime: Runtime) -> None:
    assert IMPORT_BATCH_SIZE == 1000
    importer = KeyImporter(
        runtime.store,
        runtime.cache,
        runtime.clock,
        runtime.settings.key_format,
        imported_prefixes=tuple(PREFIXES),
        batch_size=2,
    )
    owner = await operator(runtime)
    lines = [line(f"sk_live_{i:04d}", external_id=f"ext-{i}") for i in range(5)]
    report = await importer.run(owner, source(*lines))
    assert report.imported == 5 and report.batches == 3
    async with runtime.store.begin() as tx:
        events = await tx.list_audit(owner.org_id, AuditFilter(type="key.imported"), PageRequest())
    counts = sorted(cast(int, e.data["count"]) for e in events.items)
    assert counts == [1, 2, 2]
    external = sorted(
        k["external_id"] for e in events.items for k in cast(list[dict[str, str]], e.data["keys"])
    )
    assert external == [f"ext-{i}" for i in range(5)]
    for i in range(5):
        await runtime.auth.authenticate_key(f"sk_live_{i:04d}", RequestContext())


async def test_dry_run_counts_and_writes_nothing(runtime: Runtime) -> None:
    owner = await operator(runtime)
    report = await runtime.importer.run(
        owner, source(line("sk_live_x"), line("sk_live_x")), dry_run=True
    )
    assert report.ok and report.dry_run and report.imported == 1 and report.duplicates == 1
    assert await key_count(runtime) == 0


async def test_a_key_refused_before_its_import_is_accepted_right_after(runtime: Runtime) -> None:
    ctx = RequestContext()
    with pytest.raises(InvalidCredential):  # cached as unknown
        await runtime.auth.authenticate_key("sk_live_early", ctx)
    await runtime.importer.run(await operator(runtime), source(line("sk_live_early")))
    assert (await runtime.auth.authenticate_key("sk_live_early", ctx)).org_id


async def test_unlisted_prefixes_are_imported_with_a_warning(runtime: Runtime) -> None:
    report = await runtime.importer.run(
        await operator(runtime), source(line("rk_live_0001"), line("sk_live_0002"))
    )
    assert report.ok and report.imported == 2
    assert len(report.warnings) == 1 and "rk_live_" in report.warnings[0]


async def test_the_default_environment_is_the_one_asked_for(runtime: Runtime) -> None:
    report = await runtime.importer.run(
        await operator(runtime), source(line("sk_test_0001")), environment="test"
    )
    assert report.imported == 1
    principal = await runtime.auth.authenticate_key("sk_test_0001", RequestContext())
    assert principal.environment == "test"


async def test_a_failing_batch_keeps_the_earlier_ones_and_says_how_to_resume(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from apiward.adapters.storage.sql import SqlTransaction
    from apiward.core.errors import ServiceUnavailable

    importer = KeyImporter(
        runtime.store, runtime.cache, runtime.clock, runtime.settings.key_format, batch_size=2
    )
    real = SqlTransaction.insert_keys_bulk
    calls = 0

    async def flaky(self: SqlTransaction, keys: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ServiceUnavailable("The database is unreachable. Retry shortly.")
        await real(self, keys)

    monkeypatch.setattr(SqlTransaction, "insert_keys_bulk", flaky)
    owner = await operator(runtime)
    lines = source(*(line(f"sk_live_{i}") for i in range(5)))
    report: ImportReport = await importer.run(owner, lines)
    assert not report.ok and report.imported == 2
    assert report.failure is not None and "lines 3-4" in report.failure
    assert "run the same import again" in report.failure
    monkeypatch.setattr(SqlTransaction, "insert_keys_bulk", real)
    resumed = await importer.run(owner, lines)
    assert resumed.ok and resumed.imported == 3 and resumed.duplicates == 2


def test_line_errors_read_as_one_sentence_per_problem() -> None:
    problem = LineInvalid(["Invalid scope 'x y'.", "unknown environment 'prod'"])
    assert str(problem) == "Invalid scope 'x y'; unknown environment 'prod'"


def test_the_bulk_row_of_a_key_is_the_row_of_insert_key() -> None:
    from apiward.adapters.storage.sql.rows import bulk_key_values, key_values
    from apiward.core.limits import Credits, Refill
    from apiward.core.models import ApiKey, RateOverride

    now = datetime.now(UTC)
    key = ApiKey(
        id="key_1",
        org_id="org_1",
        environment="live",
        name="every field",
        digest="ab" * 32,
        prefix="sk_live_",
        last4="abcd",
        scopes=("keys:read", "things:*"),
        created_by="usr_1",
        created_at=now,
        updated_at=now,
        user_id="usr_2",
        expires_at=now + timedelta(days=1),
        ip_allow=("10.0.0.0/8",),
        space_allow=("spc_1",),
        api_version="2026-11-01",
        rate_limits=(RateOverride("per-key", "10/minute"),),
        credits=Credits(5, Refill(10, "monthly", 3)),
        operator_expires_at=now + timedelta(days=2),
        operator_ip_allow=("10.0.0.0/8",),
        operator_space_allow=None,
    )
    assert bulk_key_values(key) == key_values(key)
