"""Delays and reminders, found by time. Runs inside every dispatcher; each order is claimed
with a conditional UPDATE, so with several schedulers running each message goes out once."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.accounts.models import User
from farmstand.config import Settings
from farmstand.db import Database, utcnow
from farmstand.notifications import service
from farmstand.notifications.models import NotificationType
from farmstand.orders import repository as orders_repo
from farmstand.orders.models import Order
from farmstand.orders.states import OrderStatus
from farmstand.schemas import iso_z

log = logging.getLogger(__name__)

Notify = Callable[[AsyncSession, Order], Awaitable[None]]
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

    async def _sweep(self, condition: Any, claim: dict[str, Any], notify: Notify) -> int:
        """Claim each order matching ``condition`` (setting ``claim`` only if it still
        matches) and write its notifications in the same transaction; returns how many."""
        async with self._db.transaction(write=False) as session:
            ids = list(await session.scalars(select(Order.id).where(condition).limit(BATCH)))
        sent = 0
        for order_id in ids:
            async with self._db.transaction() as session:
                result = await session.execute(
                    update(Order)
                    .where(Order.id == order_id, condition)
                    .values(**claim)
                    .execution_options(synchronize_session=False)
                )
                if result.rowcount != 1:  # type: ignore[attr-defined]
                    continue  # another scheduler got there first, or the order moved on
                order = await orders_repo.get_order(session, order_id)
                assert order is not None
                await notify(session, order)
                sent += 1
        return sent

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

        async def notify(session: AsyncSession, order: Order) -> None:
            meta = {"estimate": iso_z(order.estimated_ready_at), "late": True}
            owner = await session.get(User, order.farm.owner_id)
            assert owner is not None
            for recipient, audience in ((order.customer, "customer"), (owner, "farm")):
                await service.enqueue(
                    session,
                    order,
                    NotificationType.ORDER_DELAYED,
                    recipient,
                    audience,
                    meta=meta,
                    now=now,
                )  # type: ignore[arg-type]

        sent = await self._sweep(late, {"late_notified_for": Order.estimated_ready_at}, notify)
        if sent:
            log.info("sent delay notices for %d late order(s)", sent)
        return sent

    def _reminder(self, kind: str, now: datetime) -> Notify:
        async def notify(session: AsyncSession, order: Order) -> None:
            await service.enqueue(
                session,
                order,
                NotificationType.ORDER_REMINDER,
                order.customer,
                "customer",
                extra={"reminder_kind": kind},
                meta={"reminder": kind},
                now=now,
            )

        return notify

    async def _waiting_reminders(self, now: datetime) -> int:
        cutoff = now - self._wait
        waiting = and_(
            Order.status == OrderStatus.READY_FOR_PICKUP,
            Order.ready_at <= cutoff,
            or_(Order.ready_reminder_at.is_(None), Order.ready_reminder_at <= cutoff),
        )
        return await self._sweep(
            waiting, {"ready_reminder_at": now}, self._reminder("waiting", now)
        )

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
        return await self._sweep(
            soon, {"pickup_reminder_for": Order.estimated_pickup_at}, self._reminder("slot", now)
        )
