"""key hygiene: the notices already sent, and each organisation's own policy

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from apiward.adapters.storage.tables import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "key_notices",
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("mark", sa.String(length=128), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", "kind", "mark", name=op.f("pk_key_notices")),
    )

    # A plain ADD COLUMN (no batch copy): every table refers to orgs.
    op.add_column("orgs", sa.Column("key_hygiene", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite 3.35+ drops a column in place; a batch copy of orgs would break the
        # foreign keys every other table holds to it.
        op.execute("ALTER TABLE orgs DROP COLUMN key_hygiene")
    else:
        op.drop_column("orgs", "key_hygiene")
    op.drop_table("key_notices")
