"""The one narrow interface every channel implements, and what the dispatcher hands it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from farmstand.notifications.models import NotificationChannel, NotificationType


@dataclass(frozen=True)
class Recipient:
    user_id: str
    name: str
    email: str
    phone: str | None
    timezone: str


@dataclass(frozen=True)
class PushTarget:
    """One of the recipient's browser subscriptions."""

    id: str
    endpoint: str
    p256dh: str
    auth: str


@dataclass(frozen=True)
class Delivery:
    """One notification row, ready to send."""

    notification_id: str  # also the idempotency key where the provider takes one
    type: NotificationType
    channel: NotificationChannel
    recipient: Recipient
    title: str  # the email subject, the push title
    message: str  # the plain-text body (SMS text, push body, email text part)
    html: str | None = None  # the email's HTML part (autoescaped)
    url: str = ""  # the order page
    unsubscribe_url: str | None = None  # one-click email unsubscribe
    push_targets: tuple[PushTarget, ...] = ()
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str | None = None
    # Push subscriptions the push service says are gone (404/410): the dispatcher deletes them.
    expired_push_targets: tuple[str, ...] = ()


class DeliveryError(Exception):
    """A send that failed. ``permanent`` failures are not retried (a bad number, say)."""

    def __init__(
        self, message: str, *, permanent: bool = False, expired_push_targets: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.expired_push_targets = expired_push_targets


class Sender(Protocol):
    channel: NotificationChannel

    async def send_many(self, deliveries: list[Delivery]) -> list[SendResult | DeliveryError]:
        """Send a batch (reusing connections), one result per delivery, in order.

        Never raises for a single delivery's failure: it returns a DeliveryError in its place.
        """

    async def close(self) -> None: ...
