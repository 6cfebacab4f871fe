"""notification reliability: channel pauses, retry window, delivery reports, pruning index

Revision ID: 0004_notify
Revises: 0003
Create Date: 2026-12-03 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import farmstand.db

revision: str = "0004_notify"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notification_channel_states",
        sa.Column(
            "channel",
            sa.Enum(
                "EMAIL",
                "SMS",
                "PUSH",
                "IN_APP",
                name="notificationchannel",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("paused_until", farmstand.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("paused_since", farmstand.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", farmstand.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("channel", name=op.f("pk_notification_channel_states")),
    )
    with op.batch_alter_table("order_notifications", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("first_attempt_at", farmstand.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "delivery_status",
                sa.Enum(
                    "DELIVERED",
                    "UNDELIVERED",
                    "FAILED",
                    name="deliverystatus",
                    native_enum=False,
                    length=32,
                ),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("delivery_error_code", sa.String(length=50), nullable=True))
        batch_op.add_column(
            sa.Column("delivery_updated_at", farmstand.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index("ix_order_notifications_created_at", ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("order_notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_order_notifications_created_at")
        batch_op.drop_column("delivery_updated_at")
        batch_op.drop_column("delivery_error_code")
        batch_op.drop_column("delivery_status")
        batch_op.drop_column("first_attempt_at")
    op.drop_table("notification_channel_states")
