"""notifications

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 16:42:04.709758
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import farmstand.db

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notification_preferences",
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column(
            "type",
            sa.Enum(
                "ORDER_CONFIRMED",
                "ORDER_PREPARING",
                "ORDER_READY",
                "ORDER_OUT_FOR_DELIVERY",
                "ORDER_COMPLETED",
                "ORDER_CANCELLED",
                "ORDER_REFUNDED",
                "ORDER_DELAYED",
                "ORDER_REMINDER",
                "NEW_ORDER",
                name="notificationtype",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
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
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_notification_preferences_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "user_id", "type", "channel", name=op.f("pk_notification_preferences")
        ),
    )
    op.create_table(
        "push_subscriptions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("endpoint", sa.String(length=2000), nullable=False),
        sa.Column("p256dh", sa.String(length=200), nullable=False),
        sa.Column("auth", sa.String(length=100), nullable=False),
        sa.Column("user_agent", sa.String(length=300), nullable=True),
        sa.Column("created_at", farmstand.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", farmstand.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_push_subscriptions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_subscriptions")),
        sa.UniqueConstraint("endpoint", name=op.f("uq_push_subscriptions_endpoint")),
    )
    with op.batch_alter_table("push_subscriptions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_push_subscriptions_user_id"), ["user_id"], unique=False
        )

    op.create_table(
        "notification_resends",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("order_id", sa.String(length=36), nullable=False),
        sa.Column("requested_by", sa.String(length=36), nullable=True),
        sa.Column(
            "type",
            sa.Enum(
                "ORDER_CONFIRMED",
                "ORDER_PREPARING",
                "ORDER_READY",
                "ORDER_OUT_FOR_DELIVERY",
                "ORDER_COMPLETED",
                "ORDER_CANCELLED",
                "ORDER_REFUNDED",
                "ORDER_DELAYED",
                "ORDER_REMINDER",
                "NEW_ORDER",
                name="notificationtype",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("created_at", farmstand.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_notification_resends_order_id_orders"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["requested_by"],
            ["users.id"],
            name=op.f("fk_notification_resends_requested_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_resends")),
    )
    with op.batch_alter_table("notification_resends", schema=None) as batch_op:
        batch_op.create_index(
            "ix_notification_resends_order_id_created_at", ["order_id", "created_at"], unique=False
        )

    op.create_table(
        "order_notifications",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("order_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column(
            "type",
            sa.Enum(
                "ORDER_CONFIRMED",
                "ORDER_PREPARING",
                "ORDER_READY",
                "ORDER_OUT_FOR_DELIVERY",
                "ORDER_COMPLETED",
                "ORDER_CANCELLED",
                "ORDER_REFUNDED",
                "ORDER_DELAYED",
                "ORDER_REMINDER",
                "NEW_ORDER",
                name="notificationtype",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
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
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("metadata", farmstand.db.JSONType, nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "QUEUED",
                "SENDING",
                "SENT",
                "FAILED",
                "SKIPPED",
                name="notificationstatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", farmstand.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lease_until", farmstand.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.String(length=100), nullable=True),
        sa.Column("provider_message_id", sa.String(length=200), nullable=True),
        sa.Column("sent_at", farmstand.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("read_at", farmstand.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", farmstand.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", farmstand.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_order_notifications_order_id_orders"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_order_notifications_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_notifications")),
    )
    with op.batch_alter_table("order_notifications", schema=None) as batch_op:
        batch_op.create_index(
            "ix_order_notifications_order_id_created_at", ["order_id", "created_at"], unique=False
        )
        batch_op.create_index("ix_order_notifications_sent_at", ["sent_at"], unique=False)
        batch_op.create_index(
            "ix_order_notifications_status_next_attempt_at",
            ["status", "next_attempt_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_order_notifications_user_id_channel_created_at",
            ["user_id", "channel", "created_at"],
            unique=False,
        )

    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("late_notified_for", farmstand.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("ready_reminder_at", farmstand.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("pickup_reminder_for", farmstand.db.UTCDateTime(timezone=True), nullable=True)
        )

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("quiet_hours_start", sa.String(length=5), nullable=True))
        batch_op.add_column(sa.Column("quiet_hours_end", sa.String(length=5), nullable=True))
        batch_op.add_column(
            sa.Column(
                "email_unsubscribed_at", farmstand.db.UTCDateTime(timezone=True), nullable=True
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("email_unsubscribed_at")
        batch_op.drop_column("quiet_hours_end")
        batch_op.drop_column("quiet_hours_start")

    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("pickup_reminder_for")
        batch_op.drop_column("ready_reminder_at")
        batch_op.drop_column("late_notified_for")

    with op.batch_alter_table("order_notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_order_notifications_user_id_channel_created_at")
        batch_op.drop_index("ix_order_notifications_status_next_attempt_at")
        batch_op.drop_index("ix_order_notifications_sent_at")
        batch_op.drop_index("ix_order_notifications_order_id_created_at")

    op.drop_table("order_notifications")
    with op.batch_alter_table("notification_resends", schema=None) as batch_op:
        batch_op.drop_index("ix_notification_resends_order_id_created_at")

    op.drop_table("notification_resends")
    with op.batch_alter_table("push_subscriptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_push_subscriptions_user_id"))

    op.drop_table("push_subscriptions")
    op.drop_table("notification_preferences")
