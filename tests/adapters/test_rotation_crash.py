"""Lost answers are recoverable across a crash. ``apiward serve --workers 2`` is killed
(``kill -9``, the supervisor and every worker at once) while refreshes are in flight,
some of them committed but never answered; started again on the same database, every
client presents the refresh token it holds, past the grace window, and gets a pair whose
access token authenticates: no session is revoked, no reuse recorded.

The kill is aimed: the processes are frozen (SIGSTOP) at random moments of the storm and,
once the database holds a refresh whose client is still waiting for its answer, killed
frozen, so that answer is never sent. Which refreshes committed is read from the database
after the kill, and the test requires at least one committed and unanswered."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass

import httpx
import jwt
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from apiward.adapters.http.app import create_app
from apiward.adapters.runtime import build
from apiward.adapters.storage.tables import audit_events, refresh_tokens
from tests.conftest import fast_settings
from tests.live import ServerProcess, serve, spawn_server

SESSIONS = 36
BATCHES = 8
"""Storms on one server before the test gives up finding a committed, unanswered refresh."""
CRASHES = 3
"""Servers killed before the test gives up (a kill that lands as an answer reaches its
client loses none)."""
GRACE = 1.0
SERVER_ENV = {"APIWARD_WORKERS": "2", "APIWARD_REFRESH_GRACE_SECONDS": str(GRACE)}
EMAIL, PASSWORD = "owner@acme.test", "correct horse battery"


@dataclass
class Session:
    family: str
    held: str
    """The refresh token the client holds: the first one, or the successor it received."""
    answered: bool = False
    outcome: str = ""


def client() -> httpx.AsyncClient:
    # A new connection per request: an idle kept-alive one may be closed as a frozen
    # worker wakes, which would lose answers for another reason than the crash.
    return httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_keepalive_connections=0))


async def sign_in(http: httpx.AsyncClient, base: str) -> Session:
    r = await http.post(f"{base}/v1/auth/token", json={"username": EMAIL, "password": PASSWORD})
    assert r.status_code == 200, r.text
    body = r.json()
    sid: str = jwt.decode(body["access_token"], options={"verify_signature": False})["sid"]
    return Session(family=sid, held=body["refresh_token"])


async def first_refresh(http: httpx.AsyncClient, base: str, session: Session) -> None:
    try:
        r = await http.post(f"{base}/v1/auth/refresh", json={"refresh_token": session.held})
    except httpx.TransportError as exc:  # the answer is lost: the client keeps its token
        session.outcome = type(exc).__name__
        return
    session.outcome = str(r.status_code)
    if r.status_code == 200:
        session.held, session.answered = r.json()["refresh_token"], True


async def committed(engine: AsyncEngine, families: list[str]) -> set[str]:
    """The families whose first refresh token was used: its rotation committed."""
    query = select(refresh_tokens.c.family_id).where(
        refresh_tokens.c.family_id.in_(families), refresh_tokens.c.used_at.is_not(None)
    )
    async with engine.connect() as conn:
        return set((await asyncio.wait_for(conn.execute(query), 10)).scalars())


def signal_group(server: ServerProcess, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(server.process.pid, sig)


async def storm_until_a_lost_answer(
    server: ServerProcess, engine: AsyncEngine, http: httpx.AsyncClient, batch: list[Session]
) -> bool:
    """Refresh every session of ``batch`` at once, freezing the server at random moments;
    kill it, frozen, when a committed refresh has not reached its client. False: the
    storm ended before that happened (the server is left running)."""
    tasks = [asyncio.create_task(first_refresh(http, server.url, s)) for s in batch]
    families = [s.family for s in batch]
    while True:
        await asyncio.sleep(random.uniform(0.0, 0.02))
        signal_group(server, signal.SIGSTOP)
        # Answers already sent reach their clients (until none arrives for a while).
        pending = {t for t in tasks if not t.done()}
        while pending:
            arrived, pending = await asyncio.wait(pending, timeout=0.05)
            if not arrived:
                break
        waiting = {s.family for s, t in zip(batch, tasks, strict=True) if not t.done()}
        if waiting & await committed(engine, families):
            signal_group(server, signal.SIGKILL)
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
            return True
        signal_group(server, signal.SIGCONT)
        if not waiting:
            return False


async def crash(
    url: str, engine: AsyncEngine, http: httpx.AsyncClient, sessions: list[Session]
) -> None:
    """Start the server, sign in and refresh in storms until a kill lands (the sessions
    signed in are added to ``sessions``); the server is dead on return."""
    with spawn_server(url, **SERVER_ENV) as server:
        try:
            for _ in range(BATCHES):
                # One after another: sign-ins of one person at once are throttled.
                batch = [await sign_in(http, server.url) for _ in range(SESSIONS)]
                sessions += batch
                if await storm_until_a_lost_answer(server, engine, http, batch):
                    return
            raise AssertionError(f"{BATCHES} storms ended before a kill could land")
        finally:
            signal_group(server, signal.SIGKILL)
            server.process.wait(timeout=10)


def test_every_client_recovers_from_a_kill_9_mid_rotation(database_url: str) -> None:
    asyncio.run(crash_and_recover(database_url))


async def crash_and_recover(url: str) -> None:
    runtime = build(fast_settings(database_url=url))
    await runtime.start(background=False)  # the schema, before the workers start
    try:
        await runtime.tenancy.bootstrap("Acme", EMAIL, PASSWORD)
    finally:
        await runtime.stop()
    engine = create_async_engine(url)
    sessions: list[Session] = []
    started = time.monotonic()
    try:
        async with client() as http:
            for _ in range(CRASHES):
                await crash(url, engine, http, sessions)
                done = await committed(engine, [s.family for s in sessions])
                lost_committed = {s.family for s in sessions if not s.answered and s.family in done}
                if lost_committed:  # else an answer reached its client as the kill landed
                    break
            killed = time.monotonic()
            outcomes = Counter(s.outcome for s in sessions)
            # An answer either arrived, or was lost with the connection: never a refusal.
            assert {o for o in outcomes if o.isdigit()} <= {"200", "503"}, outcomes
            assert all(s.family in done for s in sessions if s.answered)
            lost_uncommitted = {s.family for s in sessions if s.family not in done}
            assert lost_committed, outcomes

            # Started again in this process (a fresh runtime: the recovery needs only what
            # the database holds), which a loaded machine does seconds faster.
            settings = fast_settings(database_url=url, refresh_grace_seconds=GRACE)
            with serve(create_app(settings)) as base:
                # Past the grace window: the committed ones are recovered by the retry rule.
                await asyncio.sleep(max(0.0, killed + GRACE + 0.2 - time.monotonic()))

                async def recover(session: Session) -> None:
                    r = await http.post(
                        f"{base}/v1/auth/refresh", json={"refresh_token": session.held}
                    )
                    assert r.status_code == 200, (session.outcome, r.text)
                    pair = r.json()
                    assert pair["refresh_token"] != session.held
                    bearer = {"Authorization": f"Bearer {pair['access_token']}"}
                    assert (await http.get(f"{base}/v1/keys", headers=bearer)).is_success

                await asyncio.gather(*(recover(s) for s in sessions))

        async with engine.connect() as conn:
            events = (
                await conn.execute(
                    select(audit_events.c.type, audit_events.c.data).where(
                        audit_events.c.type.like("refresh_token.%")
                    )
                )
            ).all()
            revoked = (
                await conn.execute(
                    select(refresh_tokens.c.family_id).where(
                        refresh_tokens.c.revoked_at.is_not(None)
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    assert revoked == []
    assert [t for t, _ in events if t != "refresh_token.retried"] == []
    assert sorted(d["family_id"] for _, d in events) == sorted(lost_committed)
    print(
        f"kill -9 mid-rotation: {len(sessions)} sessions, {len(lost_committed)} refreshes "
        f"committed but unanswered, {len(lost_uncommitted)} never committed, "
        f"answers {dict(outcomes)}; all recovered; {time.monotonic() - started:.1f} s"
    )
