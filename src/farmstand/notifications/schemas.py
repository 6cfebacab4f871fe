"""Notification request and reply shapes."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    AwareDatetime,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from farmstand.notifications.models import (
    ACCOUNT_TYPES,
    DeliveryStatus,
    NotificationChannel,
    NotificationStatus,
    NotificationType,
)
from farmstand.schemas import CamelInput, CamelModel, TimeZone

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

    @field_validator("channels")
    @classmethod
    def _order_types_only(
        cls, value: dict[NotificationType, dict[NotificationChannel, bool]] | None
    ) -> dict[NotificationType, dict[NotificationChannel, bool]] | None:
        account = sorted(str(type) for type in (value or {}) if type in ACCOUNT_TYPES)
        if account:
            raise ValueError(
                f"{', '.join(account)}: account emails are always sent and have no preferences"
            )
        return value

    quiet_hours: QuietHoursIn | None = Field(
        default=None, description="Null turns quiet hours off; leave out to keep them."
    )
    email_unsubscribed: bool | None = None
    timezone: TimeZone | None = Field(
        default=None,
        description="Your time zone (quiet hours are in it); the same as PATCH /api/me sets. "
        "Leave out to keep it: a document read with GET can be sent back as it is.",
    )


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
    """One line of an order's delivery log as the farm sees it: which notification went out
    on which channel, how it went and when. Never the message, the address, the provider's
    answer or anything else the row keeps (an explicit allow-list: ``delivery_view``)."""

    id: str
    order_id: str
    type: NotificationType
    channel: NotificationChannel
    status: NotificationStatus
    attempts: int
    resent: bool = Field(description="Sent again at the farm's request.")
    next_attempt_at: datetime | None
    sent_at: datetime | None
    delivery_status: DeliveryStatus | None = Field(
        default=None,
        description="After SENT, what the provider reported: DELIVERED, UNDELIVERED or FAILED "
        "(SMS, when delivery reports are configured).",
    )
    delivery_error_code: str | None = Field(
        default=None, description="The provider's error code for UNDELIVERED or FAILED."
    )
    delivery_updated_at: datetime | None = None
    read_at: datetime | None
    created_at: datetime


class DeliveryDetails(CamelModel):
    """What an admin sees of a notification's own record (named fields only)."""

    audience: str | None = None
    reason: str | None = None
    quiet_hours_until: str | None = None
    resend_of: str | None = None
    requested_by: str | None = None
    retried_by: str | None = None
    retried_at: str | None = None
    previous_error: str | None = None


class AdminDeliveryOut(CamelModel):
    """A notification as an admin sees it: the farm's view, and whom it was for, its title,
    the last error and the provider's id (still never the links or the message body)."""

    id: str
    order_id: str | None = Field(description="None for an account email (verification).")
    user_id: str | None = Field(description="None for an email to a registration in waiting.")
    type: NotificationType
    channel: NotificationChannel
    status: NotificationStatus
    title: str
    attempts: int
    resent: bool
    last_error: str | None
    next_attempt_at: datetime | None
    provider_message_id: str | None
    sent_at: datetime | None
    delivery_status: DeliveryStatus | None = Field(
        default=None,
        description="After SENT, what the provider reported: DELIVERED, UNDELIVERED or FAILED "
        "(SMS, when delivery reports are configured).",
    )
    delivery_error_code: str | None = Field(
        default=None, description="The provider's error code for UNDELIVERED or FAILED."
    )
    delivery_updated_at: datetime | None = None
    read_at: datetime | None
    created_at: datetime
    details: DeliveryDetails


class DeliveryPage(CamelModel):
    items: list[AdminDeliveryOut]
    next_cursor: str | None


class ChannelHealthOut(CamelModel):
    paused: bool = Field(description="No notification of the channel is sent until pausedUntil.")
    paused_until: datetime | None
    paused_since: datetime | None = Field(description="When the outage began.")
    failures: int = Field(description="Provider-wide failures in a row (0: healthy).")
    last_error: str | None


class ChannelCounts(CamelModel):
    counts: dict[str, dict[str, int]] = Field(
        description="Per channel, the number of notifications in each status."
    )
    channels: dict[str, ChannelHealthOut] = Field(
        default_factory=dict,
        description="Per channel whose provider failed lately: whether it is paused, and why.",
    )


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


class RequeueIn(CamelInput):
    """Which FAILED notifications to send again: of one channel, created in [since, until)."""

    channel: NotificationChannel | None = None
    since: Annotated[AwareDatetime, AfterValidator(_utc)] | None = None
    until: Annotated[AwareDatetime, AfterValidator(_utc)] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> RequeueIn:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("since must be before until")
        return self


class RequeueOut(CamelModel):
    requeued: int = Field(description="How many FAILED notifications were queued again.")


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
    notifications: list[AdminDeliveryOut | DeliveryOut]
