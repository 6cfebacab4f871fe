"""Who gets what: the defaults per type and audience and quiet hours (pure rules, no I/O),
then each user's own settings: reading and changing them, and one-click email unsubscribe."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from farmstand import zones
from farmstand.accounts.models import User
from farmstand.accounts.principal import Person
from farmstand.accounts.roles import Role
from farmstand.accounts.service import account_changed
from farmstand.db import utcnow
from farmstand.notifications.errors import UnsubscribeLinkInvalid
from farmstand.notifications.models import (
    ORDER_TYPES,
    NotificationChannel,
    NotificationPreference,
    NotificationType,
)
from farmstand.orders.states import OrderStatus

if TYPE_CHECKING:
    from farmstand.notifications.outbox import Notifier

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


def quiet_until(
    now: datetime, start: str | None, end: str | None, timezone: str
) -> datetime | None:
    """When quiet hours (``start`` to ``end`` local time, may span midnight) end, if ``now`` is
    inside them; None otherwise."""
    if not start or not end or start == end:
        return None
    tz = zones.zone(timezone)
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
    local = value.astimezone(zones.zone(timezone))
    hour = local.strftime("%I").lstrip("0") or "12"
    return f"{local:%a} {local.day} {local:%b}, {hour}:{local:%M} {local:%p} {local.tzname()}"


# -- a user's settings ----------------------------------------------------------------------


async def _overrides(
    session: AsyncSession, user_id: str
) -> dict[tuple[NotificationType, NotificationChannel], bool]:
    rows = await session.scalars(
        select(NotificationPreference).where(NotificationPreference.user_id == user_id)
    )
    return {(row.type, row.channel): row.enabled for row in rows}


@dataclass(frozen=True)
class PreferenceView:
    channels: dict[NotificationType, dict[NotificationChannel, bool]]
    quiet_hours_start: str | None
    quiet_hours_end: str | None
    timezone: str
    email_unsubscribed: bool


def _audience_of(user: Person, type: NotificationType) -> Audience:
    if type is NotificationType.NEW_ORDER:
        return "farm"
    if type is NotificationType.ORDER_DELAYED and user.role is Role.FARMER:
        return "farm"
    return "customer"


async def get_preferences(session: AsyncSession, person: Person) -> PreferenceView:
    user = await session.get_one(User, person.id)
    overrides = await _overrides(session, user.id)
    return PreferenceView(
        channels={
            type: {
                channel: channel in effective_channels(type, _audience_of(user, type), overrides)
                for channel in NotificationChannel
            }
            for type in ORDER_TYPES
        },
        quiet_hours_start=user.quiet_hours_start,
        quiet_hours_end=user.quiet_hours_end,
        timezone=user.timezone,
        email_unsubscribed=user.email_unsubscribed_at is not None,
    )


async def set_preferences(
    session: AsyncSession,
    person: Person,
    *,
    channels: dict[NotificationType, dict[NotificationChannel, bool]] | None,
    quiet_hours: tuple[str, str] | bool | None,
    email_unsubscribed: bool | None,
    timezone: str | None = None,
) -> PreferenceView:
    """Apply a partial update. ``quiet_hours``: a (start, end) pair, None to clear, or False
    to leave as is; ``timezone`` (the zone quiet hours are in) None to leave as is."""
    user = await session.get_one(User, person.id, with_for_update=True)
    if channels:
        for type, by_channel in channels.items():
            defaults = default_channels(type, _audience_of(user, type))
            for channel, enabled in by_channel.items():
                row = await session.get(NotificationPreference, (user.id, type, channel))
                if enabled == (channel in defaults):
                    if row is not None:  # back to the default: forget the override
                        await session.delete(row)
                elif row is None:
                    session.add(
                        NotificationPreference(
                            user_id=user.id, type=type, channel=channel, enabled=enabled
                        )
                    )
                else:
                    row.enabled = enabled
    if isinstance(quiet_hours, tuple):
        user.quiet_hours_start, user.quiet_hours_end = quiet_hours
    elif quiet_hours is None:
        user.quiet_hours_start = user.quiet_hours_end = None
    if email_unsubscribed is not None and email_unsubscribed != (
        user.email_unsubscribed_at is not None
    ):
        user.email_unsubscribed_at = utcnow() if email_unsubscribed else None
    zone_changed = False
    if timezone is not None and timezone != user.timezone:
        user.timezone, zone_changed = timezone, True
    # The links in emails sent so far were for the settings as they were.
    revoke_unsubscribe_links(user)
    await session.flush()
    if quiet_hours is not False or email_unsubscribed is not None or zone_changed:
        account_changed(session, user.id, reason="notification settings changed")
    return await get_preferences(session, user)


# -- email unsubscribe (a signed link in each email) ----------------------------------------


def revoke_unsubscribe_links(user: User) -> None:
    """Every unsubscribe link sent to ``user`` so far stops working."""
    user.unsubscribe_key = secrets.token_urlsafe(16)


async def unsubscribe_link_user(
    session: AsyncSession, notifier: Notifier, token: str, *, lock: bool = False
) -> User:
    """The user an unsubscribe link is for, if it is theirs, unexpired and not revoked."""
    user_id = notifier.unsubscribe_claim(token)
    user = await session.get(User, user_id, with_for_update=lock) if user_id else None
    if user is None or not notifier.unsubscribe_valid(token, user):
        raise UnsubscribeLinkInvalid()
    return user


async def unsubscribe_email(session: AsyncSession, notifier: Notifier, token: str) -> None:
    """One-click unsubscribe: no more order emails; the link (and all older ones) is spent."""
    user = await unsubscribe_link_user(session, notifier, token, lock=True)
    if user.email_unsubscribed_at is None:
        user.email_unsubscribed_at = utcnow()
    revoke_unsubscribe_links(user)
    await session.flush()
    account_changed(session, user.id, reason="unsubscribed from email")
