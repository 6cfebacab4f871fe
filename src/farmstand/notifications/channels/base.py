"""The one narrow interface every channel implements, and what the dispatcher hands it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
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
    """A send that failed.

    Three kinds: the message's own temporary failure (retried with backoff), the message's
    own ``permanent`` failure (a bad number: not retried), and a ``provider`` failure (the
    provider is unreachable, refuses our login, fails or throttles everyone): nothing about
    this message, so the dispatcher pauses the channel and charges the message no attempt.
    ``retry_after``: seconds the provider asked us to wait (429 ``Retry-After``), if it did.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        provider: bool = False,
        retry_after: float | None = None,
        expired_push_targets: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.permanent = permanent and not provider
        self.provider = provider
        self.retry_after = retry_after
        self.expired_push_targets = expired_push_targets


ResultCallback = Callable[[int, "SendResult | DeliveryError"], None]
"""Told each delivery's result (its index in the batch) as soon as it is known."""


async def send_each(
    deliveries: list[Delivery],
    send: Callable[[Delivery], Awaitable[SendResult | DeliveryError]],
    on_result: ResultCallback | None,
) -> list[SendResult | DeliveryError]:
    """``send`` every delivery concurrently (the sender bounds its own concurrency), telling
    ``on_result`` each result as it completes; the results in order."""

    async def one(index: int, delivery: Delivery) -> SendResult | DeliveryError:
        result = await send(delivery)
        if on_result is not None:
            on_result(index, result)
        return result

    return list(await asyncio.gather(*(one(i, d) for i, d in enumerate(deliveries))))


class Sender(Protocol):
    channel: NotificationChannel

    async def send_many(
        self, deliveries: list[Delivery], on_result: ResultCallback | None = None
    ) -> list[SendResult | DeliveryError]:
        """Send a batch (reusing connections), one result per delivery, in order.

        Never raises for a single delivery's failure: it returns a DeliveryError in its place.
        ``on_result``, when given, is called with each result as it completes, so the caller
        can record it at once (a slow batch must not hold the fast ones' results back).
        """

    async def close(self) -> None: ...
