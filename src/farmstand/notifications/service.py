"""Notification use cases: rows written with the change, preferences, the in-app centre,
delivery logs, resends and admin retries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.accounts.models import User
from farmstand.accounts.roles import Role
from farmstand.config import Settings
from farmstand.db import utcnow
from farmstand.errors import Conflict, NotFound, TooManyRequests
from farmstand.events import service as events
from farmstand.events.models import EventType
from farmstand.notifications import preferences as prefs
from farmstand.notifications.models import (
    NotificationChannel,
    NotificationPreference,
    NotificationResend,
    NotificationStatus,
    NotificationType,
    OrderNotification,
    PushSubscription,
)
from farmstand.notifications.preferences import Audience
from farmstand.notifications.templates import Templates
from farmstand.orders.models import Order
from farmstand.schemas import iso_z, newest_first

NOTIFIER_KEY = "farmstand.notifier"
NEW_NOTIFICATIONS_KEY = "farmstand.new_notifications"


class NotificationNotFound(NotFound):
    message = "Notification not found."


class Notifier:
    """What writing a notification needs from the app: settings and the templates."""

    def __init__(self, settings: Settings, templates: Templates | None = None) -> None:
        self.settings = settings
        self.templates = templates or Templates()
        assert settings.secret_key is not None
        self._unsubscribe = URLSafeSerializer(
            settings.secret_key.get_secret_value(), salt="farmstand.unsubscribe"
        )

    def order_url(self, order_id: str) -> str:
        return f"{self.settings.base_url}/orders/{order_id}"

    def unsubscribe_token(self, user_id: str) -> str:
        return self._unsubscribe.dumps(user_id)

    def unsubscribe_user_id(self, token: str) -> str | None:
        try:
            value = self._unsubscribe.loads(token)
        except BadSignature:
            return None
        return value if isinstance(value, str) else None

    def unsubscribe_url(self, user_id: str) -> str:
        return (
            f"{self.settings.base_url}/api/notifications/unsubscribe?"
            f"token={self.unsubscribe_token(user_id)}"
        )


def notifier_of(session: AsyncSession) -> Notifier:
    notifier = session.info.get(NOTIFIER_KEY)
    if notifier is None:  # a transaction from a Database the app did not set up
        raise RuntimeError("this database session has no notifier; use the app's Database")
    return notifier  # type: ignore[no-any-return]


def build_context(
    notifier: Notifier, order: Order, recipient: User, audience: Audience, extra: dict[str, Any]
) -> dict[str, Any]:
    """What the templates get: order facts, times in the recipient's zone, links."""
    tz = recipient.timezone or order.farm.timezone
    return {
        "audience": audience,
        "recipient_name": recipient.name,
        "order_number": order.order_number,
        "order_url": notifier.order_url(order.id),
        "review_url": f"{notifier.order_url(order.id)}#review",
        "dashboard_url": f"{notifier.settings.base_url}/farm",
        "farm_name": order.farm.name,
        "customer_name": order.customer.name,
        "fulfillment_type": str(order.fulfillment_type),
        "status": str(order.status),
        "total_amount": f"{order.total_amount:.2f}",
        "refund_amount": f"{order.total_amount:.2f}",
        "currency_symbol": "$",
        "items": [
            {
                "name": item.product_name,
                "quantity": item.quantity,
                "unit": item.unit,
                "line_total": f"{item.unit_price * item.quantity:.2f}",
            }
            for item in order.items
        ],
        "item_count": sum(item.quantity for item in order.items),
        "pickup_location": order.pickup_location,
        "pickup_instructions": order.pickup_instructions,
        "tracking_number": order.tracking_number,
        "carrier": order.carrier,
        "paid": order.paid_at is not None,
        "reason": None,
        "estimated_ready_at": prefs.format_local(order.estimated_ready_at, tz),
        "estimated_pickup_at": prefs.format_local(order.estimated_pickup_at, tz),
        "previous_estimate": None,
        "reminder_kind": None,
        "unsubscribe_url": notifier.unsubscribe_url(recipient.id)
        if audience == "customer"
        else None,
        **extra,
    }


async def _overrides(
    session: AsyncSession, user_id: str
) -> dict[tuple[NotificationType, NotificationChannel], bool]:
    rows = await session.scalars(
        select(NotificationPreference).where(NotificationPreference.user_id == user_id)
    )
    return {(row.type, row.channel): row.enabled for row in rows}


async def enqueue(
    session: AsyncSession,
    order: Order,
    type: NotificationType,
    recipient: User,
    audience: Audience,
    *,
    extra: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> list[OrderNotification]:
    """One row per channel the recipient gets this type on, in the caller's transaction.

    In-app rows are delivered here and now (the row is the message, and its NOTIFICATION event
    goes out with the commit); the others are QUEUED for the dispatcher, or SKIPPED with the
    reason when the recipient can't get them (no phone, no push subscription, unsubscribed).
    """
    notifier = notifier_of(session)
    now = now or utcnow()
    channels = prefs.effective_channels(type, audience, await _overrides(session, recipient.id))
    if not channels:
        return []
    context = build_context(notifier, order, recipient, audience, extra or {})
    # Only a push to send needs to know whether the recipient can receive one.
    has_push = NotificationChannel.PUSH in channels and bool(
        await session.scalar(
            select(func.count())
            .select_from(PushSubscription)
            .where(PushSubscription.user_id == recipient.id)
        )
    )
    quiet = prefs.quiet_until(
        now, recipient.quiet_hours_start, recipient.quiet_hours_end, recipient.timezone
    )
    rows = []
    for channel in channels:
        rendered = notifier.templates.render(type, channel, context)
        row = OrderNotification(
            order_id=order.id,
            user_id=recipient.id,
            type=type,
            channel=channel,
            title=rendered.title[:300],
            message=rendered.text,
            meta={
                **(meta or {}),
                **({"reason": context["reason"]} if context.get("reason") else {}),
                "audience": audience,
                "url": context["order_url"],
                **({"html": rendered.html} if rendered.html else {}),
                **(
                    {"unsubscribeUrl": context["unsubscribe_url"]}
                    if channel is NotificationChannel.EMAIL and context["unsubscribe_url"]
                    else {}
                ),
            },
            status=NotificationStatus.QUEUED,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
        )
        skip = _skip_reason(channel, recipient, has_push, audience)
        if skip:
            row.status, row.last_error, row.next_attempt_at = NotificationStatus.SKIPPED, skip, None
        elif channel is NotificationChannel.IN_APP:
            row.status, row.sent_at, row.next_attempt_at = NotificationStatus.SENT, now, None
        elif channel in prefs.INTERRUPTING and quiet is not None:
            row.next_attempt_at = quiet
            row.meta = {**row.meta, "quietHoursUntil": iso_z(quiet)}
        session.add(row)
        rows.append(row)
    await session.flush()
    for row in rows:
        if row.channel is NotificationChannel.IN_APP and row.status is NotificationStatus.SENT:
            events.record(
                session,
                EventType.NOTIFICATION,
                order_id=order.id,
                farm_id=order.farm_id,
                customer_id=order.customer_id,
                user_id=recipient.id,
                data=in_app_json(row),
                now=now,
            )
    if any(row.status is NotificationStatus.QUEUED for row in rows):
        session.info[NEW_NOTIFICATIONS_KEY] = True
    return rows


def _skip_reason(
    channel: NotificationChannel, recipient: User, has_push: bool, audience: Audience
) -> str | None:
    if channel is NotificationChannel.SMS and not recipient.phone:
        return "No phone number on the account."
    if channel is NotificationChannel.PUSH and not has_push:
        return "No push subscription on the account."
    if (
        channel is NotificationChannel.EMAIL
        and audience == "customer"
        and recipient.email_unsubscribed_at is not None
    ):
        return "Unsubscribed from email."
    return None


def in_app_json(row: OrderNotification) -> dict[str, Any]:
    return {
        "id": row.id,
        "orderId": row.order_id,
        "type": str(row.type),
        "title": row.title,
        "message": row.message,
        "url": row.meta.get("url"),
        "createdAt": iso_z(row.created_at),
        "readAt": iso_z(row.read_at),
    }


# -- what the order use cases call --------------------------------------------------------


async def on_status_change(
    session: AsyncSession,
    order: Order,
    to_status: Any,
    reason: str | None,
    *,
    notify_customer: bool,
    now: datetime,
) -> None:
    type = prefs.STATUS_NOTIFICATIONS.get(to_status)
    if type is None or not notify_customer:
        return
    await enqueue(
        session, order, type, order.customer, "customer", extra={"reason": reason}, now=now
    )


async def on_new_order(session: AsyncSession, order: Order, now: datetime) -> None:
    owner = await session.get(User, order.farm.owner_id)
    assert owner is not None
    await enqueue(session, order, NotificationType.NEW_ORDER, owner, "farm", now=now)


async def on_estimate_moved_later(
    session: AsyncSession, order: Order, previous: datetime, now: datetime
) -> None:
    tz = order.customer.timezone or order.farm.timezone
    await enqueue(
        session,
        order,
        NotificationType.ORDER_DELAYED,
        order.customer,
        "customer",
        extra={"previous_estimate": prefs.format_local(previous, tz)},
        meta={"estimate": iso_z(order.estimated_ready_at), "moved": True},
        now=now,
    )


# -- preferences ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PreferenceView:
    channels: dict[NotificationType, dict[NotificationChannel, bool]]
    quiet_hours_start: str | None
    quiet_hours_end: str | None
    timezone: str
    email_unsubscribed: bool


def _audience_of(user: User, type: NotificationType) -> Audience:
    if type is NotificationType.NEW_ORDER:
        return "farm"
    if type is NotificationType.ORDER_DELAYED and user.role is Role.FARMER:
        return "farm"
    return "customer"


async def get_preferences(session: AsyncSession, user: User) -> PreferenceView:
    overrides = await _overrides(session, user.id)
    return PreferenceView(
        channels={
            type: {
                channel: channel
                in prefs.effective_channels(type, _audience_of(user, type), overrides)
                for channel in NotificationChannel
            }
            for type in NotificationType
        },
        quiet_hours_start=user.quiet_hours_start,
        quiet_hours_end=user.quiet_hours_end,
        timezone=user.timezone,
        email_unsubscribed=user.email_unsubscribed_at is not None,
    )


async def set_preferences(
    session: AsyncSession,
    user: User,
    *,
    channels: dict[NotificationType, dict[NotificationChannel, bool]] | None,
    quiet_hours: tuple[str, str] | bool | None,
    email_unsubscribed: bool | None,
) -> PreferenceView:
    """Apply a partial update. ``quiet_hours``: a (start, end) pair, None to clear, or False
    to leave as is."""
    if channels:
        for type, by_channel in channels.items():
            defaults = prefs.default_channels(type, _audience_of(user, type))
            for channel, enabled in by_channel.items():
                row = await session.get(NotificationPreference, (user.id, type, channel))
                if enabled == (channel in defaults):
                    if row is not None:  # back to the default: forget the override
                        await session.delete(row)
                elif row is None:
                    session.add(
                        NotificationPreference(
                            user_id=user.id, type=type, channel=channel, enabled=enabled
                        )
                    )
                else:
                    row.enabled = enabled
    if quiet_hours is not False:
        user.quiet_hours_start, user.quiet_hours_end = quiet_hours or (None, None)
    if email_unsubscribed is not None:
        user.email_unsubscribed_at = utcnow() if email_unsubscribed else None
    await session.flush()
    return await get_preferences(session, user)


async def unsubscribe_email(session: AsyncSession, notifier: Notifier, token: str) -> User:
    user_id = notifier.unsubscribe_user_id(token)
    user = await session.get(User, user_id) if user_id else None
    if user is None:
        raise NotFound("This unsubscribe link is not valid.")
    if user.email_unsubscribed_at is None:
        user.email_unsubscribed_at = utcnow()
    return user


# -- in-app centre --------------------------------------------------------------------------


async def list_in_app(
    session: AsyncSession,
    user: User,
    *,
    unread: bool,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[OrderNotification]:
    query = select(OrderNotification).where(
        OrderNotification.user_id == user.id,
        OrderNotification.channel == NotificationChannel.IN_APP,
    )
    if unread:
        query = query.where(OrderNotification.read_at.is_(None))
    return list(await session.scalars(newest_first(query, OrderNotification, before, limit)))


async def unread_count(session: AsyncSession, user: User) -> int:
    return int(
        await session.scalar(
            select(func.count())
            .select_from(OrderNotification)
            .where(
                OrderNotification.user_id == user.id,
                OrderNotification.channel == NotificationChannel.IN_APP,
                OrderNotification.read_at.is_(None),
            )
        )
        or 0
    )


async def mark_read(session: AsyncSession, user: User, notification_id: str) -> OrderNotification:
    row = await session.get(OrderNotification, notification_id)
    if row is None or row.user_id != user.id or row.channel is not NotificationChannel.IN_APP:
        raise NotificationNotFound()
    if row.read_at is None:
        row.read_at = utcnow()
    await session.flush()
    return row


async def mark_all_read(session: AsyncSession, user: User) -> int:
    result = await session.execute(
        update(OrderNotification)
        .where(
            OrderNotification.user_id == user.id,
            OrderNotification.channel == NotificationChannel.IN_APP,
            OrderNotification.read_at.is_(None),
        )
        .values(read_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# -- delivery log, resend, admin ------------------------------------------------------------


async def delivery_log(session: AsyncSession, order_id: str) -> list[OrderNotification]:
    query = (
        select(OrderNotification)
        .where(OrderNotification.order_id == order_id)
        .order_by(OrderNotification.created_at, OrderNotification.id)
    )
    return list(await session.scalars(query))


async def resend_latest(
    session: AsyncSession, order: Order, by: User, *, now: datetime | None = None
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
            headers={"Retry-After": str(wait)},
        )
    if len(recent) >= settings.resend_max_per_day:
        wait = int((recent[-1] + timedelta(days=1) - now).total_seconds()) + 1
        raise TooManyRequests(
            "This order's notifications were resent too often today.",
            headers={"Retry-After": str(wait)},
        )
    session.add(
        NotificationResend(order_id=order.id, requested_by=by.id, type=latest.type, created_at=now)
    )
    extra = {key: latest.meta[key] for key in ("reason",) if key in latest.meta}
    rows = await enqueue(
        session,
        order,
        latest.type,
        order.customer,
        "customer",
        extra=extra,
        meta={"resendOf": latest.id, "requestedBy": by.id},
        now=now,
    )
    return latest.type, rows


async def admin_list(
    session: AsyncSession,
    *,
    statuses: Sequence[NotificationStatus],
    channel: NotificationChannel | None,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[OrderNotification]:
    query = select(OrderNotification)
    if statuses:
        query = query.where(OrderNotification.status.in_(statuses))
    if channel is not None:
        query = query.where(OrderNotification.channel == channel)
    return list(await session.scalars(newest_first(query, OrderNotification, before, limit)))


async def admin_retry(
    session: AsyncSession, admin: User, notification_id: str, *, now: datetime | None = None
) -> OrderNotification:
    now = now or utcnow()
    row = await session.get(OrderNotification, notification_id, with_for_update=True)
    if row is None:
        raise NotificationNotFound()
    if row.status not in (NotificationStatus.FAILED, NotificationStatus.SKIPPED):
        raise Conflict(
            f"Only FAILED or SKIPPED notifications can be retried (this one is {row.status})."
        )
    row.status = NotificationStatus.QUEUED
    row.attempts = 0
    row.next_attempt_at = now
    row.lease_until = None
    row.claimed_by = None
    row.updated_at = now
    row.meta = {
        **row.meta,
        "retriedBy": admin.id,
        "retriedAt": iso_z(now),
        "previousError": row.last_error,
    }
    await session.flush()
    session.info[NEW_NOTIFICATIONS_KEY] = True
    return row


async def counts_by_channel(session: AsyncSession) -> dict[str, dict[str, int]]:
    rows = await session.execute(
        select(OrderNotification.channel, OrderNotification.status, func.count()).group_by(
            OrderNotification.channel, OrderNotification.status
        )
    )
    result: dict[str, dict[str, int]] = {
        str(channel): {str(status): 0 for status in NotificationStatus}
        for channel in NotificationChannel
    }
    for channel, status, count in rows:
        result[str(channel)][str(status)] = int(count)
    return result


# -- web push subscriptions -----------------------------------------------------------------


class PushSubscriptionNotFound(NotFound):
    message = "Push subscription not found."


def check_push_endpoint(settings: Settings, endpoint: str) -> None:
    """Only a known push service may be the target: the server POSTs to this URL."""
    from urllib.parse import urlsplit

    from farmstand.errors import Unprocessable

    parts = urlsplit(endpoint)
    host = (parts.hostname or "").lower()
    secure = parts.scheme == "https" or (parts.scheme == "http" and settings.push_allow_http)
    known = any(host == h or host.endswith("." + h) for h in settings.push_hosts)
    if not secure or not known:
        raise Unprocessable(
            "The endpoint is not a known Web Push service.",
            details=[{"field": "endpoint", "message": "must be an https URL of a push service"}],
        )


async def add_push_subscription(
    session: AsyncSession,
    user: User,
    *,
    endpoint: str,
    p256dh: str,
    auth: str,
    user_agent: str | None,
) -> PushSubscription:
    """Save the browser's subscription; the same endpoint moves to whoever signed in last."""
    check_push_endpoint(notifier_of(session).settings, endpoint)
    row = await session.scalar(
        select(PushSubscription).where(PushSubscription.endpoint == endpoint).with_for_update()
    )
    if row is None:
        row = PushSubscription(
            endpoint=endpoint,
            user_id=user.id,
            p256dh=p256dh,
            auth=auth,
            user_agent=(user_agent or "")[:300] or None,
        )
        try:
            async with session.begin_nested():
                session.add(row)
        except IntegrityError:  # the same browser subscribed twice at once
            row = await session.scalar(
                select(PushSubscription).where(PushSubscription.endpoint == endpoint)
            )
            assert row is not None
    row.user_id, row.p256dh, row.auth = user.id, p256dh, auth
    await session.flush()
    return row


async def remove_push_subscription(session: AsyncSession, user: User, sub_id: str) -> None:
    row = await session.get(PushSubscription, sub_id)
    if row is None or row.user_id != user.id:
        raise PushSubscriptionNotFound()
    await session.delete(row)
    await session.flush()
