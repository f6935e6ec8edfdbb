"""verification counts: every authentication decision, per minute, hour and day

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "verification_counts",
        sa.Column("granularity", sa.String(length=8), nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("environment", sa.String(length=32), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("route", sa.String(length=256), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "org_id",
            "environment",
            "granularity",
            "bucket",
            "key_id",
            "client_id",
            "route",
            "outcome",
            name="pk_verification_counts",
        ),
    )
    op.create_index(
        "ix_verification_counts_granularity_bucket",
        "verification_counts",
        ["granularity", "bucket"],
    )


def downgrade() -> None:
    op.drop_index("ix_verification_counts_granularity_bucket", table_name="verification_counts")
    op.drop_table("verification_counts")
