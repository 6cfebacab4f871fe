"""Delays and reminders, found by time. Runs inside every dispatcher; each order is claimed
with a conditional UPDATE, so with several schedulers running each message goes out once."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update

from farmstand.accounts.models import User
from farmstand.config import Settings
from farmstand.db import Database, utcnow
from farmstand.notifications import preferences as prefs
from farmstand.notifications import service
from farmstand.notifications.models import NotificationType
from farmstand.orders import repository as orders_repo
from farmstand.orders.models import Order
from farmstand.orders.states import OrderStatus

log = logging.getLogger(__name__)

NOT_YET_READY = (OrderStatus.PENDING, OrderStatus.CONFIRMED, OrderStatus.PREPARING)
BATCH = 200


class Scheduler:
    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._wait = timedelta(hours=settings.reminder_after_hours)
        self._lead = timedelta(minutes=settings.reminder_before_pickup_minutes)

    async def run_once(self, now: datetime | None = None) -> dict[str, int]:
        now = now or utcnow()
        return {
            "delayed": await self._late_orders(now),
            "waiting": await self._waiting_reminders(now),
            "slot": await self._slot_reminders(now),
        }

    async def _candidates(self, condition: Any) -> list[str]:
        async with self._db.transaction(write=False) as session:
            return list(await session.scalars(select(Order.id).where(condition).limit(BATCH)))

    async def _claim_and_notify(
        self, order_id: str, condition: Any, values: dict[str, Any], notify: Any
    ) -> bool:
        async with self._db.transaction() as session:
            result = await session.execute(
                update(Order)
                .where(Order.id == order_id, condition)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return False  # another scheduler got there first, or the order moved on
            order = await orders_repo.get_order(session, order_id)
            assert order is not None
            await notify(session, order)
            return True

    async def _late_orders(self, now: datetime) -> int:
        late = and_(
            Order.status.in_(NOT_YET_READY),
            Order.estimated_ready_at.is_not(None),
            Order.estimated_ready_at <= now,
            or_(
                Order.late_notified_for.is_(None),
                Order.late_notified_for != Order.estimated_ready_at,
            ),
        )

        async def notify(session: Any, order: Order) -> None:
            estimate = order.estimated_ready_at
            await service.enqueue(
                session,
                order,
                NotificationType.ORDER_DELAYED,
                order.customer,
                "customer",
                meta={"estimate": estimate.isoformat() if estimate else None, "late": True},
                now=now,
            )
            owner = await session.get(User, order.farm.owner_id)
            await service.enqueue(
                session,
                order,
                NotificationType.ORDER_DELAYED,
                owner,
                "farm",
                meta={"estimate": estimate.isoformat() if estimate else None, "late": True},
                now=now,
            )

        sent = 0
        for order_id in await self._candidates(late):
            if await self._claim_and_notify(
                order_id, late, {"late_notified_for": Order.estimated_ready_at}, notify
            ):
                sent += 1
        if sent:
            log.info("sent delay notices for %d late order(s)", sent)
        return sent

    async def _waiting_reminders(self, now: datetime) -> int:
        cutoff = now - self._wait
        waiting = and_(
            Order.status == OrderStatus.READY_FOR_PICKUP,
            Order.ready_at <= cutoff,
            or_(Order.ready_reminder_at.is_(None), Order.ready_reminder_at <= cutoff),
        )

        async def notify(session: Any, order: Order) -> None:
            await service.enqueue(
                session,
                order,
                NotificationType.ORDER_REMINDER,
                order.customer,
                "customer",
                extra={"reminder_kind": "waiting"},
                meta={"reminder": "waiting"},
                now=now,
            )

        sent = 0
        for order_id in await self._candidates(waiting):
            if await self._claim_and_notify(order_id, waiting, {"ready_reminder_at": now}, notify):
                sent += 1
        return sent

    async def _slot_reminders(self, now: datetime) -> int:
        soon = and_(
            Order.status == OrderStatus.READY_FOR_PICKUP,
            Order.estimated_pickup_at.is_not(None),
            Order.estimated_pickup_at > now,
            Order.estimated_pickup_at <= now + self._lead,
            or_(
                Order.pickup_reminder_for.is_(None),
                Order.pickup_reminder_for != Order.estimated_pickup_at,
            ),
        )

        async def notify(session: Any, order: Order) -> None:
            await service.enqueue(
                session,
                order,
                NotificationType.ORDER_REMINDER,
                order.customer,
                "customer",
                extra={"reminder_kind": "slot"},
                meta={"reminder": "slot"},
                now=now,
            )

        sent = 0
        for order_id in await self._candidates(soon):
            if await self._claim_and_notify(
                order_id, soon, {"pickup_reminder_for": Order.estimated_pickup_at}, notify
            ):
                sent += 1
        return sent


__all__ = ["Scheduler", "prefs"]
