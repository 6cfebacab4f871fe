"""The dispatcher: claims due notifications (``claims``), renders them (``rendering``), sends
them through their channels while keeping their leases, records how it went (``recording``),
pauses a channel whose provider is down (``pauses``) and prunes old rows (``pruning``).
Safe to run in many processes at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from collections import defaultdict
from datetime import datetime, timedelta
from time import perf_counter
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.config import Settings
from farmstand.db import Database, utcnow, wait_event
from farmstand.notifications import claims, pauses, pruning, recording, rendering
from farmstand.notifications.channels.base import (
    Delivery,
    DeliveryError,
    ResultCallback,
    Sender,
    SendResult,
)
from farmstand.notifications.models import NotificationChannel, OrderNotification
from farmstand.notifications.outbox import NEW_NOTIFICATIONS_KEY, Notifier
from farmstand.observability.logs import redact
from farmstand.observability.metrics import Metrics
from farmstand.observability.tracing import span

log = logging.getLogger(__name__)

# While a batch is being sent, results that complete within this long of each other are
# recorded in one transaction (results trickle in one by one: a commit each cost the workers a
# third of their sends per minute); what is left when the batch is done is recorded at once.
RECORD_COALESCE_SECONDS = 0.1


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{random.randrange(1 << 32):08x}"


class Dispatcher:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        senders: dict[NotificationChannel, Sender],
        *,
        name: str | None = None,
        rng: random.Random | None = None,
        notifier: Notifier | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._db = db
        self._metrics = metrics or Metrics()
        self._settings = settings
        self._senders = senders
        self.name = name or worker_name()
        self._notifier = notifier or Notifier(settings)
        self._rng = rng or random.Random()
        self._offset = timedelta(0)  # run_once(now=...) moves this round's clock (tests)
        self._health: dict[NotificationChannel, pauses.ChannelHealth] = {}
        self._probing: set[NotificationChannel] = set()
        self._last_prune: datetime | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.scheduler: Any = None  # set by the runtime: delays and reminders

    # -- lifecycle -------------------------------------------------------------------------

    async def on_commit(self, info: dict[str, Any]) -> None:
        if info.get(NEW_NOTIFICATIONS_KEY):
            self._wake.set()

    def wake(self) -> None:
        """Look for due notifications now (another process committed some, say)."""
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
                await self._maybe_prune()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("notification dispatch failed; retrying")
                sent = 0
            # mypy keeps `not self._stopping` from the loop test, but stop() may set it meanwhile.
            if self._stopping:
                break  # type: ignore[unreachable]
            if sent:  # a full batch may mean more is waiting
                continue
            self._wake.clear()
            timeout = min(
                self._settings.dispatcher_poll_seconds, max(0.0, next_schedule - loop.time())
            )
            await wait_event(self._wake, timeout)

    # -- one round -------------------------------------------------------------------------

    def _now(self) -> datetime:
        return utcnow() + self._offset

    async def run_once(self, now: datetime | None = None) -> int:
        """Claim a batch of due notifications, send them, record the results."""
        self._offset = (now - utcnow()) if now is not None else timedelta(0)
        now = self._now()
        async with self._db.transaction(background=True) as session:
            await self._fail_exhausted(session, now)
            blocked = await self._paused_channels(session, now)
            claimed = await self._claim(session, now, exclude=blocked)
            for channel in self._probing:  # one message tells whether the provider is back
                claimed += await self._claim(session, now, channel=channel, limit=1)
            facts = await rendering.load_facts(session, claimed) if claimed else None
        if self._probing and not any(row.channel in self._probing for row in claimed):
            # Nothing to probe with: the next message sent finds out instead.
            async with self._db.transaction(background=True) as session:
                for channel in self._probing:
                    await pauses.resume(session, channel, now)
            self._probing = set()
        # Rendered after the claim's commit: never while holding a transaction (on SQLite, the
        # database's write lock), and yielding to requests between messages.
        deliveries: list[Delivery] = []
        if facts is not None:
            deliveries, failed = await rendering.render_deliveries(self._notifier, claimed, facts)
            if failed:
                await self._record([d for d, _ in failed], [e for _, e in failed])
        if not deliveries:
            return len(claimed)
        by_channel: defaultdict[NotificationChannel, list[Delivery]] = defaultdict(list)
        for delivery in deliveries:
            by_channel[delivery.channel].append(delivery)
        in_flight = {d.notification_id for d in deliveries}
        renewer = asyncio.create_task(self._renew_leases(in_flight), name="notification-leases")
        try:
            await asyncio.gather(
                *(self._send_channel(ch, batch, in_flight) for ch, batch in by_channel.items())
            )
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
        return len(claimed)

    async def _paused_channels(
        self, session: AsyncSession, now: datetime
    ) -> set[NotificationChannel]:
        """The channels not to claim from this round: paused, or being probed. A channel whose
        pause is over is probed by the one dispatcher that takes the probe."""
        self._health = await pauses.read(session)
        self._probing = set()
        blocked: set[NotificationChannel] = set()
        lease = timedelta(seconds=self._settings.notification_lease_seconds)
        for channel, health in self._health.items():
            if not health.troubled:
                continue
            blocked.add(channel)
            if not health.paused(now) and await pauses.take_probe(session, channel, now, lease):
                self._probing.add(channel)
        return blocked

    async def _renew_leases(self, in_flight: set[str]) -> None:
        """While a batch is being sent, keep its claims: one statement for the whole batch,
        every third of a lease, for the rows not recorded yet. A slow send then never outlives
        its lease and gets claimed (and sent) by another worker meanwhile."""
        every = self._settings.notification_lease_seconds / 3
        while True:
            await asyncio.sleep(every)
            ids = list(in_flight)
            if not ids:
                continue
            try:
                async with self._db.transaction(background=True) as session:
                    await claims.renew(session, self._settings, self.name, ids, self._now())
            except asyncio.CancelledError:
                raise
            except Exception:  # the next tick tries again; the lease has two more thirds
                log.exception("renewing the leases of %d notification(s) failed", len(ids))

    async def _claim(
        self,
        session: AsyncSession,
        now: datetime,
        *,
        exclude: set[NotificationChannel] | None = None,
        channel: NotificationChannel | None = None,
        limit: int | None = None,
    ) -> list[OrderNotification]:
        return await claims.claim(
            session, self._settings, self.name, now, exclude=exclude, channel=channel, limit=limit
        )

    async def _fail_exhausted(self, session: AsyncSession, now: datetime) -> None:
        # Counted with the other failures (alerts use them).
        for channel in await claims.fail_exhausted(session, self._settings, now):
            self._metrics.notifications.labels(str(channel), "failed").inc()

    async def _send_channel(
        self, channel: NotificationChannel, batch: list[Delivery], in_flight: set[str]
    ) -> None:
        """Send one channel's share, recording each result as it completes (results that
        complete together are coalesced into one transaction), then act on the provider's
        health: pause the channel on a provider failure, resume it when it answers again."""
        results: dict[int, SendResult | DeliveryError] = {}
        pending: list[int] = []
        flusher: asyncio.Task[None] | None = None
        finished = asyncio.Event()

        async def flush() -> None:
            await wait_event(finished, RECORD_COALESCE_SECONDS)
            while pending:
                indexes = pending[:]
                pending.clear()
                try:
                    await self._record([batch[i] for i in indexes], [results[i] for i in indexes])
                except Exception:  # still SENDING: the lease runs out and it is sent again
                    log.exception("recording %d %s result(s) failed", len(indexes), channel)

        def on_result(index: int, result: SendResult | DeliveryError) -> None:
            nonlocal flusher
            if index in results:
                return
            results[index] = result
            pending.append(index)
            in_flight.discard(batch[index].notification_id)
            if flusher is None or flusher.done():
                flusher = asyncio.create_task(flush(), name="notification-record")

        sender = self._senders.get(channel)
        if sender is None:
            final: list[SendResult | DeliveryError] = [
                DeliveryError(f"No sender for {channel}", permanent=True) for _ in batch
            ]
        else:
            # Each sender bounds its own concurrency (email_concurrency, sms_..., push_...).
            try:
                final = await self._timed_send(sender, channel, batch, on_result)
            except Exception as exc:  # a sender bug must not lose the batch: retry it
                log.exception("%s sender failed on a batch of %d", channel, len(batch))
                final = [DeliveryError(f"{type(exc).__name__}: {exc}") for _ in batch]
        for index, result in enumerate(final):  # whatever the sender did not report itself
            on_result(index, result)
        finished.set()
        while flusher is not None and not flusher.done():
            await flusher
        await self._provider_health(channel, list(results.values()))

    async def _provider_health(
        self, channel: NotificationChannel, results: list[SendResult | DeliveryError]
    ) -> None:
        outage = next((r for r in results if isinstance(r, DeliveryError) and r.provider), None)
        probing = channel in self._probing
        health = self._health.get(channel)
        if outage is None and not probing and (health is None or not health.troubled):
            return  # the usual case: nothing to write
        now = self._now()
        async with self._db.transaction(background=True) as session:
            if outage is not None:
                until = await pauses.pause(
                    session,
                    self._settings,
                    channel,
                    str(outage),
                    now,
                    probing=probing,
                    retry_after=outage.retry_after,
                )
                log.warning(
                    "%s paused until %s: the provider failed (%s)",
                    channel,
                    until.isoformat(),
                    redact(outage),
                )
            else:
                await pauses.resume(session, channel, now)
                log.info("%s resumed: the provider answers again", channel)
        self._probing.discard(channel)
        if outage is None:
            self._health.pop(channel, None)
            self._wake.set()  # its queue waited: send it now

    async def _record(
        self, batch: list[Delivery], results: list[SendResult | DeliveryError]
    ) -> None:
        await recording.record(
            self._db,
            batch,
            results,
            now=self._now(),
            worker=self.name,
            settings=self._settings,
            rng=self._rng,
            metrics=self._metrics,
        )

    # -- retention -------------------------------------------------------------------------

    async def _maybe_prune(self) -> None:
        now = self._now()
        if self._last_prune is not None and now - self._last_prune < pruning.PRUNE_EVERY:
            return
        self._last_prune = now
        removed = await self.prune(now)
        if removed:
            log.info(
                "pruned %d notification(s) older than %s days",
                removed,
                self._settings.notification_retention_days,
            )

    async def prune(self, now: datetime | None = None) -> int:
        """Delete SENT, FAILED and SKIPPED rows older than ``notification_retention_days`` (see
        ``pruning``; stops between batches when the dispatcher stops). Returns how many went."""
        cutoff = (now or self._now()) - timedelta(days=self._settings.notification_retention_days)
        return await pruning.prune(self._db, cutoff, stopping=lambda: self._stopping)

    async def _timed_send(
        self,
        sender: Sender,
        channel: NotificationChannel,
        batch: list[Delivery],
        on_result: ResultCallback,
    ) -> list[SendResult | DeliveryError]:
        """``send_many`` in a span, its duration in the channel's histogram."""
        with span("notification.send", channel=str(channel), batch=len(batch)) as trace:
            started = perf_counter()
            try:
                results = await sender.send_many(batch, on_result)
            finally:
                self._metrics.notification_send_duration.labels(str(channel)).observe(
                    perf_counter() - started
                )
            sent = sum(isinstance(result, SendResult) for result in results)
            outcome = "sent" if sent == len(batch) else "failed" if sent == 0 else "partial"
            trace.set_attributes({"sent": sent, "failed": len(batch) - sent, "result": outcome})
            return results
