"""What deciding a notification needs to know about its recipient, read in the same statement
as the order it is about (see ``orders.repository.load_order``) or on its own."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Boolean,
    ColumnElement,
    FromClause,
    Table,
    Text,
    exists,
    func,
    literal,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.accounts.models import User
from farmstand.notifications.models import (
    NotificationChannel,
    NotificationPreference,
    NotificationType,
    PushSubscription,
)


@dataclass(frozen=True, slots=True)
class RecipientFacts:
    id: str
    name: str
    email: str
    phone: str | None
    timezone: str
    quiet_hours_start: str | None
    quiet_hours_end: str | None
    email_unsubscribed_at: datetime | None
    unsubscribe_key: str | None
    # The recipient's own choices for the notification type in question.
    overrides: dict[NotificationChannel, bool]
    has_push: bool


def recipient_columns(
    users: FromClause, type: ColumnElement[Any], dialect: str
) -> list[ColumnElement[Any]]:
    """Columns to add to a query that joins ``users`` (the recipient), for notifications of
    ``type``; read back with ``facts_from``."""
    prefs = cast(Table, NotificationPreference.__table__)
    pair = (
        func.json_build_array(prefs.c.channel, prefs.c.enabled)
        if dialect == "postgresql"
        else func.json_array(prefs.c.channel, prefs.c.enabled)
    )
    aggregate = func.json_agg(pair) if dialect == "postgresql" else func.json_group_array(pair)
    overrides = (
        select(aggregate)
        .where(prefs.c.user_id == users.c.id, prefs.c.type == type)
        .scalar_subquery()
        .label("r_overrides")
    )
    push = cast(Table, PushSubscription.__table__)
    has_push = exists().where(push.c.user_id == users.c.id).correlate(users).label("r_has_push")
    return [
        users.c.id.label("r_id"),
        users.c.name.label("r_name"),
        users.c.email.label("r_email"),
        users.c.phone.label("r_phone"),
        users.c.timezone.label("r_timezone"),
        users.c.quiet_hours_start.label("r_quiet_start"),
        users.c.quiet_hours_end.label("r_quiet_end"),
        users.c.email_unsubscribed_at.label("r_unsubscribed_at"),
        users.c.unsubscribe_key.label("r_unsubscribe_key"),
        overrides.cast(Text) if dialect == "postgresql" else overrides,
        has_push.cast(Boolean) if dialect == "postgresql" else has_push,
    ]


def facts_from(row: Any) -> RecipientFacts:
    raw = row.r_overrides
    pairs = json.loads(raw) if isinstance(raw, str) else (raw or [])
    return RecipientFacts(
        id=row.r_id,
        name=row.r_name,
        email=row.r_email,
        phone=row.r_phone,
        timezone=row.r_timezone,
        quiet_hours_start=row.r_quiet_start,
        quiet_hours_end=row.r_quiet_end,
        email_unsubscribed_at=row.r_unsubscribed_at,
        unsubscribe_key=row.r_unsubscribe_key,
        overrides={NotificationChannel(channel): bool(enabled) for channel, enabled in pairs},
        has_push=bool(row.r_has_push),
    )


async def load_recipient(
    session: AsyncSession, user_id: str, type: NotificationType
) -> RecipientFacts | None:
    users = cast(Table, User.__table__)
    dialect = session.get_bind().dialect.name
    row = (
        await (await session.connection()).execute(
            select(*recipient_columns(users, literal(str(type)), dialect)).where(
                users.c.id == user_id
            )
        )
    ).first()
    return facts_from(row) if row is not None else None
