"""Channels paused after a provider-wide failure, shared by every dispatcher through the
``notification_channel_states`` table.

When a provider fails for everyone (SMTP unreachable or refusing our login, Twilio answering
5xx or 429), retrying each message on its own schedule would only burn their attempts. The
dispatcher that sees it pauses the channel instead: no dispatcher claims the channel's
messages until ``paused_until``; then one of them takes the probe (a conditional update, so
only one) and sends a single message. A success, or a failure that is the message's own,
ends the pause; another provider failure pauses again, for twice as long (up to the max).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.config import Settings
from farmstand.notifications.models import ChannelState, NotificationChannel


@dataclass(frozen=True)
class ChannelHealth:
    channel: NotificationChannel
    failures: int  # provider failures in a row; 0: healthy
    paused_until: datetime | None
    paused_since: datetime | None
    last_error: str | None

    @property
    def troubled(self) -> bool:
        return self.failures > 0

    def paused(self, now: datetime) -> bool:
        return self.failures > 0 and self.paused_until is not None and self.paused_until > now


async def read(session: AsyncSession) -> dict[NotificationChannel, ChannelHealth]:
    """Every channel's state (channels never troubled have no row)."""
    rows = await session.scalars(select(ChannelState))
    return {
        row.channel: ChannelHealth(
            row.channel, row.failures, row.paused_until, row.paused_since, row.last_error
        )
        for row in rows
    }


def pause_length(failures: int, settings: Settings, retry_after: float | None) -> timedelta:
    """Base * 2^(failures-1), capped; never shorter than a provider's Retry-After."""
    seconds = min(
        settings.notification_pause_max_seconds,
        settings.notification_pause_base_seconds * 2 ** max(0, min(failures - 1, 30)),
    )
    if retry_after is not None:
        seconds = max(seconds, min(retry_after, settings.notification_pause_max_seconds))
    return timedelta(seconds=seconds)


async def take_probe(
    session: AsyncSession, channel: NotificationChannel, now: datetime, lease: timedelta
) -> bool:
    """Whether this dispatcher probes the channel whose pause is over. The probe holds the
    channel for ``lease`` (another dispatcher takes over if this one dies meanwhile)."""
    result = await session.execute(
        update(ChannelState)
        .where(
            ChannelState.channel == channel,
            ChannelState.failures > 0,
            (ChannelState.paused_until.is_(None)) | (ChannelState.paused_until <= now),
        )
        .values(paused_until=now + lease, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def pause(
    session: AsyncSession,
    settings: Settings,
    channel: NotificationChannel,
    error: str,
    now: datetime,
    *,
    probing: bool,
    retry_after: float | None = None,
) -> datetime:
    """Record a provider failure: pause the channel for longer than the last time. A
    dispatcher that finds it already paused by another (the same outage, seen twice) leaves
    the pause as it is. Returns the end of the pause."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    await session.execute(
        insert(ChannelState)
        .values(channel=channel, failures=0, updated_at=now)
        .on_conflict_do_nothing(index_elements=["channel"])
    )
    state = await session.scalar(
        select(ChannelState)
        .where(ChannelState.channel == channel)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert state is not None
    already = state.failures > 0 and state.paused_until is not None and state.paused_until > now
    if already and not probing:
        return state.paused_until or now
    state.failures += 1
    state.paused_until = now + pause_length(state.failures, settings, retry_after)
    state.paused_since = state.paused_since or now
    state.last_error = error[:2000]
    state.updated_at = now
    await session.flush()
    return state.paused_until


async def resume(session: AsyncSession, channel: NotificationChannel, now: datetime) -> None:
    """The provider answered for a message: the channel is healthy again (the last error is
    kept for the admin page)."""
    await session.execute(
        update(ChannelState)
        .where(ChannelState.channel == channel, ChannelState.failures > 0)
        .values(failures=0, paused_until=None, paused_since=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
