"""rate tiers and credits

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rate_limits", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("credits_remaining", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("refill_amount", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("refill_interval", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("refill_day", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("credits_refilled", sa.Integer(), nullable=True))

    with op.batch_alter_table("orgs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rate_tier", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("orgs", schema=None) as batch_op:
        batch_op.drop_column("rate_tier")

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("credits_refilled")
        batch_op.drop_column("refill_day")
        batch_op.drop_column("refill_interval")
        batch_op.drop_column("refill_amount")
        batch_op.drop_column("credits_remaining")
        batch_op.drop_column("rate_limits")
