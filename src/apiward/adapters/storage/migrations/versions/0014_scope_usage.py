"""least privilege: the scopes each key's and client's allowed requests used, per day

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scope_uses",
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("credential_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=160), nullable=False),
        sa.Column("environment", sa.String(length=32), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "org_id", "credential_id", "day", "scope", name=op.f("pk_scope_uses")
        ),
    )
    op.create_index(op.f("ix_scope_uses_day"), "scope_uses", ["day"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_scope_uses_day"), table_name="scope_uses")
    op.drop_table("scope_uses")
