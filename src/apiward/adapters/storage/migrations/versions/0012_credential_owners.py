"""credential owners: the vendor's external_id and meta on API keys and OAuth clients

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

TABLES = ("api_keys", "oauth_clients")


def upgrade() -> None:
    # NULL on every credential made before: no external_id, and no meta (read as {}).
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("external_id", sa.String(length=255), nullable=True))
            batch_op.add_column(sa.Column("meta", sa.JSON(none_as_null=True), nullable=True))
            batch_op.create_index(
                f"ix_{table}_org_external_id", ["org_id", "external_id"], unique=False
            )


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f"ix_{table}_org_external_id")
            batch_op.drop_column("meta")
            batch_op.drop_column("external_id")
