"""The in-app notification centre: a user's notifications, unread counts, marking read."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.accounts.principal import Person
from farmstand.db import utcnow
from farmstand.notifications.errors import NotificationNotFound
from farmstand.notifications.models import NotificationChannel, OrderNotification
from farmstand.schemas import newest_first


async def list_in_app(
    session: AsyncSession,
    user: Person,
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


async def unread_count(session: AsyncSession, user: Person) -> int:
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


async def mark_read(session: AsyncSession, user: Person, notification_id: str) -> OrderNotification:
    row = await session.get(OrderNotification, notification_id)
    if row is None or row.user_id != user.id or row.channel is not NotificationChannel.IN_APP:
        raise NotificationNotFound()
    if row.read_at is None:
        row.read_at = utcnow()
    await session.flush()
    return row


async def mark_all_read(session: AsyncSession, user: Person) -> int:
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
