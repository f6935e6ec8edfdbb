"""Key verification with 1,000,000 keys against 10,000, and memory under a bounded cache.

    .venv/bin/python -m bench.scale --store sqlite|postgres [--keys 1000000] [--sample 5000]

1. **Load.** A fresh database (a temporary SQLite file, or the ``apiward_scale``
   database on the local PostgreSQL, dropped and created) is filled through the bulk
   path: orgs, environments, spaces, users and memberships by ``executemany`` on the
   schema's tables, keys by ``Transaction.insert_keys_bulk`` (one ``executemany`` a
   batch), 10,000 rows a transaction. Plaintexts are not drawn from ``secrets``: key
   ``i``'s random part is a keyed BLAKE2b of ``i`` mapped onto the deployment's
   alphabet, then written with its ``KeyFormat`` (prefix, tag, CRC32 checksum), so any
   key can be rebuilt from its number and every one passes the offline check. Per
   10 keys there is one user and per 100 keys one organisation (100,000 users and
   10,000 orgs at 1M), each user a ``developer`` of its org.
2. **Measure** at 10,000 keys, then grow the same database to ``--keys`` and measure
   again, through ``Runtime.auth.authenticate_key`` (the hot path of every request,
   no HTTP), on ``--sample`` keys drawn at random from all keys loaded so far:

   - *cold key*: the key's cache entry is dropped before each call, so each call is
     one look-up by the unique digest index (the acting user's roles and spaces stay
     cached, as they do for every other key of the same user);
   - *cold all*: the whole cache is cleared before each call (key, user, roles,
     spaces: about six queries);
   - *warm*: everything cached, no I/O.

   The target (docs/architecture.md section 6): p50 and p99 with 1M keys within 1.2x of
   those with 10k.
3. **Memory.** With the cache bounded at ``cache_max_entries`` (100,000 by default),
   verify that many distinct keys (the cache is full), then as many again: the entry
   count stays at the bound and the process's RSS (``VmRSS``) stays where it was.

Prints a table and writes ``bench/results/scale-<store>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import math
import os
import random
import resource
import sqlite3
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from apiward.adapters.runtime import Runtime, build
from apiward.adapters.settings import Settings
from apiward.adapters.storage import tables as t
from apiward.core.errors import ApiwardError
from apiward.core.keys import KeyFormat
from apiward.core.models import ApiKey, RequestContext
from bench.common import RESULTS, SECRET, machine, workdir

SMALL = 10_000
BATCH = 10_000
KEYS_PER_USER = 10
USERS_PER_ORG = 10
TARGET_RATIO = 1.2
SEED = b"apiward-bench-scale"
POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
POSTGRES_SCALE = "postgresql+asyncpg://postgres@127.0.0.1:5432/apiward_scale"
SMALL_SCHEMA = "small"  # the 10k-key copy, beside the big one in the same database
ROLE = "developer"
SCOPES = ("things:read",)


def rss_mb() -> float:
    """The process's resident set size now (VmRSS), in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return peak_rss_mb()


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


# the population -----------------------------------------------------------------------


def org_id(o: int) -> str:
    return f"org_{o:020d}"


def space_id(o: int) -> str:
    return f"spc_{o:020d}"


def user_id(u: int) -> str:
    return f"usr_{u:020d}"


def key_id(i: int) -> str:
    return f"key_{i:020d}"


class KeyMaker:
    """Key ``i``'s plaintext, in the deployment's format, from ``i`` alone (fast)."""

    def __init__(self, fmt: KeyFormat) -> None:
        self.fmt = fmt
        size = len(fmt.alphabet)
        self._table = bytes.maketrans(
            bytes(range(256)), bytes(ord(fmt.alphabet[b % size]) for b in range(256))
        )
        self._blocks = math.ceil(fmt.random_length / 64)
        self.environments = [env for env, _ in fmt.env_tags]
        self._heads = [fmt.display_prefix(env) for env in self.environments]

    def environment(self, i: int) -> str:
        """Four keys in five in the first environment (live), the rest in the last."""
        return self.environments[0 if i % 5 else -1]

    def plaintext(self, i: int) -> str:
        env_index = 0 if i % 5 else len(self.environments) - 1
        seed = i.to_bytes(8, "big")
        raw = b"".join(
            hashlib.blake2b(seed + bytes([b]), key=SEED, digest_size=64).digest()
            for b in range(self._blocks)
        )
        body = (
            self._heads[env_index] + raw[: self.fmt.random_length].translate(self._table).decode()
        )
        return body + self.fmt._checksum(body)


@dataclass
class Loaded:
    keys: int = 0
    users: int = 0
    orgs: int = 0
    stages: list[dict[str, Any]] = field(default_factory=list)


async def executemany(runtime: Runtime, table: Any, rows: Iterator[dict[str, Any]]) -> int:
    """Insert ``rows`` into ``table``, BATCH rows a statement and a transaction."""
    count = 0
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            async with runtime.sql.engine.begin() as conn:
                await conn.execute(table.insert(), batch)
            count += len(batch)
            batch = []
    if batch:
        async with runtime.sql.engine.begin() as conn:
            await conn.execute(table.insert(), batch)
        count += len(batch)
    return count


async def grow(runtime: Runtime, maker: KeyMaker, loaded: Loaded, keys: int) -> dict[str, Any]:
    """Add orgs, users and keys until there are ``keys`` keys; returns the timings."""
    now = datetime.now(UTC)
    users = math.ceil(keys / KEYS_PER_USER)
    orgs = math.ceil(users / USERS_PER_ORG)
    first_org, first_user, first_key = loaded.orgs, loaded.users, loaded.keys
    envs = maker.environments
    start = time.perf_counter()
    rows = await executemany(
        runtime,
        t.orgs,
        ({"id": org_id(o), "name": f"Org {o}", "created_at": now} for o in range(first_org, orgs)),
    )
    rows += await executemany(
        runtime,
        t.environments,
        (
            {"id": f"env_{o:020d}{n}", "org_id": org_id(o), "name": env, "created_at": now}
            for o in range(first_org, orgs)
            for n, env in enumerate(envs)
        ),
    )
    rows += await executemany(
        runtime,
        t.spaces,
        (
            {
                "id": space_id(o),
                "org_id": org_id(o),
                "name": "Default",
                "is_default": True,
                "created_at": now,
            }
            for o in range(first_org, orgs)
        ),
    )
    rows += await executemany(
        runtime,
        t.users,
        (
            {
                "id": user_id(u),
                "org_id": org_id(u // USERS_PER_ORG),
                "email": f"user{u}@bench.test",
                "name": f"User {u}",
                "password_hash": None,
                "created_at": now,
            }
            for u in range(first_user, users)
        ),
    )
    rows += await executemany(
        runtime,
        t.memberships,
        (
            {
                "org_id": org_id(u // USERS_PER_ORG),
                "user_id": user_id(u),
                "space_id": "",
                "role": ROLE,
                "created_at": now,
            }
            for u in range(first_user, users)
        ),
    )
    tenancy_seconds = time.perf_counter() - start

    start = time.perf_counter()
    generating = 0.0
    for low in range(first_key, keys, BATCH):
        began = time.perf_counter()
        batch = []
        for i in range(low, min(low + BATCH, keys)):
            plaintext = maker.plaintext(i)
            user = user_id(i // KEYS_PER_USER)
            batch.append(
                ApiKey(
                    id=key_id(i),
                    org_id=org_id(i // KEYS_PER_USER // USERS_PER_ORG),
                    environment=maker.environment(i),
                    name=f"key {i}",
                    digest=hashlib.sha256(plaintext.encode()).hexdigest(),
                    prefix=plaintext[: plaintext.rindex("_") + 1],
                    last4=plaintext[-4:],
                    scopes=SCOPES,
                    created_by=user,
                    created_at=now,
                    updated_at=now,
                )
            )
        generating += time.perf_counter() - began
        async with runtime.store.begin() as tx:
            await tx.insert_keys_bulk(batch)
    key_seconds = time.perf_counter() - start
    if runtime.sql.engine.dialect.name == "postgresql":
        async with runtime.sql.engine.begin() as conn:
            await conn.exec_driver_sql("ANALYZE")
    stage = {
        "keys_total": keys,
        "users_total": users,
        "orgs_total": orgs,
        "key_rows": keys - first_key,
        "key_seconds": round(key_seconds, 2),
        "key_rows_per_second": round((keys - first_key) / key_seconds),
        "of_which_generating_seconds": round(generating, 2),
        "tenancy_rows": rows,
        "tenancy_seconds": round(tenancy_seconds, 2),
        "tenancy_rows_per_second": round(rows / tenancy_seconds) if rows else None,
    }
    loaded.keys, loaded.users, loaded.orgs = keys, users, orgs
    loaded.stages.append(stage)
    return stage


# measurements -------------------------------------------------------------------------


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000

    return {
        "p50_us": round(at(0.50), 1),
        "p99_us": round(at(0.99), 1),
        "mean_us": round(statistics.fmean(ordered) / 1000, 1),
        "n": len(ordered),
    }


async def timed(
    plaintexts: list[str], before: Callable[[str], None], call: Callable[[str], Awaitable[Any]]
) -> list[int]:
    out = []
    clock = time.perf_counter_ns
    for plaintext in plaintexts:
        before(plaintext)
        began = clock()
        await call(plaintext)
        out.append(clock() - began)
    return out


@dataclass
class Size:
    """One database at one size, its runtime, and its timed samples."""

    label: str
    runtime: Runtime
    maker: KeyMaker
    keys: int
    url: str
    loaded: Loaded = field(default_factory=Loaded)
    plaintexts: list[str] = field(default_factory=list)
    digests: dict[str, str] = field(default_factory=dict)
    cold_key: list[int] = field(default_factory=list)
    cold_all: list[int] = field(default_factory=list)
    warm: list[int] = field(default_factory=list)

    def draw(self, sample: int) -> None:
        indices = random.Random(self.keys).sample(range(self.keys), min(sample, self.keys))
        self.plaintexts = [self.maker.plaintext(i) for i in indices]
        self.digests = {p: hashlib.sha256(p.encode()).hexdigest() for p in self.plaintexts}

    def summary(self) -> dict[str, Any]:
        return {
            "keys": self.keys,
            "sample": len(self.plaintexts),
            "cold_key": percentiles(self.cold_key),
            "cold_all": percentiles(self.cold_all),
            "warm": percentiles(self.warm),
        }


async def measure_round(size: Size, chunk: list[str]) -> None:
    auth, cache = size.runtime.auth, size.runtime.cache
    ctx = RequestContext(ip="127.0.0.1", user_agent="bench", request_id="req-bench")
    digests = size.digests

    async def verify(plaintext: str) -> None:
        principal = await auth.authenticate_key(plaintext, ctx)
        assert principal.credential_id.startswith("key_")

    def nothing(_: str) -> None:
        return None

    def drop_key(plaintext: str) -> None:
        cache.invalidate(digests[plaintext])

    def drop_all(_: str) -> None:
        cache.clear()

    await timed(chunk, nothing, verify)  # the acting users' roles and spaces are cached
    size.cold_key += await timed(chunk, drop_key, verify)
    for _ in range(3):
        size.warm += await timed(chunk, nothing, verify)
    size.cold_all += await timed(chunk, drop_all, verify)  # last: it empties the cache
    size.runtime.usage.drain()


async def measure(sizes: list[Size], sample: int, rounds: int) -> None:
    """Interleave the sizes, a slice of each sample a round, so that the machine's
    load at any moment weighs on every size alike."""
    ctx = RequestContext(ip="127.0.0.1")
    for size in sizes:
        size.draw(sample)
        for plaintext in size.plaintexts[:200]:  # connections open, statements compiled
            await size.runtime.auth.authenticate_key(plaintext, ctx)
    for r in range(rounds):
        order = sizes if r % 2 == 0 else sizes[::-1]
        for size in order:
            await measure_round(size, size.plaintexts[r::rounds])


async def profile_cold(size: Size, calls: int = 2000) -> str | None:
    """A pyinstrument tree of cold-key verifications (skipped without pyinstrument)."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        return None
    ctx = RequestContext(ip="127.0.0.1")
    chunk = size.plaintexts[:calls]
    for plaintext in chunk:
        await size.runtime.auth.authenticate_key(plaintext, ctx)
    profiler = Profiler(interval=0.0002, async_mode="disabled")
    profiler.start()
    for plaintext in chunk:
        size.runtime.cache.invalidate(size.digests[plaintext])
        await size.runtime.auth.authenticate_key(plaintext, ctx)
    profiler.stop()
    text: str = profiler.output_text(unicode=True, color=False, show_all=False)
    return text


async def memory(runtime: Runtime, maker: KeyMaker, keys: int, factor: float) -> dict[str, Any]:
    """Verify ``bound`` distinct keys (the cache fills), then more: entries and RSS stay."""
    cache = runtime.cache
    bound = runtime.settings.cache_max_entries
    ctx = RequestContext(ip="127.0.0.1")
    cache.clear()
    gc.collect()
    points = [{"verified": 0, "entries": len(cache), "rss_mb": round(rss_mb(), 1)}]
    started = time.perf_counter()
    total = min(keys, int(bound * factor))
    verified = 0
    for stop in dict.fromkeys((min(bound, total), total)):
        for i in range(verified, stop):
            await runtime.auth.authenticate_key(maker.plaintext(i), ctx)
            if i % 10_000 == 9_999:
                runtime.usage.drain()  # what the server's periodic flush does
        verified = stop
        runtime.usage.drain()
        gc.collect()
        points.append({"verified": verified, "entries": len(cache), "rss_mb": round(rss_mb(), 1)})
    return {
        "cache_max_entries": bound,
        "distinct_keys_verified": verified,
        "exceeds_bound": verified > bound,
        "seconds": round(time.perf_counter() - started, 1),
        "points": points,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "note": "keys verified in key-number order: ten keys share an acting user, whose "
        "roles and spaces take entries of the same bounded cache",
    }


# databases ----------------------------------------------------------------------------


async def fresh_postgres() -> str:
    """``apiward_scale``, dropped and created, with an empty schema for the 10k copy."""
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_ADMIN)
    try:
        await conn.execute("DROP DATABASE IF EXISTS apiward_scale WITH (FORCE)")
        await conn.execute("CREATE DATABASE apiward_scale")
    finally:
        await conn.close()
    conn = await asyncpg.connect(POSTGRES_SCALE.replace("+asyncpg", ""))
    try:
        await conn.execute(f"CREATE SCHEMA {SMALL_SCHEMA}")
    finally:
        await conn.close()
    return POSTGRES_SCALE


async def runtime_for(url: str, bound: int, schema: str | None = None) -> Runtime:
    """A runtime as the server builds it; on PostgreSQL, optionally in another schema
    of the same database (the 10k-key copy lives beside the big one)."""
    runtime = build(settings_for(url, bound))
    if schema is not None:
        from sqlalchemy.ext.asyncio import create_async_engine

        await runtime.sql.engine.dispose()
        runtime.sql.engine = create_async_engine(
            url,
            pool_size=10,
            max_overflow=10,
            pool_pre_ping=True,
            pool_timeout=10,
            connect_args={"server_settings": {"search_path": schema}},
        )
    await runtime.start(background=False)
    return runtime


async def database_facts(size: Size) -> dict[str, Any]:
    engine = size.runtime.sql.engine
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            version = (await conn.exec_driver_sql("SHOW server_version")).scalar_one()
            table = (
                await conn.exec_driver_sql("SELECT pg_total_relation_size('api_keys')")
            ).scalar_one()
            buffers = (await conn.exec_driver_sql("SHOW shared_buffers")).scalar_one()
        return {
            "postgres": version,
            "api_keys_with_indexes_mb": round(table / 2**20),
            "shared_buffers": buffers,
        }
    path = Path(size.url.split(":///", 1)[1])
    size_mb = sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 2**20
    return {"sqlite": sqlite3.sqlite_version, "file_mb": round(size_mb)}


def settings_for(url: str, cache_max_entries: int) -> Settings:
    return Settings(
        database_url=url,
        secret_key=SECRET,
        log_level="warning",
        argon2_time_cost=1,
        argon2_memory_kib=1024,
        argon2_parallelism=1,
        last_used_flush_seconds=3600,
        invalidation_poll_seconds=3600,
        cache_ttl_seconds=3600,  # entries leave by the size bound, not by age, in this run
        cache_max_entries=cache_max_entries,
    )


async def run(store: str, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    total = args.keys
    bound = args.cache_max_entries or Settings.model_fields["cache_max_entries"].default
    if total < bound * args.memory_factor and args.cache_max_entries is None:
        bound = max(100, total // 4)  # a small run: shrink the bound so it is still exceeded
    if store == "postgres":
        url = await fresh_postgres()
        small_url, small_schema = url, SMALL_SCHEMA
    else:
        url = f"sqlite+aiosqlite:///{tmp / 'large.db'}"
        small_url, small_schema = f"sqlite+aiosqlite:///{tmp / 'small.db'}", None
    sizes: list[Size] = []
    result: dict[str, Any] = {}
    try:
        plan = ((min(SMALL, total), small_url, small_schema), (total, url, None))
        for keys, size_url, schema in plan:
            if sizes and keys == sizes[0].keys:
                break
            runtime = await runtime_for(size_url, bound, schema)
            size = Size(f"{keys:,}", runtime, KeyMaker(runtime.settings.key_format), keys, size_url)
            sizes.append(size)
            stage = await grow(runtime, size.maker, size.loaded, keys)
            print(
                f"loaded {keys:>9,} keys at {stage['key_rows_per_second']:,}/s "
                f"({stage['key_seconds']} s), {stage['tenancy_rows']:,} org/user rows at "
                f"{stage['tenancy_rows_per_second'] or 0:,}/s",
                flush=True,
            )
        await measure(sizes, args.sample, args.rounds)
        result["load"] = [s.loaded.stages[0] for s in sizes]
        result["measurements"] = [s.summary() for s in sizes]
        result["database"] = [await database_facts(s) for s in sizes]
        large = sizes[-1]
        if args.profile:
            result["profile_cold_key"] = await profile_cold(large)
        for size in sizes[:-1]:
            await size.runtime.stop()
        sizes = [large]
        if not args.skip_memory:
            result["memory"] = await memory(large.runtime, large.maker, total, args.memory_factor)
    finally:
        for size in sizes:
            await size.runtime.stop()
    return result


def ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    small, large = rows[0], rows[-1]
    out = {}
    for kind in ("cold_key", "cold_all", "warm"):
        for stat in ("p50_us", "p99_us"):
            out[f"{kind}_{stat[:3]}"] = round(large[kind][stat] / small[kind][stat], 3)
    return out


def report(store: str, result: dict[str, Any]) -> None:
    rows = result["measurements"]
    print(f"\nverification through Runtime.auth.authenticate_key, {store}, µs per call")
    print(f"{'keys':>10} {'path':<10}{'p50':>9}{'p99':>9}{'mean':>9}{'n':>8}")
    for row in rows:
        for kind in ("cold_key", "cold_all", "warm"):
            r = row[kind]
            print(
                f"{row['keys']:>10,} {kind:<10}{r['p50_us']:>9.1f}{r['p99_us']:>9.1f}"
                f"{r['mean_us']:>9.1f}{r['n']:>8}"
            )
    if len(rows) > 1:
        print(f"\n{rows[-1]['keys']:,} / {rows[0]['keys']:,} keys (target <= {TARGET_RATIO}x):")
        for name, value in result["ratios"].items():
            mark = "ok" if value <= TARGET_RATIO else "OVER"
            print(f"  {name:<14}{value:>6.2f}x  {mark}")
    for stage in result["load"]:
        print(
            f"load {stage['keys_total']:,} keys: {stage['key_seconds']} s, "
            f"{stage['key_rows_per_second']:,} rows/s ({stage['of_which_generating_seconds']} s "
            f"of it generating); {stage['tenancy_rows']:,} org/user rows in "
            f"{stage['tenancy_seconds']} s"
        )
    for facts in result["database"]:
        print(f"database: {facts}")
    if result.get("profile_cold_key"):
        print(f"\ncold-key verifications, {rows[-1]['keys']:,} keys, pyinstrument:")
        print(result["profile_cold_key"])
    mem = result.get("memory")
    if mem:
        print(f"\nmemory, cache bound {mem['cache_max_entries']:,} entries:")
        for p in mem["points"]:
            print(
                f"  after {p['verified']:>9,} distinct keys: {p['entries']:>9,} entries, "
                f"RSS {p['rss_mb']:,.1f} MB"
            )
        print(f"  peak RSS {mem['peak_rss_mb']:,.1f} MB ({mem['seconds']} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=5000, help="keys timed per size")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds")
    parser.add_argument(
        "--cache-max-entries",
        type=int,
        default=None,
        help="cache bound for the memory step (default: the setting's, 100,000)",
    )
    parser.add_argument(
        "--memory-factor",
        type=float,
        default=1.5,
        help="distinct keys verified in the memory step, as a multiple of the bound",
    )
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument(
        "--profile", action="store_true", help="pyinstrument tree of cold-key verifications"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: results)")
    args = parser.parse_args()
    if args.keys < 1 or args.sample < 1 or args.rounds < 1:
        parser.error("--keys, --sample and --rounds must be positive")
    started = time.perf_counter()
    with workdir() as tmp:
        try:
            result = asyncio.run(run(args.store, tmp, args))
        except ApiwardError as exc:
            sys.exit(f"bench.scale: {exc.message}")
    result["target_ratio"] = TARGET_RATIO
    if len(result["measurements"]) > 1:
        result["ratios"] = ratios(result["measurements"])
        for stat in ("p50", "p99"):
            result[f"target_met_{stat}"] = all(
                result["ratios"][f"{kind}_{stat}"] <= TARGET_RATIO for kind in ("cold_key", "warm")
            )
    result["setup"] = {
        **machine(),
        "store": args.store,
        "keys": args.keys,
        "sample": args.sample,
        "rounds": args.rounds,
        "batch": BATCH,
        "keys_per_user": KEYS_PER_USER,
        "users_per_org": USERS_PER_ORG,
        "load_average_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "seconds_total": round(time.perf_counter() - started, 1),
    }
    report(args.store, result)
    out = args.out or RESULTS / f"scale-{args.store}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\n{result['setup']['seconds_total']} s in all; results: {out}")


if __name__ == "__main__":
    main()
