"""The composition root builds each part on first use: a server's ``start`` builds them
all, a command's ``open`` only those it uses, and ``stop`` closes what was built."""

from __future__ import annotations

import io
from functools import cached_property
from pathlib import Path

import pytest

from apiward.adapters import logging as logs
from apiward.adapters.runtime import Runtime, build
from apiward.core.models import PageRequest
from tests.conftest import fast_settings

pytestmark = pytest.mark.anyio

SERVING = ("keyring", "tokens", "auth", "http", "webhooks", "postbox", "portal", "sealer")
"""Parts that serve requests and run the periodic jobs, which a key command never uses."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"


def test_parts_names_every_part_after_what_it_is_built_from() -> None:
    """``start`` builds ``PARTS``: a part missing from it would be built on a request."""
    public = [
        name
        for name, value in vars(Runtime).items()
        if isinstance(value, cached_property) and not name.startswith("_")
    ]
    assert sorted(public) == sorted(Runtime.PARTS)
    assert len(set(Runtime.PARTS)) == len(Runtime.PARTS)


async def test_start_builds_every_part_and_stop_closes_them(tmp_path: Path) -> None:
    logs.configure("warning", "json", io.StringIO())  # not a stream an earlier test closed
    runtime = build(fast_settings(database_url=_sqlite(tmp_path)))
    assert not any(runtime.built(part) for part in Runtime.PARTS)
    await runtime.start()
    try:
        assert [p for p in Runtime.PARTS if not runtime.built(p)] == []
        assert runtime.keyring.current.kid.startswith("sig_")  # the first one, made
    finally:
        await runtime.stop()
    assert runtime.http.is_closed


async def test_a_command_builds_only_the_parts_it_uses(tmp_path: Path) -> None:
    runtime = build(fast_settings(database_url=_sqlite(tmp_path)))
    await runtime.open()  # migrates: the tables are there
    try:
        boot = await runtime.tenancy.bootstrap("Acme", "o@acme.test", "correct horse battery")
        owner = await runtime.operators.principal(boot.org.id)
        created = await runtime.keys.create(owner, name="k", scopes=["keys:read"])
        listed = await runtime.keys.list_keys(owner, PageRequest(1, 50))
        assert [k.id for k in listed.items] == [created.key.id]
        assert [p for p in SERVING if runtime.built(p)] == []
    finally:
        await runtime.stop()
    assert [p for p in SERVING if runtime.built(p)] == []  # nothing built to be closed


async def test_a_command_rotating_the_signing_key_needs_no_start(tmp_path: Path) -> None:
    """``apiward keys-rotate``: the rotation installs the key it writes."""
    url = _sqlite(tmp_path)
    server = build(fast_settings(database_url=url))
    await server.start(background=False)
    first = server.keyring.current.kid
    await server.stop()
    command = build(fast_settings(database_url=url))
    await command.open()
    try:
        rotated = await command.keyring.rotate(reason="manual", actor="cli")
        assert rotated.kid != first and command.keyring.current.kid == rotated.kid
        assert set(command.keyring.keys) == {first, rotated.kid}  # the old one published
    finally:
        await command.stop()


def test_built_refuses_a_name_that_is_no_part(tmp_path: Path) -> None:
    runtime = build(fast_settings(database_url=_sqlite(tmp_path)))
    with pytest.raises(ValueError, match="'keyrings' is not a part"):
        runtime.built("keyrings")
