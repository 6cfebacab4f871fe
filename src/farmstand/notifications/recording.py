"""Recording how each send went: SENT, back in the queue with a backoff, or FAILED for good;
two statements for a whole batch, touching only the rows the worker still holds."""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, delete, func, update

from farmstand.config import Settings
from farmstand.db import Database
from farmstand.notifications.channels.base import Delivery, DeliveryError, SendResult
from farmstand.notifications.claims import retry_window
from farmstand.notifications.models import NotificationStatus, OrderNotification, PushSubscription
from farmstand.observability.logs import redact
from farmstand.observability.metrics import Metrics

log = logging.getLogger(__name__)


def backoff(attempt: int, base: float, cap: float, rng: random.Random) -> timedelta:
    """Exponential backoff with full jitter: up to base * 2^(attempt-1), capped."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return timedelta(seconds=rng.uniform(ceiling / 2, ceiling))


_ROWS = cast(Table, OrderNotification.__table__)
_MINE = and_(
    _ROWS.c.id == bindparam("b_id"),
    _ROWS.c.status == NotificationStatus.SENDING,
    _ROWS.c.claimed_by == bindparam("b_worker"),
)
# A message the provider accepted is recorded SENT whoever holds the row now (its lease may
# have run out and another worker claimed it): the send happened. Only a row already SENT
# (or SKIPPED) is left alone; the other worker's send carries the same idempotency key.
_STILL_UNSENT = and_(
    _ROWS.c.id == bindparam("b_id"),
    _ROWS.c.status != NotificationStatus.SENT,
    _ROWS.c.status != NotificationStatus.SKIPPED,
)
_RECORD_SENT = (
    update(_ROWS)
    .where(_STILL_UNSENT)
    .values(
        status=NotificationStatus.SENT,
        title=bindparam("b_title"),
        message=bindparam("b_message"),
        sent_at=bindparam("b_now", type_=_ROWS.c.sent_at.type),
        last_error=None,
        provider_message_id=bindparam("b_provider_message_id"),
        lease_until=None,
        updated_at=bindparam("b_now", type_=_ROWS.c.updated_at.type),
    )
)
_RECORD_UNSENT = (
    update(_ROWS)
    .where(_MINE)
    .values(
        status=bindparam("b_status", type_=_ROWS.c.status.type),
        last_error=bindparam("b_last_error"),
        # A provider failure was no attempt of the message's: the claim's count is returned.
        attempts=_ROWS.c.attempts - bindparam("b_refund"),
        lease_until=None,
        next_attempt_at=func.coalesce(
            bindparam("b_next_attempt_at", type_=_ROWS.c.next_attempt_at.type),
            _ROWS.c.next_attempt_at,
        ),
        updated_at=bindparam("b_now", type_=_ROWS.c.updated_at.type),
    )
)


async def record(
    db: Database,
    batch: list[Delivery],
    results: list[SendResult | DeliveryError],
    *,
    now: datetime,
    worker: str,
    settings: Settings,
    rng: random.Random,
    metrics: Metrics,
) -> None:
    """Record how each send went: two statements for the whole batch (sent, and not)."""
    expired: list[str] = []
    sent: list[dict[str, Any]] = []
    unsent: list[dict[str, Any]] = []
    for delivery, result in zip(batch, results, strict=True):
        channel = str(delivery.channel)
        expired += result.expired_push_targets
        if isinstance(result, SendResult):
            sent.append(
                {
                    "b_id": delivery.notification_id,
                    # What the recipient was sent, for the delivery log.
                    "b_title": delivery.title[:300],
                    # Account emails keep their copy without the link in it.
                    "b_message": delivery.context.get("logged", delivery.message),
                    "b_provider_message_id": result.provider_message_id,
                }
            )
            metrics.notifications.labels(channel, "sent").inc()
            continue
        # The claim counted this attempt; a row whose lease ran out and was claimed again
        # is not ours to update (the statements only touch rows this worker still holds).
        if result.provider:
            # Not the message's failure: back in the queue, the attempt not counted; the
            # channel's pause holds it (and every other one) until the provider is back.
            unsent.append(
                {
                    "b_id": delivery.notification_id,
                    "b_status": NotificationStatus.QUEUED,
                    "b_last_error": str(result)[:2000],
                    "b_next_attempt_at": None,
                    "b_refund": 1,
                }
            )
            metrics.notifications.labels(channel, "retry").inc()
            continue
        attempt = int(delivery.context["attempt"])
        first = delivery.context.get("firstAttemptAt") or now
        final = result.permanent or (
            attempt >= settings.notification_max_attempts and now - first >= retry_window(settings)
        )
        retry_at = None
        if not final:
            retry_at = now + backoff(
                attempt,
                settings.notification_retry_base_seconds,
                settings.notification_retry_max_seconds,
                rng,
            )
        unsent.append(
            {
                "b_id": delivery.notification_id,
                "b_status": NotificationStatus.FAILED if final else NotificationStatus.QUEUED,
                "b_last_error": str(result)[:2000],
                "b_next_attempt_at": retry_at,
                "b_refund": 0,
            }
        )
        metrics.notifications.labels(channel, "failed" if final else "retry").inc()
        log.warning(
            "%s notification %s failed (attempt %d%s): %s",
            channel,
            delivery.notification_id,
            attempt,
            ", final" if final else "",
            redact(result),
        )
    shared = {"b_now": now, "b_worker": worker}
    async with db.transaction(background=True) as session:
        if sent:
            await session.execute(_RECORD_SENT, [{**row, "b_now": now} for row in sent])
        if unsent:
            await session.execute(_RECORD_UNSENT, [{**row, **shared} for row in unsent])
        if expired:
            await session.execute(delete(PushSubscription).where(PushSubscription.id.in_(expired)))
