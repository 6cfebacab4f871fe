"""Account emails: a verification link for a new registration, and a note to an account's
owner that someone tried to register with their email.

They are rows of the same outbox as order notifications (``order_notifications``, with no
order), written in the transaction of the registration and sent by the same dispatcher, so
they go out at least once even across crashes. They are sent whatever the preferences (an
account email is not a marketing one), by email only, and rendered when sent: the link is
made then, from the pending registration's id, and is never stored; the delivery log keeps
the message with the link taken out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.db import write_together
from farmstand.notifications.models import (
    NotificationChannel,
    NotificationType,
    OrderNotification,
)
from farmstand.notifications.outbox import (
    Notifier,
    Planned,
    mark_written,
    notifications_write,
    notifier_of,
    queued_row,
)
from farmstand.notifications.templates import Rendered

LINK_REMOVED = "[link removed from the log]"
TITLES = {
    NotificationType.ACCOUNT_VERIFY: "Confirm your email for Farmstand",
    NotificationType.ACCOUNT_EXISTS: "Someone tried to register with your email",
}


async def enqueue(
    session: AsyncSession,
    type: NotificationType,
    *,
    user_id: str | None,
    email: str,
    name: str,
    now: datetime,
    pending_id: str | None = None,
) -> None:
    """Write one account email to ``email`` in the caller's transaction."""
    meta: dict[str, Any] = {"email": email, "name": name}
    if pending_id is not None:
        meta["pendingId"] = pending_id
    row = queued_row(
        order_id=None,
        user_id=user_id,
        type=type,
        channel=NotificationChannel.EMAIL,
        title=TITLES[type],
        meta=meta,
        now=now,
    )
    await write_together(session, [notifications_write([row], prefix="a")])
    mark_written(session, Planned([row], []))


@dataclass(frozen=True)
class AccountMessage:
    email: str
    name: str
    rendered: Rendered
    url: str
    logged_text: str  # what the delivery log keeps: the text without the link


def render(notifier: Notifier, row: OrderNotification) -> AccountMessage:
    """The email for an account row, with its link made now."""
    meta = row.meta or {}
    email, name = str(meta.get("email", "")), str(meta.get("name", ""))
    if row.type is NotificationType.ACCOUNT_VERIFY:
        url = notifier.verification_url(str(meta["pendingId"]))
    else:
        url = notifier.sign_in_url()
    context = {
        "recipient_name": name,
        "email": email,
        "url": url,
        "ttl_hours": f"{notifier.settings.email_verification_ttl_hours:g}",
    }
    rendered = notifier.templates.render(row.type, NotificationChannel.EMAIL, context)
    return AccountMessage(
        email=email,
        name=name,
        rendered=rendered,
        url=url,
        logged_text=rendered.text.replace(url, LINK_REMOVED),
    )


__all__ = ["AccountMessage", "enqueue", "notifier_of", "render"]
