"""Retention: notifications that are done (SENT, FAILED, SKIPPED) are deleted once older than
``notification_retention_days``, in short batches."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from farmstand.db import Database
from farmstand.notifications.models import NotificationStatus, OrderNotification

PRUNE_EVERY = timedelta(hours=1)
PRUNE_BATCH = 1000  # rows per DELETE: short transactions, never a table-long lock
_TERMINAL = (NotificationStatus.SENT, NotificationStatus.FAILED, NotificationStatus.SKIPPED)


async def prune(
    db: Database, cutoff: datetime, *, stopping: Callable[[], bool] = lambda: False
) -> int:
    """Delete SENT, FAILED and SKIPPED rows created before ``cutoff``, in batches of
    ``PRUNE_BATCH`` (one short transaction each) until none is left or ``stopping()``.
    Returns how many went."""
    removed = 0
    while True:
        async with db.transaction(background=True) as session:
            ids = list(
                await session.scalars(
                    select(OrderNotification.id)
                    .where(
                        OrderNotification.created_at < cutoff,
                        OrderNotification.status.in_(_TERMINAL),
                    )
                    .limit(PRUNE_BATCH)
                )
            )
            if ids:
                await session.execute(
                    delete(OrderNotification)
                    .where(OrderNotification.id.in_(ids))
                    .execution_options(synchronize_session=False)
                )
        removed += len(ids)
        if len(ids) < PRUNE_BATCH or stopping():
            return removed
        await asyncio.sleep(0)  # let the rest of the process in between batches
