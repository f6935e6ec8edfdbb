"""Alembic migrations, run on start and by ``apiward migrate``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine

from apiward.adapters.storage.sql.errors import map_db_errors

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(connection: Any = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    def run(connection: Any) -> None:
        command.upgrade(alembic_config(connection), revision)

    with map_db_errors():
        async with engine.begin() as conn:
            await conn.run_sync(run)
