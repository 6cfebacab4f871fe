"""Claiming due notifications with a lease, so that many dispatchers can run side by side:
which rows are due, the claim itself, keeping a claim while its batch is sent, and giving up
on claims whose worker died with no attempts left."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.config import Settings
from farmstand.notifications.models import (
    NotificationChannel,
    NotificationStatus,
    OrderNotification,
)


def retry_window(settings: Settings) -> timedelta:
    """How long a notification is retried for (with ``notification_max_attempts``)."""
    return timedelta(hours=settings.notification_retry_hours)


def due(now: datetime) -> Any:
    return and_(
        OrderNotification.channel != NotificationChannel.IN_APP,
        or_(
            and_(
                OrderNotification.status == NotificationStatus.QUEUED,
                OrderNotification.next_attempt_at <= now,
            ),
            # A claim whose worker died: its lease ran out, someone else takes it over.
            and_(
                OrderNotification.status == NotificationStatus.SENDING,
                OrderNotification.lease_until < now,
            ),
        ),
    )


async def claim(
    session: AsyncSession,
    settings: Settings,
    worker: str,
    now: datetime,
    *,
    exclude: set[NotificationChannel] | None = None,
    channel: NotificationChannel | None = None,
    limit: int | None = None,
) -> list[OrderNotification]:
    """Take up to ``limit`` (``dispatcher_batch_size``) due rows for ``worker``: SENDING, with
    a lease, the attempt counted."""
    query = (
        select(OrderNotification.id)
        .where(due(now))
        .order_by(OrderNotification.next_attempt_at, OrderNotification.id)
        .limit(limit or settings.dispatcher_batch_size)
    )
    if exclude:
        query = query.where(OrderNotification.channel.not_in(exclude))
    if channel is not None:
        query = query.where(OrderNotification.channel == channel)
    if session.get_bind().dialect.name == "postgresql":
        # Several workers claim side by side: each skips rows another has locked.
        query = query.with_for_update(skip_locked=True)
    ids = list(await session.scalars(query))
    if not ids:
        return []
    lease = now + timedelta(seconds=settings.notification_lease_seconds)
    await session.execute(
        update(OrderNotification)
        .where(OrderNotification.id.in_(ids))
        .values(
            status=NotificationStatus.SENDING,
            claimed_by=worker,
            lease_until=lease,
            attempts=OrderNotification.attempts + 1,
            first_attempt_at=func.coalesce(OrderNotification.first_attempt_at, now),
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    rows = await session.scalars(
        select(OrderNotification)
        .where(OrderNotification.id.in_(ids))
        .execution_options(populate_existing=True)
    )
    return list(rows)


async def renew(
    session: AsyncSession, settings: Settings, worker: str, ids: Sequence[str], now: datetime
) -> None:
    """A full lease again for those of ``ids`` that ``worker`` still holds: one statement."""
    await session.execute(
        update(OrderNotification)
        .where(
            OrderNotification.id.in_(ids),
            OrderNotification.status == NotificationStatus.SENDING,
            OrderNotification.claimed_by == worker,
        )
        .values(lease_until=now + timedelta(seconds=settings.notification_lease_seconds))
        .execution_options(synchronize_session=False)
    )


async def fail_exhausted(
    session: AsyncSession, settings: Settings, now: datetime
) -> list[NotificationChannel]:
    """Claims that ran out of attempts and time while their worker was gone (a message that
    keeps killing its worker, say): give up on them. Returns each one's channel."""
    result = await session.execute(
        update(OrderNotification)
        .where(
            OrderNotification.status == NotificationStatus.SENDING,
            OrderNotification.lease_until < now,
            OrderNotification.attempts >= settings.notification_max_attempts,
            OrderNotification.first_attempt_at <= now - retry_window(settings),
        )
        .values(
            status=NotificationStatus.FAILED,
            lease_until=None,
            updated_at=now,
            last_error="Gave up: the worker sending it stopped, and no attempts are left.",
        )
        .returning(OrderNotification.channel)
        .execution_options(synchronize_session=False)
    )
    return list(result.scalars())
