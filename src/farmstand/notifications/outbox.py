"""Notification rows written in the transaction of the change that causes them.

``plan`` decides, without I/O, which rows a change writes: one per channel the recipient gets
the type on, each QUEUED for the dispatcher, SKIPPED with the reason (no phone, no push
subscription, unsubscribed), or, for in-app, SENT at once with its NOTIFICATION event. Only
the in-app copy is rendered here (its event carries it); email, SMS and push are rendered by
the dispatcher when it sends them, from the order and what the row keeps (``meta.context``),
so a request never renders an email.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, cast

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.config import Settings
from farmstand.db import Write, insert_rows, new_id, rows_params, write_together
from farmstand.events import service as events
from farmstand.events.models import EventType
from farmstand.notifications import preferences as prefs
from farmstand.notifications.models import (
    NotificationChannel,
    NotificationStatus,
    NotificationType,
    OrderNotification,
)
from farmstand.notifications.preferences import Audience
from farmstand.notifications.recipients import RecipientFacts, load_recipient
from farmstand.notifications.templates import Rendered, Templates
from farmstand.orders.records import OrderRecord
from farmstand.schemas import iso_z

NOTIFIER_KEY = "farmstand.notifier"
NEW_NOTIFICATIONS_KEY = "farmstand.new_notifications"


UNSUBSCRIBE_PATH = "/api/notifications/unsubscribe/"


class Notifier:
    """What writing and rendering a notification needs from the app: settings, templates."""

    def __init__(self, settings: Settings, templates: Templates | None = None) -> None:
        self.settings = settings
        self.templates = templates or Templates()
        assert settings.secret_key is not None
        self._secret = settings.secret_key.get_secret_value()
        self.unsubscribe_max_age = int(settings.unsubscribe_link_days * 86400)

    def order_url(self, order_id: str) -> str:
        return f"{self.settings.base_url}/orders/{order_id}"

    # Unsubscribe links: the token carries the user id and when it was made, signed with the
    # app's secret, the user's ``unsubscribe_key`` and their email address. It works for
    # ``unsubscribe_link_days``, and until the key is replaced (once used, or when the user
    # changes their notification settings) or the address changes.

    def _unsubscribe_signer(self, user: Addressee) -> URLSafeTimedSerializer:
        salt = f"farmstand.unsubscribe\x00{user.unsubscribe_key or ''}\x00{user.email.lower()}"
        return URLSafeTimedSerializer(self._secret, salt=salt)

    def unsubscribe_token(self, user: Addressee) -> str:
        return self._unsubscribe_signer(user).dumps(user.id)

    def unsubscribe_url(self, user: Addressee) -> str:
        """In the path, not the query string: no token in request lines or proxies' logs."""
        return f"{self.settings.base_url}{UNSUBSCRIBE_PATH}{self.unsubscribe_token(user)}"

    @staticmethod
    def unsubscribe_claim(token: str) -> str | None:
        """The user id a token names, NOT verified: only to find whom to check it against."""
        try:
            _, value = URLSafeTimedSerializer("").loads_unsafe(token)
        except Exception:  # any garbage: no claim
            return None
        return value if isinstance(value, str) and 0 < len(value) <= 36 else None

    def verification_url(self, pending_id: str) -> str:
        """The link that verifies a pending registration's email (the token in the path)."""
        from farmstand.accounts.registration import verification_token

        assert self.settings.secret_key is not None
        token = verification_token(self.settings.secret_key.get_secret_value(), pending_id)
        return f"{self.settings.base_url}/api/auth/verify/{token}"

    def sign_in_url(self) -> str:
        return f"{self.settings.base_url}/login"

    def unsubscribe_valid(self, token: str, user: Addressee) -> bool:
        try:
            value = self._unsubscribe_signer(user).loads(token, max_age=self.unsubscribe_max_age)
        except BadSignature:  # forged, altered, revoked or expired (SignatureExpired)
            return False
        return bool(value == user.id)


def notifier_of(session: AsyncSession) -> Notifier:
    notifier = session.info.get(NOTIFIER_KEY)
    if not isinstance(notifier, Notifier):  # a transaction from a Database the app did not set
        raise RuntimeError("this database session has no notifier; use the app's Database")
    return notifier


class Addressee(Protocol):
    """Whom a message is rendered for (a ``RecipientFacts`` or a ``User`` row); the email
    and unsubscribe key sign the unsubscribe link."""

    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def timezone(self) -> str: ...

    @property
    def email(self) -> str: ...

    @property
    def unsubscribe_key(self) -> str | None: ...


def build_context(
    notifier: Notifier,
    order: OrderRecord,
    recipient: Addressee,
    audience: Audience,
    extra: Mapping[str, Any],
    *,
    links: bool = True,
) -> dict[str, Any]:
    """What the templates get: order facts, times in the recipient's zone, links.

    ``links=False`` leaves out the signed unsubscribe link (only email shows it)."""
    tz = recipient.timezone or order.farm_timezone
    order_url = notifier.order_url(order.id)
    return {
        "audience": audience,
        "recipient_name": recipient.name,
        "order_number": order.order_number,
        "order_url": order_url,
        "review_url": f"{order_url}#review",
        "dashboard_url": f"{notifier.settings.base_url}/farm",
        "farm_name": order.farm_name,
        "customer_name": order.customer_name,
        "fulfillment_type": str(order.fulfillment_type),
        "status": str(order.status),
        "total_amount": f"{order.total_amount:.2f}",
        "refund_amount": f"{order.total_amount:.2f}",
        "currency_symbol": "$",
        "items": [
            {
                "name": item.product_name,
                "quantity": item.quantity,
                "unit": item.unit,
                "line_total": f"{item.line_total:.2f}",
            }
            for item in order.items
        ],
        "item_count": order.item_count,
        "pickup_location": order.pickup_location,
        "pickup_instructions": order.pickup_instructions,
        "tracking_number": order.tracking_number,
        "carrier": order.carrier,
        "paid": order.paid_at is not None,
        "reason": None,
        "estimated_ready_at": prefs.format_local(order.estimated_ready_at, tz),
        "estimated_pickup_at": prefs.format_local(order.estimated_pickup_at, tz),
        "previous_estimate": None,
        "reminder_kind": None,
        "unsubscribe_url": notifier.unsubscribe_url(recipient)
        if links and audience == "customer"
        else None,
        **extra,
    }


def render(
    notifier: Notifier,
    order: OrderRecord,
    type: NotificationType,
    channel: NotificationChannel,
    recipient: Addressee,
    meta: Mapping[str, Any],
) -> tuple[Rendered, dict[str, Any]]:
    """A row's message as its channel shows it, from the order as it is and the row's own
    facts; returns the rendered copy and the context it came from."""
    audience: Audience = "farm" if meta.get("audience") == "farm" else "customer"
    context = build_context(
        notifier,
        order,
        recipient,
        audience,
        meta.get("context") or {},
        links=channel is NotificationChannel.EMAIL,
    )
    return notifier.templates.render(type, channel, context), context


@dataclass(frozen=True)
class Planned:
    rows: list[dict[str, Any]]  # order_notifications rows
    events: list[dict[str, Any]]  # NOTIFICATION events of the in-app rows

    @property
    def queued(self) -> bool:
        return any(row["status"] is NotificationStatus.QUEUED for row in self.rows)


def queued_row(
    *,
    order_id: str | None,
    user_id: str | None,
    type: NotificationType,
    channel: NotificationChannel,
    title: str,
    meta: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """A notification row due now, as ``notifications_write`` inserts it (the message is
    rendered when it is sent)."""
    return {
        "id": new_id(),
        "order_id": order_id,
        "user_id": user_id,
        "type": type,
        "channel": channel,
        "title": title,
        "message": "",
        "meta": meta,
        "status": NotificationStatus.QUEUED,
        "attempts": 0,
        "last_error": None,
        "next_attempt_at": now,
        "sent_at": None,
        "created_at": now,
    }


def plan(
    notifier: Notifier,
    order: OrderRecord,
    type: NotificationType,
    recipient: RecipientFacts,
    audience: Audience,
    *,
    now: datetime,
    extra: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Planned:
    """The rows (and in-app events) notifying ``recipient`` of ``type`` about ``order``."""
    channels = prefs.effective_channels(
        type, audience, {(type, c): on for c, on in recipient.overrides.items()}
    )
    if not channels:
        return Planned([], [])
    context = {key: value for key, value in (extra or {}).items() if value is not None}
    row_meta = {
        **(meta or {}),
        **({"reason": context["reason"]} if context.get("reason") else {}),
        "audience": audience,
        "url": notifier.order_url(order.id),
        **({"context": context} if context else {}),
    }
    # The in-app copy is rendered now: it is delivered with the commit. Its title also names
    # the other rows in delivery logs until the dispatcher renders and sends them.
    in_app, _ = render(notifier, order, type, NotificationChannel.IN_APP, recipient, row_meta)
    quiet = prefs.quiet_until(
        now, recipient.quiet_hours_start, recipient.quiet_hours_end, recipient.timezone
    )
    rows: list[dict[str, Any]] = []
    planned_events: list[dict[str, Any]] = []
    for channel in channels:
        row = queued_row(
            order_id=order.id,
            user_id=recipient.id,
            type=type,
            channel=channel,
            title=in_app.title,
            meta=row_meta,
            now=now,
        )
        skip = _skip_reason(channel, recipient, audience)
        if skip:
            row.update(status=NotificationStatus.SKIPPED, last_error=skip, next_attempt_at=None)
        elif channel is NotificationChannel.IN_APP:
            row.update(
                message=in_app.text,
                status=NotificationStatus.SENT,
                sent_at=now,
                next_attempt_at=None,
            )
            planned_events.append(
                events.event_row(
                    EventType.NOTIFICATION,
                    order_id=order.id,
                    farm_id=order.farm_id,
                    customer_id=order.customer_id,
                    user_id=recipient.id,
                    data=in_app_json(row),
                    now=now,
                )
            )
        elif channel in prefs.INTERRUPTING and quiet is not None:
            row["next_attempt_at"] = quiet
            row["meta"] = {**row_meta, "quietHoursUntil": iso_z(quiet)}
        rows.append(row)
    return Planned(rows, planned_events)


def _skip_reason(
    channel: NotificationChannel, recipient: RecipientFacts, audience: Audience
) -> str | None:
    if channel is NotificationChannel.SMS and not recipient.phone:
        return "No phone number on the account."
    if channel is NotificationChannel.PUSH and not recipient.has_push:
        return "No push subscription on the account."
    if (
        channel is NotificationChannel.EMAIL
        and audience == "customer"
        and recipient.email_unsubscribed_at is not None
    ):
        return "Unsubscribed from email."
    return None


def in_app_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """An in-app notification as its NOTIFICATION event and the in-app centre show it."""
    return {
        "id": row["id"],
        "orderId": row["order_id"],
        "type": str(row["type"]),
        "title": row["title"],
        "message": row["message"],
        "url": row["meta"].get("url"),
        "createdAt": iso_z(row["created_at"]),
        "readAt": iso_z(row.get("read_at")),
    }


# -- writing --------------------------------------------------------------------------------

_COLUMNS = (
    "id",
    "order_id",
    "user_id",
    "type",
    "channel",
    "title",
    "message",
    "metadata",
    "status",
    "attempts",
    "last_error",
    "next_attempt_at",
    "sent_at",
    "created_at",
    "updated_at",
)


def notifications_write(rows: Sequence[dict[str, Any]], prefix: str = "n") -> Write:
    """The insert of planned rows, for ``db.write_together``."""
    table = cast(Table, OrderNotification.__table__)
    count = len(rows)
    params = rows_params(prefix, _COLUMNS, [_with_column_names(row) for row in rows])
    return Write(
        ("notifications", prefix, count),
        lambda: insert_rows(table, _COLUMNS, count, prefix),
        params,
    )


def _with_column_names(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "metadata": row["meta"], "updated_at": row["created_at"]}


def mark_written(session: AsyncSession, planned: Planned) -> None:
    """After the rows are written: wake the dispatcher at commit when any wait to be sent."""
    if planned.queued:
        session.info[NEW_NOTIFICATIONS_KEY] = True


async def enqueue(
    session: AsyncSession,
    order: OrderRecord,
    type: NotificationType,
    recipient_id: str,
    audience: Audience,
    *,
    extra: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
    now: datetime,
) -> Planned:
    """Plan and write one recipient's notification in the caller's transaction (the paths
    that are not hot: delays, reminders, resends)."""
    recipient = await load_recipient(session, recipient_id, type)
    if recipient is None:
        return Planned([], [])
    planned = plan(
        notifier_of(session), order, type, recipient, audience, now=now, extra=extra, meta=meta
    )
    writes = []
    if planned.rows:
        writes.append(notifications_write(planned.rows))
    if planned.events:
        writes.append(events.events_write(planned.events))
    if writes:
        await write_together(session, writes)
        events.mark_written(session, planned.events)
        mark_written(session, planned)
    return planned
