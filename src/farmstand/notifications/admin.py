"""Admin use cases across all farms: list notifications, retry one, requeue the failed ones
after an outage, counts per channel and status, channel health."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.accounts.principal import Person
from farmstand.catalog.models import Farm
from farmstand.db import utcnow
from farmstand.errors import Conflict
from farmstand.notifications import pauses
from farmstand.notifications.errors import NotificationNotFound
from farmstand.notifications.models import (
    NotificationChannel,
    NotificationStatus,
    OrderNotification,
)
from farmstand.notifications.outbox import NEW_NOTIFICATIONS_KEY
from farmstand.orders.models import Order
from farmstand.schemas import iso_z, newest_first


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


@dataclass(frozen=True)
class FailedNotification:
    """A failed notification as the admin's page lists it: the row and its order's number and
    farm (None for account emails, which have no order)."""

    row: OrderNotification
    order_number: str | None
    farm_name: str | None

    @property
    def id(self) -> str:
        return self.row.id

    @property
    def created_at(self) -> datetime:
        return self.row.created_at


async def admin_failed(
    session: AsyncSession,
    *,
    channel: NotificationChannel | None,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[FailedNotification]:
    """FAILED notifications, newest first, with their order's number and farm: one statement."""
    query = (
        select(OrderNotification, Order.order_number, Farm.name)
        .outerjoin(Order, Order.id == OrderNotification.order_id)
        .outerjoin(Farm, Farm.id == Order.farm_id)
        .where(OrderNotification.status == NotificationStatus.FAILED)
    )
    if channel is not None:
        query = query.where(OrderNotification.channel == channel)
    paged = newest_first(cast("Select[Any]", query), OrderNotification, before, limit)
    rows = await session.execute(paged)
    return [FailedNotification(row[0], row[1], row[2]) for row in rows]


async def admin_retry(
    session: AsyncSession, admin: Person, notification_id: str, *, now: datetime | None = None
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
    row.first_attempt_at = None
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


async def requeue_failed(
    session: AsyncSession,
    *,
    channel: NotificationChannel | None,
    since: datetime | None,
    until: datetime | None,
    now: datetime | None = None,
) -> int:
    """Put every FAILED notification of ``channel`` (all when None) created in [since, until)
    back in the queue with fresh attempts (after an outage, say). One statement."""
    now = now or utcnow()
    query = update(OrderNotification).where(OrderNotification.status == NotificationStatus.FAILED)
    if channel is not None:
        query = query.where(OrderNotification.channel == channel)
    if since is not None:
        query = query.where(OrderNotification.created_at >= since)
    if until is not None:
        query = query.where(OrderNotification.created_at < until)
    result = await session.execute(
        query.values(
            status=NotificationStatus.QUEUED,
            attempts=0,
            first_attempt_at=None,
            next_attempt_at=now,
            lease_until=None,
            claimed_by=None,
            updated_at=now,
        ).execution_options(synchronize_session=False)
    )
    count = int(result.rowcount or 0)  # type: ignore[attr-defined]
    if count:
        session.info[NEW_NOTIFICATIONS_KEY] = True
    return count


async def channel_health(session: AsyncSession) -> dict[str, pauses.ChannelHealth]:
    """Each channel whose provider failed lately: paused now, or healthy with its last error."""
    return {str(channel): health for channel, health in (await pauses.read(session)).items()}


async def counts_by_channel(
    session: AsyncSession, *, since: datetime | None = None
) -> dict[str, dict[str, int]]:
    """Notifications by channel and status; with ``since``, only those whose status last
    changed since then (sent, failed, queued again: ``updated_at``), such as today's."""
    query = select(OrderNotification.channel, OrderNotification.status, func.count())
    if since is not None:
        query = query.where(OrderNotification.updated_at >= since)
    rows = await session.execute(
        query.group_by(OrderNotification.channel, OrderNotification.status)
    )
    result: dict[str, dict[str, int]] = {
        str(channel): {str(status): 0 for status in NotificationStatus}
        for channel in NotificationChannel
    }
    for channel, status, count in rows:
        result[str(channel)][str(status)] = int(count)
    return result
