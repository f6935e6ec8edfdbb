"""operator bounds: a key's expiry and allow-lists as the operator set them

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from apiward.adapters.storage.tables import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL on every existing key: nothing it holds was recorded as the operator's.
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("operator_expires_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("operator_ip_allow", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("operator_space_allow", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("operator_space_allow")
        batch_op.drop_column("operator_ip_allow")
        batch_op.drop_column("operator_expires_at")
