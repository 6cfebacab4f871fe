"""The spec's success metrics over a period, per farm and overall, and the order counts of the
admin overview. Read-only; three statements for the metrics, one for the counts.

Every metric is about the orders PLACED in the period (``created_at`` in [from 00:00 UTC,
to + 1 day 00:00 UTC)), so a period's figures do not change as later periods happen, except
while its orders are still open:

- completion rate: orders completed (``completed_at`` set, a later refund included) out of
  the finished ones (no longer open: COMPLETED, CANCELLED or REFUNDED);
- cancellation rate: orders cancelled (``cancelled_at`` set) out of the finished ones; the
  two add up to 100 %;
- no-show rate: PICKUP orders cancelled after they were READY_FOR_PICKUP (``ready_at`` and
  ``cancelled_at`` both set: the state machine lets only the farm or an admin cancel a ready
  order, and nothing leads back to READY) out of the pickup orders that were ready and are
  no longer waiting. The data cannot tell why the farm cancelled a ready order; every such
  cancellation counts. Delivery and shipping orders cannot be cancelled once out, so they
  have no no-shows;
- time to confirm: ``confirmed_at - created_at``; time to ready: from ``confirmed_at`` to
  ``ready_at`` (pickup) or ``out_for_delivery_at`` (delivery, shipping); median and P90 by
  linear interpolation between the nearest ranks (PostgreSQL's ``percentile_cont``),
  computed here from one query of the period's timestamps, the same on both databases;
- notification delivery rate (``notifications_by_channel``): over the notifications
  created in the period, the ones SENT (and not reported undelivered by the provider) out
  of those whose attempts are over (SENT or FAILED; QUEUED and SENDING are still going,
  SKIPPED ones were never attempted: no phone number, no push device).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast

from sqlalchemy import Table, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.catalog.models import Farm
from farmstand.errors import Unprocessable
from farmstand.notifications.models import (
    DeliveryStatus,
    NotificationChannel,
    NotificationStatus,
    OrderNotification,
)
from farmstand.orders.models import Order
from farmstand.orders.states import OPEN_STATUSES, FulfillmentType, OrderStatus

ORDERS = cast(Table, Order.__table__)
FARMS = cast(Table, Farm.__table__)
NOTIFICATIONS = cast(Table, OrderNotification.__table__)

MAX_PERIOD_DAYS = 366
DEFAULT_PERIOD_DAYS = 7
DELIVERY_TARGET = 0.95  # the spec's "95%+ notification delivery"


# -- the period -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """Whole UTC days, both ends included."""

    first: date
    last: date

    @property
    def since(self) -> datetime:
        return datetime.combine(self.first, time(), tzinfo=UTC)

    @property
    def until(self) -> datetime:
        return datetime.combine(self.last + timedelta(days=1), time(), tzinfo=UTC)

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


def default_period(today: date) -> Period:
    return Period(today - timedelta(days=DEFAULT_PERIOD_DAYS - 1), today)


def period_of(first: str | None, last: str | None, today: date) -> Period:
    """The period a form asks for (``YYYY-MM-DD``; a blank end is the default's), or a 422
    whose details name the field at fault (``from``, ``to``)."""
    default = default_period(today)
    errors: list[dict[str, str]] = []

    def parse(raw: str | None, name: str, fallback: date) -> date:
        if raw is None or not raw.strip():
            return fallback
        try:
            return date.fromisoformat(raw.strip())
        except ValueError:
            errors.append({"field": name, "message": "Enter a date as YYYY-MM-DD."})
            return fallback

    start = parse(first, "from", default.first)
    end = parse(last, "to", default.last)
    if not errors and start > end:
        errors.append({"field": "to", "message": "The end must not be before the start."})
    elif not errors and (end - start).days + 1 > MAX_PERIOD_DAYS:
        errors.append(
            {"field": "to", "message": f"Choose a period of at most {MAX_PERIOD_DAYS} days."}
        )
    if errors:
        raise Unprocessable("Check the period.", details=errors)
    return Period(start, end)


# -- the figures ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    part: int
    whole: int

    @property
    def value(self) -> float | None:
        """None when there is nothing to divide by."""
        return self.part / self.whole if self.whole else None

    def __add__(self, other: Rate) -> Rate:
        return Rate(self.part + other.part, self.whole + other.whole)


NO_RATE = Rate(0, 0)


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The ``fraction`` percentile of sorted ``values``, interpolating between the nearest
    ranks (as ``percentile_cont``); None for no values."""
    if not values:
        return None
    rank = fraction * (len(values) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return values[low] + (values[high] - values[low]) * (rank - low)


@dataclass(frozen=True)
class Durations:
    count: int
    median: timedelta | None
    p90: timedelta | None

    @classmethod
    def of(cls, seconds: Iterable[float]) -> Durations:
        ordered = sorted(seconds)
        median, p90 = percentile(ordered, 0.5), percentile(ordered, 0.9)
        return cls(
            count=len(ordered),
            median=None if median is None else timedelta(seconds=median),
            p90=None if p90 is None else timedelta(seconds=p90),
        )


@dataclass(frozen=True)
class FarmMetrics:
    """One farm's figures (``farm_id`` None: all farms together)."""

    farm_id: str | None
    farm_name: str
    placed: int = 0
    open: int = 0
    completion: Rate = NO_RATE
    cancellation: Rate = NO_RATE
    no_show: Rate = NO_RATE
    to_confirm: Durations = Durations(0, None, None)
    to_ready: Durations = Durations(0, None, None)
    delivery: Rate = NO_RATE  # the farm's order notifications, every channel


@dataclass(frozen=True)
class SuccessMetrics:
    period: Period
    overall: FarmMetrics
    farms: list[FarmMetrics]
    channels: dict[NotificationChannel, Rate] = field(default_factory=dict)


def _count(condition: Any) -> Any:
    # COUNT of a CASE without ELSE counts the rows meeting the condition, on both databases.
    return func.count(case((condition, 1)))


async def success_metrics(session: AsyncSession, period: Period) -> SuccessMetrics:
    """The period's metrics per farm (farms with orders placed in it, by name) and overall."""
    connection = await session.connection()
    placed = (ORDERS.c.created_at >= period.since) & (ORDERS.c.created_at < period.until)
    pickup_ready = (ORDERS.c.fulfillment_type == FulfillmentType.PICKUP) & (
        ORDERS.c.ready_at.is_not(None)
    )
    counts = await connection.execute(
        select(
            FARMS.c.id,
            FARMS.c.name,
            func.count(),
            _count(ORDERS.c.status.in_(sorted(OPEN_STATUSES))),
            _count(ORDERS.c.completed_at.is_not(None)),
            _count(ORDERS.c.cancelled_at.is_not(None)),
            _count(pickup_ready & (ORDERS.c.status != OrderStatus.READY_FOR_PICKUP)),
            _count(pickup_ready & ORDERS.c.cancelled_at.is_not(None)),
        )
        .select_from(ORDERS.join(FARMS, FARMS.c.id == ORDERS.c.farm_id))
        .where(placed)
        .group_by(FARMS.c.id, FARMS.c.name)
    )
    times = await connection.execute(
        select(
            ORDERS.c.farm_id,
            ORDERS.c.created_at,
            ORDERS.c.confirmed_at,
            func.coalesce(ORDERS.c.ready_at, ORDERS.c.out_for_delivery_at),
        ).where(placed, ORDERS.c.confirmed_at.is_not(None))
    )
    to_confirm: dict[str | None, list[float]] = {None: []}
    to_ready: dict[str | None, list[float]] = {None: []}
    for farm_id, created_at, confirmed_at, ready_at in times:
        for key in (None, farm_id):
            to_confirm.setdefault(key, []).append(_seconds(created_at, confirmed_at))
            if ready_at is not None:
                to_ready.setdefault(key, []).append(_seconds(confirmed_at, ready_at))
    delivery = await notifications_by_channel(session, period)
    farms = []
    for farm_id, name, total, still_open, completed, cancelled, ready_done, no_shows in counts:
        finished = total - still_open
        farms.append(
            FarmMetrics(
                farm_id=farm_id,
                farm_name=name,
                placed=total,
                open=still_open,
                completion=Rate(completed, finished),
                cancellation=Rate(cancelled, finished),
                no_show=Rate(no_shows, ready_done),
                to_confirm=Durations.of(to_confirm.get(farm_id, ())),
                to_ready=Durations.of(to_ready.get(farm_id, ())),
                delivery=sum(delivery.get(farm_id, {}).values(), NO_RATE),
            )
        )
    farms.sort(key=lambda farm: (farm.farm_name.lower(), farm.farm_id or ""))
    channels = {channel: NO_RATE for channel in NotificationChannel}
    for by_channel in delivery.values():
        for channel, rate in by_channel.items():
            channels[channel] = channels[channel] + rate
    overall = FarmMetrics(
        farm_id=None,
        farm_name="All farms",
        placed=sum(farm.placed for farm in farms),
        open=sum(farm.open for farm in farms),
        completion=sum((farm.completion for farm in farms), NO_RATE),
        cancellation=sum((farm.cancellation for farm in farms), NO_RATE),
        no_show=sum((farm.no_show for farm in farms), NO_RATE),
        to_confirm=Durations.of(to_confirm[None]),
        to_ready=Durations.of(to_ready[None]),
        delivery=sum(channels.values(), NO_RATE),
    )
    return SuccessMetrics(period=period, overall=overall, farms=farms, channels=channels)


def _seconds(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds()


async def notifications_by_channel(
    session: AsyncSession, period: Period
) -> dict[str | None, dict[NotificationChannel, Rate]]:
    """Delivered out of attempted-and-over, by the order's farm (None: account emails, which
    have no order) and channel, for the notifications created in the period. One statement."""
    over = NOTIFICATIONS.c.status.in_([NotificationStatus.SENT, NotificationStatus.FAILED])
    delivered = (NOTIFICATIONS.c.status == NotificationStatus.SENT) & (
        NOTIFICATIONS.c.delivery_status.is_(None)
        | (NOTIFICATIONS.c.delivery_status == DeliveryStatus.DELIVERED)
    )
    rows = await (await session.connection()).execute(
        select(ORDERS.c.farm_id, NOTIFICATIONS.c.channel, _count(delivered), _count(over))
        .select_from(NOTIFICATIONS.outerjoin(ORDERS, ORDERS.c.id == NOTIFICATIONS.c.order_id))
        .where(
            NOTIFICATIONS.c.created_at >= period.since,
            NOTIFICATIONS.c.created_at < period.until,
        )
        .group_by(ORDERS.c.farm_id, NOTIFICATIONS.c.channel)
    )
    result: dict[str | None, dict[NotificationChannel, Rate]] = {}
    for farm_id, channel, sent, attempted in rows:
        result.setdefault(farm_id, {})[NotificationChannel(channel)] = Rate(sent, attempted)
    return result


async def orders_by_status(session: AsyncSession) -> dict[OrderStatus, int]:
    """How many orders are in each status now (every status listed, zeros included)."""
    rows = await (await session.connection()).execute(
        select(ORDERS.c.status, func.count()).group_by(ORDERS.c.status)
    )
    counts = {status: 0 for status in OrderStatus}
    for status, count in rows:
        counts[OrderStatus(status)] = int(count)
    return counts
