"""key formats: every format a deployment has issued keys in

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from apiward.adapters.storage.tables import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Empty: the first start after the upgrade records the format in force.
    op.create_table(
        "key_formats",
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("first_seen_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("spec", name=op.f("pk_key_formats")),
    )


def downgrade() -> None:
    op.drop_table("key_formats")
