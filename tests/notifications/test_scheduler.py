"""Delays and reminders: each sent once, with time controlled by the test."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from farmstand.accounts.roles import Role
from farmstand.notifications.models import OrderReminder
from farmstand.notifications.scheduler import Scheduler
from farmstand.orders.models import Order
from farmstand.orders.states import OrderStatus
from tests.notifications.helpers import rows_of

T0 = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)


async def set_order(factory, order_id: str, **values) -> None:
    async with factory.db.transaction() as session:
        await session.execute(update(Order).where(Order.id == order_id).values(**values))


def scheduler(factory, **overrides) -> Scheduler:
    settings = factory.runtime.settings.model_copy(update=overrides)
    return Scheduler(factory.db, settings)


async def test_a_late_order_is_announced_once_to_customer_and_farm(factory):
    farmer = await factory.user(Role.FARMER)
    order = await factory.order(farm=await factory.farm(farmer), status=OrderStatus.PREPARING)
    await set_order(factory, order.id, estimated_ready_at=T0)
    sched = scheduler(factory)

    assert (await sched.run_once(now=T0 - timedelta(minutes=1)))["delayed"] == 0
    assert (await sched.run_once(now=T0 + timedelta(minutes=1)))["delayed"] == 1
    assert (await sched.run_once(now=T0 + timedelta(minutes=2)))["delayed"] == 0

    rows = await rows_of(factory, order.id, type="ORDER_DELAYED")
    customer_rows = {str(r.channel) for r in rows if r.user_id == order.customer_id}
    farm_rows = {str(r.channel) for r in rows if r.user_id == farmer.id}
    assert customer_rows == {"EMAIL", "PUSH", "IN_APP"}
    assert farm_rows == {"IN_APP"}  # the farmer's alert for the late order


async def test_a_new_later_estimate_that_also_passes_is_announced_again(factory):
    order = await factory.order(status=OrderStatus.CONFIRMED)
    await set_order(factory, order.id, estimated_ready_at=T0)
    sched = scheduler(factory)
    await sched.run_once(now=T0 + timedelta(minutes=1))
    await set_order(factory, order.id, estimated_ready_at=T0 + timedelta(hours=1))
    assert (await sched.run_once(now=T0 + timedelta(minutes=30)))["delayed"] == 0
    assert (await sched.run_once(now=T0 + timedelta(hours=1, minutes=1)))["delayed"] == 1


async def test_a_ready_order_is_not_late(factory):
    order = await factory.order(status=OrderStatus.READY_FOR_PICKUP)
    await set_order(factory, order.id, estimated_ready_at=T0)
    assert (await scheduler(factory).run_once(now=T0 + timedelta(hours=1)))["delayed"] == 0


async def test_a_waiting_order_gets_one_reminder_per_window(factory):
    customer = await factory.user(phone="+14155550123")
    order = await factory.order(status=OrderStatus.READY_FOR_PICKUP, customer=customer)
    await set_order(factory, order.id, ready_at=T0)
    sched = scheduler(factory, reminder_after_hours=2)

    assert (await sched.run_once(now=T0 + timedelta(hours=1)))["waiting"] == 0
    assert (await sched.run_once(now=T0 + timedelta(hours=2, minutes=1)))["waiting"] == 1
    assert (await sched.run_once(now=T0 + timedelta(hours=3)))["waiting"] == 0
    assert (await sched.run_once(now=T0 + timedelta(hours=4, minutes=2)))["waiting"] == 1

    rows = await rows_of(factory, order.id, type="ORDER_REMINDER")
    assert sorted(str(r.channel) for r in rows) == [
        "IN_APP",
        "IN_APP",
        "PUSH",
        "PUSH",
        "SMS",
        "SMS",
    ]


async def test_a_pickup_slot_reminder_goes_once_before_the_slot(factory):
    order = await factory.order(status=OrderStatus.READY_FOR_PICKUP)
    slot = T0 + timedelta(hours=5)
    await set_order(factory, order.id, ready_at=T0, estimated_pickup_at=slot)
    sched = scheduler(factory, reminder_before_pickup_minutes=60, reminder_after_hours=100)

    assert (await sched.run_once(now=slot - timedelta(minutes=90)))["slot"] == 0
    assert (await sched.run_once(now=slot - timedelta(minutes=50)))["slot"] == 1
    assert (await sched.run_once(now=slot - timedelta(minutes=10)))["slot"] == 0
    [in_app] = [
        r
        for r in await rows_of(factory, order.id, type="ORDER_REMINDER")
        if str(r.channel) == "IN_APP"
    ]
    assert in_app.meta["reminder"] == "slot"


async def test_several_schedulers_at_once_still_send_each_notice_once(factory):
    orders = [await factory.order(status=OrderStatus.PREPARING) for _ in range(5)]
    for order in orders:
        await set_order(factory, order.id, estimated_ready_at=T0)
    schedulers = [scheduler(factory) for _ in range(4)]

    results = await asyncio.gather(*(s.run_once(now=T0 + timedelta(minutes=1)) for s in schedulers))

    assert sum(r["delayed"] for r in results) == 5
    for order in orders:
        in_app = [
            r
            for r in await rows_of(factory, order.id, type="ORDER_DELAYED")
            if str(r.channel) == "IN_APP" and r.user_id == order.customer_id
        ]
        assert len(in_app) == 1


async def test_reminders_leave_the_order_row_untouched(factory):
    # Given a late order and a ready one waiting for pickup
    late = await factory.order(status=OrderStatus.PREPARING)
    await set_order(factory, late.id, estimated_ready_at=T0)
    waiting = await factory.order(status=OrderStatus.READY_FOR_PICKUP)
    await set_order(factory, waiting.id, ready_at=T0, estimated_pickup_at=T0 + timedelta(hours=3))
    before = {order.id: await order_row(factory, order.id) for order in (late, waiting)}

    # When the scheduler sends a delay notice and both kinds of reminder
    sched = scheduler(factory, reminder_after_hours=2, reminder_before_pickup_minutes=60)
    sent = await sched.run_once(now=T0 + timedelta(hours=2, minutes=30))
    assert sent == {"delayed": 1, "waiting": 1, "slot": 1}

    # Then the orders (their version, updated_at, every column) are as they were: only the
    # notifications package's own table remembers what went out
    for order_id, row in before.items():
        assert await order_row(factory, order_id) == row
    async with factory.db.transaction() as session:
        marks = {r.order_id: r for r in await session.execute(select(OrderReminder.__table__))}
    assert marks[late.id].late_notified_for == T0
    assert marks[waiting.id].ready_reminder_at == T0 + timedelta(hours=2, minutes=30)
    assert marks[waiting.id].pickup_reminder_for == T0 + timedelta(hours=3)


async def order_row(factory, order_id: str) -> tuple:
    async with factory.db.transaction() as session:
        table = Order.__table__
        return tuple((await session.execute(select(table).where(table.c.id == order_id))).one())
