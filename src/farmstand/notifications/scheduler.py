"""Delays and reminders, found by time. Runs inside every dispatcher; each notice is claimed
with a conditional upsert of the order's ``order_reminders`` row, so with several schedulers
running each message goes out once.

What was already sent lives in ``order_reminders`` (this package's table), never on
``orders``: only the orders package writes that table, and a reminder does not change the
order (its version, which clients compare before a change, stays as it is).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, bindparam, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.config import Settings
from farmstand.db import Database, UTCDateTime, utcnow
from farmstand.notifications.models import NotificationType, OrderReminder
from farmstand.notifications.outbox import enqueue
from farmstand.notifications.preferences import Audience
from farmstand.orders import repository as orders_repo
from farmstand.orders.models import Order
from farmstand.orders.records import OrderRecord
from farmstand.orders.states import OrderStatus
from farmstand.schemas import iso_z

log = logging.getLogger(__name__)

Notify = Callable[[AsyncSession, OrderRecord], Awaitable[None]]
# Whether the mark already on the order (the reminders row's column) still lets it go out,
# given the value this claim would write: re-checked under the row's lock.
StillDue = Callable[[ColumnElement[Any], ColumnElement[Any]], ColumnElement[bool]]
NOT_YET_READY = (OrderStatus.PENDING, OrderStatus.CONFIRMED, OrderStatus.PREPARING)
BATCH = 200

ORDERS = cast(Table, Order.__table__)
REMINDERS = cast(Table, OrderReminder.__table__)
SENT = REMINDERS.alias("sent")  # the order's marks, as the sweep reads them
NOW = bindparam("now", type_=UTCDateTime())
CUTOFF = bindparam("cutoff", type_=UTCDateTime())


def _changed(mark: ColumnElement[Any], value: ColumnElement[Any]) -> ColumnElement[bool]:
    return or_(mark.is_(None), mark != value)


def _claim_statement(
    dialect: str,
    orders: Any,
    due: ColumnElement[bool],
    mark: str,
    value: ColumnElement[Any],
    still_due: StillDue,
) -> Any:
    """Upsert the order's reminders row with ``value`` in ``mark`` if the order is ``due``
    and, under the row's lock, ``still_due``; returns the order id only when claimed."""
    insert_ = pg_insert if dialect == "postgresql" else sqlite_insert
    source = (
        select(ORDERS.c.id, value)
        .select_from(orders)
        .where(ORDERS.c.id == bindparam("order_id"), due)
    )
    claim = insert_(REMINDERS).from_select(["order_id", mark], source)
    return claim.on_conflict_do_update(
        index_elements=[REMINDERS.c.order_id],
        set_={mark: claim.excluded[mark]},
        where=still_due(REMINDERS.c[mark], claim.excluded[mark]),
    ).returning(REMINDERS.c.order_id)


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

    async def _sweep(
        self,
        due: ColumnElement[bool],
        mark: str,
        value: ColumnElement[Any],
        still_due: StillDue,
        params: dict[str, Any],
        notify: Notify,
    ) -> int:
        """Claim each order ``due`` (over ``orders`` and its marks ``SENT``) by writing
        ``value`` to its ``mark``, only if still due, and write its notifications in the same
        transaction; returns how many."""
        orders = ORDERS.outerjoin(SENT, SENT.c.order_id == ORDERS.c.id)
        async with self._db.transaction(write=False, background=True) as session:
            found = await session.scalars(
                select(ORDERS.c.id).select_from(orders).where(due).limit(BATCH), params
            )
            ids = list(found)
        sent = 0
        for order_id in ids:
            async with self._db.transaction(background=True) as session:
                claim = _claim_statement(
                    session.get_bind().dialect.name, orders, due, mark, value, still_due
                )
                claimed = await session.execute(claim, {**params, "order_id": order_id})
                if claimed.first() is None:
                    continue  # another scheduler got there first, or the order moved on
                loaded = await orders_repo.load_order(session, order_id)
                assert loaded is not None
                await notify(session, loaded[0])
                sent += 1
        return sent

    async def _late_orders(self, now: datetime) -> int:
        estimate = ORDERS.c.estimated_ready_at
        late = and_(
            ORDERS.c.status.in_(NOT_YET_READY),
            estimate.is_not(None),
            estimate <= NOW,
            _changed(SENT.c.late_notified_for, estimate),
        )

        async def notify(session: AsyncSession, order: OrderRecord) -> None:
            meta = {"estimate": iso_z(order.estimated_ready_at), "late": True}
            recipients: tuple[tuple[str, Audience], ...] = (
                (order.customer_id, "customer"),
                (order.farm_owner_id, "farm"),
            )
            for recipient_id, audience in recipients:
                await enqueue(
                    session,
                    order,
                    NotificationType.ORDER_DELAYED,
                    recipient_id,
                    audience,
                    meta=meta,
                    now=now,
                )

        sent = await self._sweep(
            late, "late_notified_for", estimate, _changed, {"now": now}, notify
        )
        if sent:
            log.info("sent delay notices for %d late order(s)", sent)
        return sent

    def _reminder(self, kind: str, now: datetime) -> Notify:
        async def notify(session: AsyncSession, order: OrderRecord) -> None:
            await enqueue(
                session,
                order,
                NotificationType.ORDER_REMINDER,
                order.customer_id,
                "customer",
                extra={"reminder_kind": kind},
                meta={"reminder": kind},
                now=now,
            )

        return notify

    async def _waiting_reminders(self, now: datetime) -> int:
        def not_recent(mark: ColumnElement[Any], _value: ColumnElement[Any]) -> ColumnElement[bool]:
            return or_(mark.is_(None), mark <= CUTOFF)

        waiting = and_(
            ORDERS.c.status == OrderStatus.READY_FOR_PICKUP,
            ORDERS.c.ready_at <= CUTOFF,
            not_recent(SENT.c.ready_reminder_at, NOW),
        )
        return await self._sweep(
            waiting,
            "ready_reminder_at",
            NOW,
            not_recent,
            {"now": now, "cutoff": now - self._wait},
            self._reminder("waiting", now),
        )

    async def _slot_reminders(self, now: datetime) -> int:
        slot = ORDERS.c.estimated_pickup_at
        soon = and_(
            ORDERS.c.status == OrderStatus.READY_FOR_PICKUP,
            slot.is_not(None),
            slot > NOW,
            slot <= bindparam("horizon", type_=UTCDateTime()),
            _changed(SENT.c.pickup_reminder_for, slot),
        )
        return await self._sweep(
            soon,
            "pickup_reminder_for",
            slot,
            _changed,
            {"now": now, "horizon": now + self._lead},
            self._reminder("slot", now),
        )
