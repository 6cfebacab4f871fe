"""An order's delivery log: what was sent on which channel and how it went, resending the
latest customer notification, and the delivery reports providers send back."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.accounts.principal import Person
from farmstand.db import utcnow
from farmstand.errors import Conflict, TooManyRequests
from farmstand.notifications.models import (
    DeliveryStatus,
    NotificationChannel,
    NotificationResend,
    NotificationType,
    OrderNotification,
)
from farmstand.notifications.outbox import enqueue, notifier_of
from farmstand.orders.records import OrderRecord


async def delivery_log(session: AsyncSession, order_id: str) -> list[OrderNotification]:
    query = (
        select(OrderNotification)
        .where(OrderNotification.order_id == order_id)
        .order_by(OrderNotification.created_at, OrderNotification.id)
    )
    return list(await session.scalars(query))


async def resend_latest(
    session: AsyncSession, order: OrderRecord, by: Person, *, now: datetime | None = None
) -> tuple[NotificationType, list[OrderNotification]]:
    """Send the order's latest customer notification again (fresh content, same type)."""
    notifier = notifier_of(session)
    now = now or utcnow()
    latest = await session.scalar(
        select(OrderNotification)
        .where(
            OrderNotification.order_id == order.id, OrderNotification.user_id == order.customer_id
        )
        .order_by(OrderNotification.created_at.desc(), OrderNotification.id.desc())
        .limit(1)
    )
    if latest is None:
        raise Conflict("This order has no customer notification to resend yet.")
    settings = notifier.settings
    recent = list(
        await session.scalars(
            select(NotificationResend.created_at)
            .where(
                NotificationResend.order_id == order.id,
                NotificationResend.created_at > now - timedelta(days=1),
            )
            .order_by(NotificationResend.created_at.desc())
        )
    )
    min_gap = timedelta(seconds=settings.resend_min_interval_seconds)
    if recent and now - recent[0] < min_gap:
        wait = int((recent[0] + min_gap - now).total_seconds()) + 1
        raise TooManyRequests(
            "This notification was just resent; try again in a few minutes.",
            retry_after=wait,
        )
    if len(recent) >= settings.resend_max_per_day:
        wait = int((recent[-1] + timedelta(days=1) - now).total_seconds()) + 1
        raise TooManyRequests(
            "This order's notifications were resent too often today.",
            retry_after=wait,
        )
    session.add(
        NotificationResend(order_id=order.id, requested_by=by.id, type=latest.type, created_at=now)
    )
    planned = await enqueue(
        session,
        order,
        latest.type,
        order.customer_id,
        "customer",
        extra=latest.meta.get("context") or {},
        meta={"resendOf": latest.id, "requestedBy": by.id},
        now=now,
    )
    ids = [row["id"] for row in planned.rows]
    rows = await session.scalars(
        select(OrderNotification)
        .where(OrderNotification.id.in_(ids))
        .order_by(OrderNotification.created_at, OrderNotification.id)
    )
    return latest.type, list(rows)


# Twilio's MessageStatus values that end a message's story; the others (queued, sending,
# sent, accepted, scheduled) are steps on the way and not recorded.
_TWILIO_FINAL = {
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.DELIVERED,  # WhatsApp: delivered, and read
    "undelivered": DeliveryStatus.UNDELIVERED,
    "failed": DeliveryStatus.FAILED,
}


async def record_sms_report(
    session: AsyncSession,
    notification_id: str,
    *,
    message_sid: str | None,
    message_status: str,
    error_code: str | None,
    now: datetime | None = None,
) -> bool:
    """Record Twilio's delivery report on the SMS it is about. Returns whether it was kept
    (an intermediate status, an unknown notification or another message's sid is not)."""
    outcome = _TWILIO_FINAL.get(message_status.strip().lower())
    if outcome is None:
        return False
    row = await session.get(OrderNotification, notification_id, with_for_update=True)
    if row is None or row.channel is not NotificationChannel.SMS:
        return False
    if message_sid and row.provider_message_id and row.provider_message_id != message_sid:
        return False
    row.delivery_status = outcome
    row.delivery_error_code = (error_code or "").strip()[:50] or None
    row.delivery_updated_at = now or utcnow()
    await session.flush()
    return True
