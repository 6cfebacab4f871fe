"""Who gets what by default, and quiet hours. Pure: no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from farmstand.notifications.models import NotificationChannel, NotificationType
from farmstand.orders.states import OrderStatus

Audience = Literal["customer", "farm"]

C = NotificationChannel
T = NotificationType

# The notification a customer gets when their order enters a status.
STATUS_NOTIFICATIONS: dict[OrderStatus, NotificationType] = {
    OrderStatus.CONFIRMED: T.ORDER_CONFIRMED,
    OrderStatus.PREPARING: T.ORDER_PREPARING,
    OrderStatus.READY_FOR_PICKUP: T.ORDER_READY,
    OrderStatus.OUT_FOR_DELIVERY: T.ORDER_OUT_FOR_DELIVERY,
    OrderStatus.COMPLETED: T.ORDER_COMPLETED,
    OrderStatus.CANCELLED: T.ORDER_CANCELLED,
    OrderStatus.REFUNDED: T.ORDER_REFUNDED,
}

DEFAULTS: dict[tuple[NotificationType, Audience], frozenset[NotificationChannel]] = {
    (T.ORDER_CONFIRMED, "customer"): frozenset({C.EMAIL, C.IN_APP}),
    (T.ORDER_PREPARING, "customer"): frozenset({C.IN_APP}),
    (T.ORDER_READY, "customer"): frozenset({C.EMAIL, C.SMS, C.PUSH, C.IN_APP}),
    (T.ORDER_OUT_FOR_DELIVERY, "customer"): frozenset({C.SMS, C.PUSH, C.IN_APP}),
    (T.ORDER_COMPLETED, "customer"): frozenset({C.EMAIL, C.IN_APP}),
    (T.ORDER_CANCELLED, "customer"): frozenset({C.EMAIL, C.IN_APP}),
    (T.ORDER_REFUNDED, "customer"): frozenset({C.EMAIL, C.IN_APP}),
    (T.ORDER_DELAYED, "customer"): frozenset({C.EMAIL, C.PUSH, C.IN_APP}),
    (T.ORDER_REMINDER, "customer"): frozenset({C.SMS, C.PUSH, C.IN_APP}),
    (T.NEW_ORDER, "farm"): frozenset({C.EMAIL, C.PUSH, C.IN_APP}),
    (T.ORDER_DELAYED, "farm"): frozenset({C.IN_APP}),
}

# Channels that interrupt: they wait for quiet hours to end.
INTERRUPTING = frozenset({C.SMS, C.PUSH})


def default_channels(type: NotificationType, audience: Audience) -> frozenset[NotificationChannel]:
    return DEFAULTS.get((type, audience), frozenset({C.IN_APP}))


def effective_channels(
    type: NotificationType,
    audience: Audience,
    overrides: dict[tuple[NotificationType, NotificationChannel], bool],
) -> list[NotificationChannel]:
    """The defaults for this type, with the user's own choices applied; in a fixed order."""
    defaults = default_channels(type, audience)
    return [
        channel
        for channel in NotificationChannel
        if overrides.get((type, channel), channel in defaults)
    ]


def parse_hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def quiet_until(
    now: datetime, start: str | None, end: str | None, timezone: str
) -> datetime | None:
    """When quiet hours (``start`` to ``end`` local time, may span midnight) end, if ``now`` is
    inside them; None otherwise."""
    if not start or not end or start == end:
        return None
    tz = zone(timezone)
    local = now.astimezone(tz)
    begin, finish = parse_hhmm(start), parse_hhmm(end)
    today = local.date()
    for day in (today - timedelta(days=1), today):
        window_start = datetime.combine(day, begin, tzinfo=tz)
        window_end = datetime.combine(
            day + timedelta(days=1) if finish <= begin else day, finish, tzinfo=tz
        )
        if window_start <= local < window_end:
            return window_end.astimezone(UTC)
    return None


def format_local(value: datetime | None, timezone: str) -> str | None:
    """A time as the recipient reads it: 'Tue 25 Nov, 4:30 PM PST'."""
    if value is None:
        return None
    local = value.astimezone(zone(timezone))
    hour = local.strftime("%I").lstrip("0") or "12"
    return f"{local:%a} {local.day} {local:%b}, {hour}:{local:%M} {local:%p} {local.tzname()}"
