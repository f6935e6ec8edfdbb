"""Alembic environment: always handed a live connection by ``apiward.adapters.storage.migrate``."""

from __future__ import annotations

from alembic import context

from apiward.adapters.storage.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through 'apiward migrate'")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
