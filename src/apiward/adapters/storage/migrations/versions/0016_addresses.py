"""shared keys noticed: the networks each key's and client's requests came from, per day

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "address_uses",
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("credential_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("prefix", sa.String(length=48), nullable=False),
        sa.Column("environment", sa.String(length=32), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "org_id", "credential_id", "day", "prefix", name=op.f("pk_address_uses")
        ),
    )
    op.create_index(op.f("ix_address_uses_day"), "address_uses", ["day"], unique=False)
    op.create_table(
        "address_overflows",
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("credential_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("environment", sa.String(length=32), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("registers", sa.LargeBinary(length=1024), nullable=False),
        sa.Column("countries", sa.String(length=1024), nullable=False),
        sa.PrimaryKeyConstraint(
            "org_id", "credential_id", "day", name=op.f("pk_address_overflows")
        ),
    )
    op.create_index(op.f("ix_address_overflows_day"), "address_overflows", ["day"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_address_overflows_day"), table_name="address_overflows")
    op.drop_table("address_overflows")
    op.drop_index(op.f("ix_address_uses_day"), table_name="address_uses")
    op.drop_table("address_uses")
