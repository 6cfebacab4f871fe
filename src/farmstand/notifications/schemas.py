"""Notification request and reply shapes."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from farmstand.notifications.models import (
    NotificationChannel,
    NotificationStatus,
    NotificationType,
)
from farmstand.schemas import CamelInput, CamelModel

HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def _hhmm(value: str) -> str:
    if not HHMM.match(value):
        raise ValueError("must be a 24-hour time HH:MM, such as 21:30")
    return value


Clock = Annotated[str, AfterValidator(_hhmm)]


class QuietHours(CamelModel):
    start: Clock
    end: Clock


class QuietHoursIn(CamelInput):
    start: Clock
    end: Clock

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHoursIn:
        if self.start == self.end:
            raise ValueError("start and end must differ (send null to turn quiet hours off)")
        return self


class PreferencesOut(CamelModel):
    channels: dict[NotificationType, dict[NotificationChannel, bool]] = Field(
        description="For each type, which channels you get it on."
    )
    quiet_hours: QuietHours | None = Field(
        description="SMS and push wait until these end (your time zone)."
    )
    timezone: str
    email_unsubscribed: bool


class PreferencesIn(CamelInput):
    channels: dict[NotificationType, dict[NotificationChannel, bool]] | None = None
    quiet_hours: QuietHoursIn | None = Field(
        default=None, description="Null turns quiet hours off; leave out to keep them."
    )
    email_unsubscribed: bool | None = None


class NotificationOut(CamelModel):
    id: str
    order_id: str
    type: NotificationType
    title: str
    message: str
    url: str | None
    created_at: datetime
    read_at: datetime | None


class NotificationPage(CamelModel):
    items: list[NotificationOut]
    next_cursor: str | None
    unread_count: int


class UnreadCount(CamelModel):
    unread_count: int


class MarkedRead(CamelModel):
    marked: int
    unread_count: int


class DeliveryOut(CamelModel):
    """One line of an order's delivery log."""

    id: str
    order_id: str
    user_id: str
    type: NotificationType
    channel: NotificationChannel
    status: NotificationStatus
    title: str
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    provider_message_id: str | None
    sent_at: datetime | None
    read_at: datetime | None
    created_at: datetime
    metadata: dict[str, Any]


class DeliveryPage(CamelModel):
    items: list[DeliveryOut]
    next_cursor: str | None


class ChannelCounts(CamelModel):
    counts: dict[str, dict[str, int]] = Field(
        description="Per channel, the number of notifications in each status."
    )


class VapidKey(CamelModel):
    public_key: str = Field(description="The applicationServerKey for PushManager.subscribe.")


class PushKeys(CamelInput):
    p256dh: Annotated[
        str, StringConstraints(min_length=20, max_length=200, pattern=r"^[A-Za-z0-9_\-=]+$")
    ]
    auth: Annotated[
        str, StringConstraints(min_length=8, max_length=100, pattern=r"^[A-Za-z0-9_\-=]+$")
    ]


class PushSubscriptionIn(CamelInput):
    """What the browser's PushSubscription.toJSON() gives."""

    endpoint: Annotated[str, StringConstraints(min_length=10, max_length=2000)]
    keys: PushKeys
    expiration_time: int | None = None


class PushSubscriptionOut(CamelModel):
    id: str
    endpoint: str
    created_at: datetime


class ResendOut(CamelModel):
    type: NotificationType
    notifications: list[DeliveryOut]
