"""Keys' "last used": a use recorded while the database is down is written after it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from apiward.adapters.runtime import build
from apiward.core.errors import ServiceUnavailable
from apiward.services.usage import UsageRecorder
from tests.conftest import fast_settings

pytestmark = pytest.mark.anyio

AT = datetime(2026, 11, 1, 12, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Down:
    """A store whose database is unreachable."""

    def begin(self) -> Any:
        raise ServiceUnavailable("The database is unreachable. Retry shortly.")


async def test_a_use_recorded_during_an_outage_is_written_after_it(tmp_path: Path) -> None:
    runtime = build(fast_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'u.db'}"))
    await runtime.start(background=False)
    try:
        boot = await runtime.tenancy.bootstrap("Acme", "o@acme.test", "correct horse battery")
        owner = await runtime.operators.principal(boot.org.id)
        made = await runtime.keys.create(owner, name="k", scopes=["things:read"])
        other = await runtime.keys.create(owner, name="k2", scopes=["things:read"])
        recorder = UsageRecorder()
        recorder.record(made.key.id, AT, "203.0.113.7")
        recorder.record(other.key.id, AT, "203.0.113.7")
        with pytest.raises(ServiceUnavailable):
            await recorder.flush(Down())  # type: ignore[arg-type]
        later = AT + timedelta(minutes=1)
        recorder.record(other.key.id, later, "198.51.100.1")  # during the outage, later
        assert await recorder.flush(runtime.store) == 2
        first = await runtime.keys.get(owner, made.key.id)
        second = await runtime.keys.get(owner, other.key.id)
        assert (first.last_used_at, first.last_used_ip) == (AT, "203.0.113.7")
        assert (second.last_used_at, second.last_used_ip) == (later, "198.51.100.1")
        assert await recorder.flush(runtime.store) == 0
    finally:
        await runtime.stop()
