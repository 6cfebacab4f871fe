"""farm limits per customer; reminders leave the orders table

Revision ID: 0004_orders
Revises: 0004_notify
Create Date: 2026-12-03 10:00:00.000000

- ``farms.max_open_orders`` and ``farms.max_item_quantity``: the per-customer limits that
  stop one account from hoarding a farm's stock (existing farms get the defaults).
- ``order_reminders``: what the scheduler already sent, moved off ``orders`` (one owner per
  table: only the orders package writes ``orders``). Existing marks are copied over.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import farmstand.db

revision: str = "0004_orders"
down_revision: str | None = "0004_notify"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REMINDER_COLUMNS = ("late_notified_for", "ready_reminder_at", "pickup_reminder_for")


def upgrade() -> None:
    with op.batch_alter_table("farms", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("max_open_orders", sa.Integer(), server_default="3", nullable=False)
        )
        batch_op.add_column(
            sa.Column("max_item_quantity", sa.Integer(), server_default="20", nullable=False)
        )

    op.create_table(
        "order_reminders",
        sa.Column("order_id", sa.String(length=36), nullable=False),
        sa.Column("late_notified_for", farmstand.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("ready_reminder_at", farmstand.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("pickup_reminder_for", farmstand.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("order_id"),
    )
    columns = ", ".join(REMINDER_COLUMNS)
    marked = " OR ".join(f"{name} IS NOT NULL" for name in REMINDER_COLUMNS)
    op.execute(
        f"INSERT INTO order_reminders (order_id, {columns}) "
        f"SELECT id, {columns} FROM orders WHERE {marked}"
    )
    # Plain ALTER TABLE … DROP COLUMN (SQLite 3.35+, PostgreSQL): a batch rebuild of orders
    # would drop and recreate the table its items and history cascade from.
    for name in REMINDER_COLUMNS:
        op.execute(f"ALTER TABLE orders DROP COLUMN {name}")


def downgrade() -> None:
    for name in REMINDER_COLUMNS:
        op.execute(f"ALTER TABLE orders ADD COLUMN {name} {_time_type()}")
    for name in REMINDER_COLUMNS:
        op.execute(
            f"UPDATE orders SET {name} = (SELECT r.{name} FROM order_reminders r "
            f"WHERE r.order_id = orders.id)"
        )
    op.drop_table("order_reminders")
    op.execute("ALTER TABLE farms DROP COLUMN max_item_quantity")
    op.execute("ALTER TABLE farms DROP COLUMN max_open_orders")


def _time_type() -> str:
    return "TIMESTAMP WITH TIME ZONE" if op.get_bind().dialect.name == "postgresql" else "DATETIME"
