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


def _enum(cls: type) -> Enum:
    return Enum(cls, native_enum=False, length=32, validate_strings=True)


class OrderNotification(Base):
    """One message to one user on one channel, and how its delivery went."""

    __tablename__ = "order_notifications"
    __table_args__ = (
        Index("ix_order_notifications_order_id_created_at", "order_id", "created_at"),
        Index(
            "ix_order_notifications_user_id_channel_created_at", "user_id", "channel", "created_at"
        ),
        Index("ix_order_notifications_sent_at", "sent_at"),
        # The dispatcher's claim: due rows by time.
        Index("ix_order_notifications_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
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

    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
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
