"""Rendering claimed notifications for their channels: loading what rendering needs in one
go (recipients, orders, push subscriptions), then each row as a ``Delivery``, from the order as
it is now. Done after the claim's commit, never inside a transaction."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.accounts.models import User
from farmstand.notifications import account as account_emails
from farmstand.notifications.channels.base import Delivery, DeliveryError, PushTarget, Recipient
from farmstand.notifications.models import (
    ACCOUNT_TYPES,
    NotificationChannel,
    OrderNotification,
    PushSubscription,
)
from farmstand.notifications.outbox import Notifier, render
from farmstand.orders import repository as orders_repo
from farmstand.orders.records import OrderRecord

log = logging.getLogger(__name__)

Unrenderable = list[tuple[Delivery, DeliveryError]]
"""Rows that could not be rendered, as deliveries to record failed (never sent)."""


@dataclass(frozen=True)
class Facts:
    users: dict[str, User]
    orders: dict[str, OrderRecord]
    targets: dict[str, list[PushTarget]]


async def load_facts(session: AsyncSession, rows: list[OrderNotification]) -> Facts:
    """What rendering the claimed rows needs: recipients, orders, push subscriptions."""
    user_ids = {row.user_id for row in rows if row.user_id is not None}
    users = {u.id: u for u in await session.scalars(select(User).where(User.id.in_(user_ids)))}
    order_ids = {row.order_id for row in rows if row.order_id is not None}
    orders = (
        {order.id: order for order in await orders_repo.load_orders(session, order_ids)}
        if order_ids
        else {}
    )
    targets: defaultdict[str, list[PushTarget]] = defaultdict(list)
    if any(row.channel is NotificationChannel.PUSH for row in rows):
        for sub in await session.scalars(
            select(PushSubscription).where(PushSubscription.user_id.in_(user_ids))
        ):
            targets[sub.user_id].append(PushTarget(sub.id, sub.endpoint, sub.p256dh, sub.auth))
    return Facts(users, orders, targets)


async def render_deliveries(
    notifier: Notifier, rows: list[OrderNotification], facts: Facts
) -> tuple[list[Delivery], Unrenderable]:
    """The claimed rows rendered for their channels: from the order as it is now and what
    each row kept (reason, previous estimate, ...), in the recipient's time zone."""
    users, orders, targets = facts.users, facts.orders, facts.targets
    deliveries: list[Delivery] = []
    unrenderable: Unrenderable = []
    for row in rows:
        if row.type in ACCOUNT_TYPES:
            try:
                deliveries.append(account_delivery(notifier, row))
            except Exception as exc:  # never sent; recorded as failed
                log.exception("could not render account email %s", row.id)
                email = str((row.meta or {}).get("email", ""))
                failed = Delivery(
                    notification_id=row.id,
                    type=row.type,
                    channel=row.channel,
                    recipient=Recipient(row.user_id or "", "", email, None, "UTC"),
                    title=row.title,
                    message=row.message,
                    context={"attempt": row.attempts},
                )
                unrenderable.append(
                    (failed, DeliveryError(f"Could not render: {exc}", permanent=True))
                )
            continue
        assert row.user_id is not None and row.order_id is not None  # order notifications
        user = users[row.user_id]
        order = orders.get(row.order_id)
        try:
            if order is None:
                raise LookupError("the order no longer exists")
            rendered, context = render(notifier, order, row.type, row.channel, user, row.meta)
        except Exception as exc:  # a message that cannot be rendered is never sent
            log.exception("could not render notification %s", row.id)
            failed = Delivery(
                notification_id=row.id,
                type=row.type,
                channel=row.channel,
                recipient=Recipient(user.id, user.name, user.email, user.phone, user.timezone),
                title=row.title,
                message=row.message,
                context=delivery_context(row),
            )
            unrenderable.append((failed, DeliveryError(f"Could not render: {exc}", permanent=True)))
            continue
        if len(deliveries) % 8 == 7:
            await asyncio.sleep(0)  # let requests in between renders
        deliveries.append(
            Delivery(
                notification_id=row.id,
                type=row.type,
                channel=row.channel,
                recipient=Recipient(user.id, user.name, user.email, user.phone, user.timezone),
                title=rendered.title,
                message=rendered.text,
                html=rendered.html,
                url=context["order_url"],
                unsubscribe_url=context["unsubscribe_url"],
                push_targets=tuple(targets.get(row.user_id, ())),
                context=delivery_context(row),
            )
        )
    return deliveries, unrenderable


def account_delivery(notifier: Notifier, row: OrderNotification) -> Delivery:
    """An account email (see notifications/account.py): no order, maybe no user yet."""
    message = account_emails.render(notifier, row)
    return Delivery(
        notification_id=row.id,
        type=row.type,
        channel=row.channel,
        recipient=Recipient(row.user_id or "", message.name, message.email, None, "UTC"),
        title=message.rendered.title,
        message=message.rendered.text,
        html=message.rendered.html,
        url=message.url,
        context={"attempt": row.attempts, "logged": message.logged_text},
    )


def delivery_context(row: OrderNotification) -> dict[str, Any]:
    return {
        "attempt": row.attempts,
        "orderId": row.order_id,
        "firstAttemptAt": row.first_attempt_at,
    }
