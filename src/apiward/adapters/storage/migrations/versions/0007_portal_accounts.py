"""developer portal: accounts, emailed links, account sessions, project names not unique

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.schema import SchemaItem

from apiward.adapters.storage.tables import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("confirmed_at", UTCDateTime(), nullable=True),
        sa.Column("disabled_at", UTCDateTime(), nullable=True),
        sa.Column("password_changed_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("email", name=op.f("uq_accounts_email")),
    )
    op.create_table(
        "email_links",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=True),
        sa.Column("org_id", sa.String(length=32), nullable=True),
        sa.Column("role", sa.String(length=40), nullable=True),
        sa.Column("created_by", sa.String(length=32), nullable=True),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_email_links_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_email_links_org_id_orgs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_links")),
        sa.UniqueConstraint("digest", name=op.f("uq_email_links_digest")),
    )
    op.create_index(op.f("ix_email_links_expires_at"), "email_links", ["expires_at"])
    op.create_index("ix_email_links_org_purpose", "email_links", ["org_id", "purpose"])

    # users.account_id: SQLite adds a column with its reference in place (rebuilding
    # "users" would trip the foreign keys that point at it).
    if _sqlite():
        op.execute("ALTER TABLE users ADD COLUMN account_id VARCHAR(32) REFERENCES accounts (id)")
    else:
        op.add_column("users", sa.Column("account_id", sa.String(length=32), nullable=True))
        op.create_foreign_key(
            op.f("fk_users_account_id_accounts"), "users", "accounts", ["account_id"], ["id"]
        )
    op.create_index(op.f("ix_users_account_id"), "users", ["account_id"])

    with op.batch_alter_table("dashboard_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("account_id", sa.String(length=32), nullable=True))
        batch_op.alter_column("org_id", existing_type=sa.String(length=32), nullable=True)
        batch_op.alter_column("user_id", existing_type=sa.String(length=32), nullable=True)
        batch_op.create_foreign_key(
            batch_op.f("fk_dashboard_sessions_account_id_accounts"),
            "accounts",
            ["account_id"],
            ["id"],
        )
        batch_op.create_index(batch_op.f("ix_dashboard_sessions_account_id"), ["account_id"])

    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.alter_column("org_id", existing_type=sa.String(length=32), nullable=True)

    # Project names need not be unique across the instance (that would tell one account
    # the names of another's projects).
    if _sqlite():
        _rebuild_sqlite("orgs", _org_columns())
    else:
        op.drop_constraint(op.f("uq_orgs_name"), "orgs", type_="unique")


def downgrade() -> None:
    """Back to 0006: accounts, their links and sessions, and account-only events go."""
    op.execute("DELETE FROM dashboard_sessions WHERE account_id IS NOT NULL")
    op.execute("DELETE FROM audit_events WHERE org_id IS NULL")
    with op.batch_alter_table("dashboard_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dashboard_sessions_account_id"))
        batch_op.drop_constraint(
            batch_op.f("fk_dashboard_sessions_account_id_accounts"), type_="foreignkey"
        )
        batch_op.drop_column("account_id")
        batch_op.alter_column("org_id", existing_type=sa.String(length=32), nullable=False)
        batch_op.alter_column("user_id", existing_type=sa.String(length=32), nullable=False)
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.alter_column("org_id", existing_type=sa.String(length=32), nullable=False)
    op.drop_index(op.f("ix_users_account_id"), table_name="users")
    if _sqlite():
        _rebuild_sqlite("users", _user_columns())
        _rebuild_sqlite("orgs", _org_columns(sa.UniqueConstraint("name", name="uq_orgs_name")))
    else:
        op.drop_constraint(op.f("fk_users_account_id_accounts"), "users", type_="foreignkey")
        op.drop_column("users", "account_id")
        op.create_unique_constraint(op.f("uq_orgs_name"), "orgs", ["name"])
    op.drop_table("email_links")
    op.drop_table("accounts")


def _org_columns(*extra: SchemaItem) -> list[SchemaItem]:
    return [
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("rate_tier", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_orgs"),
        *extra,
    ]


def _user_columns() -> list[SchemaItem]:
    return [
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("disabled_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name="fk_users_org_id_orgs"),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("org_id", "email", name="uq_users_org_email"),
    ]


def _rebuild_sqlite(table: str, items: list[SchemaItem]) -> None:
    """Re-create a SQLite table that other tables point at, keeping its rows.

    Alembic's batch mode renames a copy into place, which SQLite's foreign keys refuse
    for a referenced table. Here the checks are deferred to the commit instead: the
    table is dropped, created anew and refilled, so every reference holds again by then.
    """
    names = ", ".join(item.name for item in items if isinstance(item, sa.Column))
    op.execute("PRAGMA defer_foreign_keys = ON")
    op.execute(f"CREATE TABLE _{table}_copy AS SELECT {names} FROM {table}")  # noqa: S608
    op.execute(f"DROP TABLE {table}")
    op.create_table(table, *items)
    op.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM _{table}_copy")  # noqa: S608
    op.execute(f"DROP TABLE _{table}_copy")
