"""The success metrics over a period, against known data on SQLite and PostgreSQL: rates,
medians and P90s worked out by hand, an empty period, and the period's validation."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import delete

from farmstand.accounts.models import User
from farmstand.accounts.roles import Role
from farmstand.catalog.models import Farm
from farmstand.errors import Unprocessable
from farmstand.notifications.models import (
    DeliveryStatus,
    NotificationChannel,
    NotificationStatus,
    NotificationType,
    OrderNotification,
)
from farmstand.orders import metrics, service
from farmstand.orders.metrics import Period, Rate, percentile
from farmstand.orders.schemas import OrderPatch
from farmstand.orders.states import FulfillmentType, OrderStatus
from tests.factories import Factory

PERIOD = Period(date(2026, 3, 1), date(2026, 3, 7))
S = OrderStatus


def at(day: int, hour: int = 10) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


async def walk(
    factory: Factory,
    farm: Farm,
    owner: User,
    placed: datetime,
    steps: list[tuple[OrderStatus, timedelta]],
    fulfillment: FulfillmentType = FulfillmentType.PICKUP,
) -> str:
    """An order placed at ``placed`` and moved through ``steps``, each that long after the
    previous change (items prepared and tracking set on the way, as the farm would)."""
    order = await factory.order(farm=farm, placed_at=placed, fulfillment=fulfillment)
    when = placed
    async with factory.db.transaction() as session:
        for target, after in steps:
            when += after
            if target in (S.READY_FOR_PICKUP, S.OUT_FOR_DELIVERY):
                for item in order.items:
                    await service.set_item_prepared(session, owner, order.id, item.id, True)
            await service.change_status(
                session,
                owner,
                order.id,
                target,
                policy=factory.runtime.order_policy,
                reason="test reason",
                now=when,
            )
    return order.id


def notification(
    order_id: str | None,
    channel: NotificationChannel,
    status: NotificationStatus,
    created_at: datetime,
    delivery: DeliveryStatus | None = None,
) -> OrderNotification:
    return OrderNotification(
        order_id=order_id,
        type=NotificationType.ORDER_CONFIRMED,
        channel=channel,
        title="t",
        message="m",
        meta={},
        status=status,
        delivery_status=delivery,
        created_at=created_at,
        updated_at=created_at,
    )


@pytest.fixture
async def known(factory: Factory) -> dict[str, Farm]:
    """Farm A (pickup): completed; ready then cancelled (a no-show); cancelled once
    confirmed; still pending; and one placed before the period. Farm B: a delivery order
    completed. Confirmations 10/20/30 min (A), 40 min (B); ready 60/120 min after (A), out
    for delivery 30 min after (B)."""
    alice = await factory.user(Role.FARMER)
    bob = await factory.user(Role.FARMER)
    a = await factory.farm(alice, name="Apple Acres")
    b = await factory.farm(bob, name="Bean Barn")
    o1 = await walk(
        factory,
        a,
        alice,
        at(2),
        [
            (S.CONFIRMED, minutes(10)),
            (S.PREPARING, minutes(5)),
            (S.READY_FOR_PICKUP, minutes(55)),
            (S.COMPLETED, minutes(30)),
        ],
    )
    await walk(
        factory,
        a,
        alice,
        at(2, 11),
        [
            (S.CONFIRMED, minutes(20)),
            (S.PREPARING, minutes(60)),
            (S.READY_FOR_PICKUP, minutes(60)),
            (S.CANCELLED, timedelta(days=1)),
        ],
    )
    await walk(factory, a, alice, at(3), [(S.CONFIRMED, minutes(30)), (S.CANCELLED, minutes(5))])
    await walk(factory, a, alice, at(4), [])
    await walk(  # placed before the period: left out, however it went
        factory, a, alice, datetime(2026, 2, 28, 23, 59, tzinfo=UTC), [(S.CONFIRMED, minutes(1))]
    )
    o6 = await walk(
        factory,
        b,
        bob,
        at(5),
        [
            (S.CONFIRMED, minutes(40)),
            (S.PREPARING, minutes(10)),
            (S.OUT_FOR_DELIVERY, minutes(20)),
            (S.COMPLETED, minutes(60)),
        ],
        fulfillment=FulfillmentType.DELIVERY,
    )
    async with factory.db.transaction() as session:
        # Only the notifications below count: forget the ones the changes queued.
        await session.execute(delete(OrderNotification))
        email, sms = NotificationChannel.EMAIL, NotificationChannel.SMS
        sent, failed = NotificationStatus.SENT, NotificationStatus.FAILED
        session.add_all(
            [
                notification(o1, email, sent, at(2)),
                notification(o1, email, sent, at(2)),
                notification(o1, email, failed, at(2)),
                notification(o1, email, NotificationStatus.QUEUED, at(2)),  # still going
                notification(o1, sms, NotificationStatus.SKIPPED, at(2)),  # never attempted
                notification(o6, sms, sent, at(5), DeliveryStatus.UNDELIVERED),
                notification(o6, sms, sent, at(5), DeliveryStatus.DELIVERED),
                notification(None, email, sent, at(6)),  # an account email
                notification(o1, email, failed, datetime(2026, 3, 8, tzinfo=UTC)),  # after
            ]
        )
    return {"a": a, "b": b}


async def test_rates_medians_and_p90_per_farm_and_overall(factory: Factory, known):
    async with factory.db.transaction(write=False) as session:
        result = await metrics.success_metrics(session, PERIOD)

    a, b = result.farms
    assert (a.farm_name, b.farm_name) == ("Apple Acres", "Bean Barn")
    # Farm A: 4 placed in the period, 1 open, 3 finished: 1 completed, 2 cancelled.
    assert (a.placed, a.open) == (4, 1)
    assert a.completion == Rate(1, 3) and a.cancellation == Rate(2, 3)
    # Two pickup orders were ready and are done; one was cancelled while ready.
    assert a.no_show == Rate(1, 2)
    # Confirmations after 10, 20, 30 min: median 20, P90 at rank 1.8 = 20 + 0.8 * 10.
    assert (a.to_confirm.count, a.to_confirm.median, a.to_confirm.p90) == (
        3,
        minutes(20),
        minutes(28),
    )
    # Ready 60 and 120 min after confirming: median 90, P90 = 60 + 0.9 * 60.
    assert (a.to_ready.median, a.to_ready.p90) == (minutes(90), minutes(114))
    assert a.delivery == Rate(2, 3)

    assert (b.placed, b.open, b.completion, b.cancellation) == (1, 0, Rate(1, 1), Rate(0, 1))
    assert b.no_show == Rate(0, 0) and b.no_show.value is None  # delivery: no no-shows
    assert (b.to_confirm.median, b.to_ready.median, b.to_ready.p90) == (
        minutes(40),
        minutes(30),
        minutes(30),
    )
    assert b.delivery == Rate(1, 2)  # the undelivered SMS counts against

    every = result.overall
    assert (every.placed, every.open) == (5, 1)
    assert every.completion == Rate(2, 4) and every.cancellation == Rate(2, 4)
    assert every.no_show == Rate(1, 2)
    # 10, 20, 30, 40: median 25; P90 at rank 2.7 = 30 + 0.7 * 10.
    assert (every.to_confirm.median, every.to_confirm.p90) == (minutes(25), minutes(37))
    # 30, 60, 120: median 60; P90 at rank 1.8 = 60 + 0.8 * 60.
    assert (every.to_ready.median, every.to_ready.p90) == (minutes(60), minutes(108))
    channels = result.channels
    assert channels[NotificationChannel.EMAIL] == Rate(3, 4)  # the account email included
    assert channels[NotificationChannel.SMS] == Rate(1, 2)
    assert channels[NotificationChannel.PUSH].value is None
    assert every.delivery == Rate(4, 6)


async def test_an_empty_period_has_no_figures_and_divides_by_nothing(factory: Factory, known):
    async with factory.db.transaction(write=False) as session:
        result = await metrics.success_metrics(session, Period(date(2025, 1, 1), date(2025, 1, 7)))

    assert result.farms == []
    every = result.overall
    assert every.placed == 0
    for rate in (every.completion, every.cancellation, every.no_show, every.delivery):
        assert rate.value is None
    assert every.to_confirm.median is None and every.to_ready.p90 is None
    assert all(rate.value is None for rate in result.channels.values())


async def test_orders_by_status_counts_every_status(factory: Factory):
    await factory.order(status=S.CONFIRMED)
    await factory.order(status=S.CONFIRMED)
    await factory.order(status=S.COMPLETED)
    async with factory.db.transaction(write=False) as session:
        counts = await metrics.orders_by_status(session)
    assert counts[S.CONFIRMED] == 2 and counts[S.COMPLETED] == 1 and counts[S.PENDING] == 0
    assert set(counts) == set(OrderStatus)


def test_percentiles_interpolate_between_the_nearest_ranks():
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.9) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([0.0, 10.0], 0.9) == 9.0


def test_the_period_defaults_to_the_last_seven_days_and_is_checked():
    today = date(2026, 3, 10)
    assert metrics.period_of(None, "", today) == Period(date(2026, 3, 4), today)
    assert metrics.period_of("2026-01-01", "2026-12-31", today).days == 365
    for first, last, field in [
        ("2026-03-05", "2026-03-04", "to"),
        ("2025-01-01", "2026-01-02", "to"),  # 367 days
        ("yesterday", "2026-03-04", "from"),
    ]:
        with pytest.raises(Unprocessable) as refused:
            metrics.period_of(first, last, today)
        assert refused.value.details[0]["field"] == field


async def test_a_shipping_order_is_ready_when_it_goes_out(factory: Factory):
    farmer = await factory.user(Role.FARMER)
    farm = await factory.farm(farmer)
    order = await factory.order(farm=farm, placed_at=at(2), fulfillment=FulfillmentType.SHIPPING)
    async with factory.db.transaction() as session:
        policy = factory.runtime.order_policy
        await service.change_status(
            session, farmer, order.id, S.CONFIRMED, policy=policy, now=at(2, 11)
        )
        await service.change_status(
            session, farmer, order.id, S.PREPARING, policy=policy, now=at(2, 12)
        )
        for item in order.items:
            await service.set_item_prepared(session, farmer, order.id, item.id, True)
        await service.update_details(session, farmer, order.id, OrderPatch(tracking_number="1Z"))
        await service.change_status(
            session, farmer, order.id, S.OUT_FOR_DELIVERY, policy=policy, now=at(2, 14)
        )
    async with factory.db.transaction(write=False) as session:
        result = await metrics.success_metrics(session, PERIOD)
    assert result.overall.to_ready.median == timedelta(hours=3)
    assert result.overall.to_confirm.median == timedelta(hours=1)
