"""The dispatcher: claims due notifications, sends them through their channels, records how
it went, retries with backoff. Safe to run in many processes at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Counter
from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.accounts.models import User
from farmstand.config import Settings
from farmstand.db import Database, utcnow
from farmstand.notifications.channels.base import (
    Delivery,
    DeliveryError,
    PushTarget,
    Recipient,
    Sender,
    SendResult,
)
from farmstand.notifications.models import (
    NotificationChannel,
    NotificationStatus,
    OrderNotification,
    PushSubscription,
)
from farmstand.notifications.service import NEW_NOTIFICATIONS_KEY

log = logging.getLogger(__name__)

SENT = Counter("farmstand_notifications_sent", "Notifications delivered", ["channel"])
FAILED = Counter(
    "farmstand_notifications_failed", "Notification sends that failed", ["channel", "final"]
)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{random.randrange(1 << 32):08x}"


def backoff(attempt: int, base: float, cap: float, rng: random.Random) -> timedelta:
    """Exponential backoff with full jitter: up to base * 2^(attempt-1), capped."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return timedelta(seconds=rng.uniform(ceiling / 2, ceiling))


class Dispatcher:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        senders: dict[NotificationChannel, Sender],
        *,
        name: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._db = db
        self._settings = settings
        self._senders = senders
        self.name = name or worker_name()
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.scheduler: Any = None  # set by the runtime: delays and reminders

    # -- lifecycle -------------------------------------------------------------------------

    async def on_commit(self, info: dict[str, Any]) -> None:
        if info.get(NEW_NOTIFICATIONS_KEY):
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="notification-dispatcher")

    async def stop(self, grace: float = 30) -> None:
        """Finish the round in flight (so what was sent is recorded), then stop."""
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=grace)
            except TimeoutError:
                self._task.cancel()  # its claims go back to the queue when their lease ends
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.close()

    async def close(self) -> None:
        """Release the senders' connections (also for a dispatcher that never started)."""
        for sender in self._senders.values():
            with contextlib.suppress(Exception):
                await sender.close()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_schedule = loop.time()
        while not self._stopping:
            try:
                sent = await self.run_once()
                if self.scheduler is not None and loop.time() >= next_schedule:
                    next_schedule = loop.time() + self._settings.scheduler_interval_seconds
                    await self.scheduler.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("notification dispatch failed; retrying")
                sent = 0
            if self._stopping:
                break
            if sent:  # a full batch may mean more is waiting
                continue
            self._wake.clear()
            timeout = min(
                self._settings.dispatcher_poll_seconds, max(0.0, next_schedule - loop.time())
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)

    # -- one round -------------------------------------------------------------------------

    async def run_once(self, now: datetime | None = None) -> int:
        """Claim a batch of due notifications, send them, record the results."""
        now = now or utcnow()
        async with self._db.transaction() as session:
            await self._fail_exhausted(session, now)
            claimed = await self._claim(session, now)
            deliveries = await self._deliveries(session, claimed) if claimed else []
        if not deliveries:
            return 0
        by_channel: defaultdict[NotificationChannel, list[Delivery]] = defaultdict(list)
        for delivery in deliveries:
            by_channel[delivery.channel].append(delivery)
        await asyncio.gather(*(self._send_channel(ch, batch) for ch, batch in by_channel.items()))
        return len(deliveries)

    def _due(self, now: datetime) -> Any:
        return and_(
            OrderNotification.channel != NotificationChannel.IN_APP,
            OrderNotification.attempts < self._settings.notification_max_attempts,
            or_(
                and_(
                    OrderNotification.status == NotificationStatus.QUEUED,
                    OrderNotification.next_attempt_at <= now,
                ),
                # A claim whose worker died: its lease ran out, someone else takes it over.
                and_(
                    OrderNotification.status == NotificationStatus.SENDING,
                    OrderNotification.lease_until < now,
                ),
            ),
        )

    async def _claim(self, session: AsyncSession, now: datetime) -> list[OrderNotification]:
        query = (
            select(OrderNotification.id)
            .where(self._due(now))
            .order_by(OrderNotification.next_attempt_at, OrderNotification.id)
            .limit(self._settings.dispatcher_batch_size)
        )
        if session.get_bind().dialect.name == "postgresql":
            # Several workers claim side by side: each skips rows another has locked.
            query = query.with_for_update(skip_locked=True)
        ids = list(await session.scalars(query))
        if not ids:
            return []
        lease = now + timedelta(seconds=self._settings.notification_lease_seconds)
        await session.execute(
            update(OrderNotification)
            .where(OrderNotification.id.in_(ids))
            .values(
                status=NotificationStatus.SENDING,
                claimed_by=self.name,
                lease_until=lease,
                attempts=OrderNotification.attempts + 1,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        rows = await session.scalars(
            select(OrderNotification)
            .where(OrderNotification.id.in_(ids))
            .execution_options(populate_existing=True)
        )
        return list(rows)

    async def _fail_exhausted(self, session: AsyncSession, now: datetime) -> None:
        """Claims that ran out of attempts while their worker was gone: give up on them."""
        await session.execute(
            update(OrderNotification)
            .where(
                OrderNotification.status == NotificationStatus.SENDING,
                OrderNotification.lease_until < now,
                OrderNotification.attempts >= self._settings.notification_max_attempts,
            )
            .values(
                status=NotificationStatus.FAILED,
                lease_until=None,
                updated_at=now,
                last_error="Gave up: the worker sending it stopped, and no attempts are left.",
            )
            .execution_options(synchronize_session=False)
        )

    async def _deliveries(
        self, session: AsyncSession, rows: list[OrderNotification]
    ) -> list[Delivery]:
        user_ids = {row.user_id for row in rows}
        users = {u.id: u for u in await session.scalars(select(User).where(User.id.in_(user_ids)))}
        targets: defaultdict[str, list[PushTarget]] = defaultdict(list)
        if any(row.channel is NotificationChannel.PUSH for row in rows):
            for sub in await session.scalars(
                select(PushSubscription).where(PushSubscription.user_id.in_(user_ids))
            ):
                targets[sub.user_id].append(PushTarget(sub.id, sub.endpoint, sub.p256dh, sub.auth))
        deliveries = []
        for row in rows:
            user = users[row.user_id]
            deliveries.append(
                Delivery(
                    notification_id=row.id,
                    type=row.type,
                    channel=row.channel,
                    recipient=Recipient(user.id, user.name, user.email, user.phone, user.timezone),
                    title=row.title,
                    message=row.message,
                    html=row.meta.get("html"),
                    url=row.meta.get("url", ""),
                    unsubscribe_url=row.meta.get("unsubscribeUrl"),
                    push_targets=tuple(targets.get(row.user_id, ())),
                    context={"attempt": row.attempts, "orderId": row.order_id},
                )
            )
        return deliveries

    async def _send_channel(self, channel: NotificationChannel, batch: list[Delivery]) -> None:
        sender = self._senders.get(channel)
        if sender is None:
            results: list[SendResult | DeliveryError] = [
                DeliveryError(f"No sender for {channel}", permanent=True) for _ in batch
            ]
        else:
            # Each sender bounds its own concurrency (email_concurrency, sms_..., push_...).
            try:
                results = await sender.send_many(batch)
            except Exception as exc:  # a sender bug must not lose the batch: retry it
                log.exception("%s sender failed on a batch of %d", channel, len(batch))
                results = [DeliveryError(f"{type(exc).__name__}: {exc}") for _ in batch]
        await self._record(batch, results)

    async def _record(
        self, batch: list[Delivery], results: list[SendResult | DeliveryError]
    ) -> None:
        now = utcnow()
        expired: list[str] = []
        async with self._db.transaction() as session:
            for delivery, result in zip(batch, results, strict=True):
                mine = and_(
                    OrderNotification.id == delivery.notification_id,
                    OrderNotification.status == NotificationStatus.SENDING,
                    OrderNotification.claimed_by == self.name,
                )
                channel = str(delivery.channel)
                if isinstance(result, SendResult):
                    expired += result.expired_push_targets
                    values: dict[str, Any] = {
                        "status": NotificationStatus.SENT,
                        "sent_at": now,
                        "last_error": None,
                        "provider_message_id": result.provider_message_id,
                        "lease_until": None,
                    }
                    SENT.labels(channel).inc()
                else:
                    expired += result.expired_push_targets
                    # The claim counted this attempt; a row whose lease ran out and was
                    # claimed again is not ours to update (see ``mine``).
                    attempt = int(delivery.context["attempt"])
                    final = result.permanent or attempt >= self._settings.notification_max_attempts
                    values = {"last_error": str(result)[:2000], "lease_until": None}
                    if final:
                        values["status"] = NotificationStatus.FAILED
                    else:
                        values["status"] = NotificationStatus.QUEUED
                        values["next_attempt_at"] = now + backoff(
                            attempt,
                            self._settings.notification_retry_base_seconds,
                            self._settings.notification_retry_max_seconds,
                            self._rng,
                        )
                    FAILED.labels(channel, str(final).lower()).inc()
                    log.warning(
                        "%s notification %s failed (attempt %d%s): %s",
                        channel,
                        delivery.notification_id,
                        attempt,
                        ", final" if final else "",
                        result,
                    )
                values["updated_at"] = now
                await session.execute(
                    update(OrderNotification)
                    .where(mine)
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
            if expired:
                await session.execute(
                    delete(PushSubscription).where(PushSubscription.id.in_(expired))
                )
