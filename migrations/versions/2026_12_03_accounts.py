"""accounts: email verification, disabled users, sign-in back-off, request counters

Revision ID: 0004_accounts
Revises: 0004_orders
Create Date: 2026-12-03 06:40:00

- users: email_verified_at (existing users are marked verified) and disabled_at;
- pending_registrations: registrations waiting for their email link;
- order_notifications: order_id and user_id may be empty (account emails);
- login_throttles: reshaped for growing back-off (its rows are short-lived counts: dropped);
- rate_counters: fixed-window counts for registration, verification emails and orders.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import farmstand.db

revision: str = "0004_accounts"
down_revision: str | None = "0004_orders"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _throttles(columns: list[sa.Column]) -> None:  # type: ignore[type-arg]
    op.create_table(
        "login_throttles",
        sa.Column("key", sa.String(length=400), nullable=False),
        *columns,
        sa.Column("window_start", farmstand.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_throttles")),
    )
    with op.batch_alter_table("login_throttles", schema=None) as batch_op:
        batch_op.create_index("ix_login_throttles_window_start", ["window_start"], unique=False)


def _drop_throttles() -> None:
    with op.batch_alter_table("login_throttles", schema=None) as batch_op:
        batch_op.drop_index("ix_login_throttles_window_start")
    op.drop_table("login_throttles")


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("email_verified_at", farmstand.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("disabled_at", farmstand.db.UTCDateTime(timezone=True), nullable=True)
        )
    # Accounts made before verification existed were made by operators or by their owners
    # under the old rules: they keep working.
    op.execute("UPDATE users SET email_verified_at = created_at")

    with op.batch_alter_table("order_notifications", schema=None) as batch_op:
        batch_op.alter_column("order_id", existing_type=sa.String(length=36), nullable=True)
        batch_op.alter_column("user_id", existing_type=sa.String(length=36), nullable=True)

    op.create_table(
        "pending_registrations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "role",
            sa.Enum("CUSTOMER", "FARMER", "ADMIN", name="role", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", farmstand.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", farmstand.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pending_registrations")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_pending_registrations_token_hash")),
    )
    with op.batch_alter_table("pending_registrations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pending_registrations_email"), ["email"], unique=False)
        batch_op.create_index("ix_pending_registrations_expires_at", ["expires_at"], unique=False)

    _drop_throttles()
    _throttles(
        [
            sa.Column("attempts", sa.Integer(), nullable=False),
            sa.Column("blocked_until", farmstand.db.UTCDateTime(timezone=True), nullable=True),
            sa.Column("admitted", sa.Boolean(), nullable=False),
        ]
    )

    op.create_table(
        "rate_counters",
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("window_start", farmstand.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_rate_counters")),
    )
    with op.batch_alter_table("rate_counters", schema=None) as batch_op:
        batch_op.create_index("ix_rate_counters_window_start", ["window_start"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        # Counts of the last hour: losing them in a crash costs nothing, and writing them
        # skips the WAL (a counted order commits its count without an fsync).
        op.execute("ALTER TABLE rate_counters SET UNLOGGED")


def downgrade() -> None:
    with op.batch_alter_table("rate_counters", schema=None) as batch_op:
        batch_op.drop_index("ix_rate_counters_window_start")
    op.drop_table("rate_counters")

    _drop_throttles()
    _throttles(
        [
            sa.Column("failures", sa.Integer(), nullable=False),
            sa.Column("locked_until", farmstand.db.UTCDateTime(timezone=True), nullable=True),
        ]
    )

    with op.batch_alter_table("pending_registrations", schema=None) as batch_op:
        batch_op.drop_index("ix_pending_registrations_expires_at")
        batch_op.drop_index(batch_op.f("ix_pending_registrations_email"))
    op.drop_table("pending_registrations")

    op.execute("DELETE FROM order_notifications WHERE order_id IS NULL OR user_id IS NULL")
    with op.batch_alter_table("order_notifications", schema=None) as batch_op:
        batch_op.alter_column("order_id", existing_type=sa.String(length=36), nullable=False)
        batch_op.alter_column("user_id", existing_type=sa.String(length=36), nullable=False)

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("disabled_at")
        batch_op.drop_column("email_verified_at")
