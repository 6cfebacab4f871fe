"""Notification records (written in the transaction of the change), preferences and push
subscriptions."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Boolean, Enum, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from farmstand.db import Base, JSONType, UTCDateTime, new_id, utcnow


class NotificationType(StrEnum):
    ORDER_CONFIRMED = "ORDER_CONFIRMED"
    ORDER_PREPARING = "ORDER_PREPARING"
    ORDER_READY = "ORDER_READY"
    ORDER_OUT_FOR_DELIVERY = "ORDER_OUT_FOR_DELIVERY"
    ORDER_COMPLETED = "ORDER_COMPLETED"
    ORDER_CANCELLED = "ORDER_CANCELLED"
    ORDER_REFUNDED = "ORDER_REFUNDED"
    ORDER_DELAYED = "ORDER_DELAYED"
    ORDER_REMINDER = "ORDER_REMINDER"
    NEW_ORDER = "NEW_ORDER"
    # Account emails (no order; sent whatever the preferences, see notifications/account.py)
    ACCOUNT_VERIFY = "ACCOUNT_VERIFY"
    ACCOUNT_EXISTS = "ACCOUNT_EXISTS"


ACCOUNT_TYPES = frozenset({NotificationType.ACCOUNT_VERIFY, NotificationType.ACCOUNT_EXISTS})
# The types about orders: the ones a user has preferences for.
ORDER_TYPES = tuple(type for type in NotificationType if type not in ACCOUNT_TYPES)


class NotificationChannel(StrEnum):
    EMAIL = "EMAIL"
    SMS = "SMS"
    PUSH = "PUSH"
    IN_APP = "IN_APP"


class NotificationStatus(StrEnum):
    QUEUED = "QUEUED"
    SENDING = "SENDING"
    SENT = "SENT"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


class DeliveryStatus(StrEnum):
    """What the provider reported after accepting a message (Twilio's status callbacks)."""

    DELIVERED = "DELIVERED"  # reached the handset
    UNDELIVERED = "UNDELIVERED"  # the carrier could not deliver it
    FAILED = "FAILED"  # the provider could not send it at all


def _enum(cls: type) -> Enum:
    return Enum(cls, native_enum=False, length=32, validate_strings=True)


class OrderNotification(Base):
    """One message to one user on one channel, and how its delivery went.

    Account emails (``ACCOUNT_TYPES``) have no order, and a verification email goes to an
    address that has no user yet: ``user_id`` is then empty and ``meta`` names the address."""

    __tablename__ = "order_notifications"
    __table_args__ = (
        Index("ix_order_notifications_order_id_created_at", "order_id", "created_at"),
        Index(
            "ix_order_notifications_user_id_channel_created_at", "user_id", "channel", "created_at"
        ),
        Index("ix_order_notifications_sent_at", "sent_at"),
        # The dispatcher's claim: due rows by time.
        Index("ix_order_notifications_status_next_attempt_at", "status", "next_attempt_at"),
        # Pruning old rows in bounded batches.
        Index("ix_order_notifications_created_at", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    order_id: Mapped[str | None] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    type: Mapped[NotificationType] = mapped_column(_enum(NotificationType))
    channel: Mapped[NotificationChannel] = mapped_column(_enum(NotificationChannel))
    title: Mapped[str] = mapped_column(String(300))
    message: Mapped[str] = mapped_column(Text)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)

    status: Mapped[NotificationStatus] = mapped_column(_enum(NotificationStatus))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    # When the first attempt was claimed: retries go on for notification_retry_hours from it.
    first_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # After SENT (the provider accepted it): what the provider later reported, if it does.
    delivery_status: Mapped[DeliveryStatus | None] = mapped_column(_enum(DeliveryStatus))
    delivery_error_code: Mapped[str | None] = mapped_column(String(50))
    delivery_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ChannelState(Base):
    """A channel paused after a provider-wide failure (unreachable, login refused, 5xx, 429),
    shared by every dispatcher: none claims its messages until ``paused_until``; then one of
    them probes with a single message. No row, or ``failures == 0``: the channel is healthy."""

    __tablename__ = "notification_channel_states"

    channel: Mapped[NotificationChannel] = mapped_column(
        _enum(NotificationChannel), primary_key=True
    )
    failures: Mapped[int] = mapped_column(Integer, default=0)  # provider failures in a row
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    paused_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class NotificationPreference(Base):
    """A user's choice for one type and channel, overriding the default."""

    __tablename__ = "notification_preferences"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    type: Mapped[NotificationType] = mapped_column(_enum(NotificationType), primary_key=True)
    channel: Mapped[NotificationChannel] = mapped_column(
        _enum(NotificationChannel), primary_key=True
    )
    enabled: Mapped[bool] = mapped_column(Boolean)


class PushSubscription(Base):
    """A browser's Web Push subscription (endpoint and keys from PushManager.subscribe)."""

    __tablename__ = "push_subscriptions"
    __table_args__ = (UniqueConstraint("endpoint"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    endpoint: Mapped[str] = mapped_column(String(2000))
    p256dh: Mapped[str] = mapped_column(String(200))
    auth: Mapped[str] = mapped_column(String(100))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class NotificationResend(Base):
    """A farm asking for an order's latest customer notification to be sent again."""

    __tablename__ = "notification_resends"
    __table_args__ = (
        Index("ix_notification_resends_order_id_created_at", "order_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    requested_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    type: Mapped[NotificationType] = mapped_column(_enum(NotificationType))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class OrderReminder(Base):
    """What the scheduler already told about an order (so several schedulers send once).

    Kept here, not on ``orders``: only the orders package writes that table (its version and
    history must stay true), and a reminder is not a change of the order.
    """

    __tablename__ = "order_reminders"

    order_id: Mapped[str] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True
    )
    # The estimate a delay notice was sent for; the time of the last "still waiting" reminder;
    # the pickup slot a reminder was sent for.
    late_notified_for: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ready_reminder_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    pickup_reminder_for: Mapped[datetime | None] = mapped_column(UTCDateTime())
