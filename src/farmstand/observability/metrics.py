"""Every Prometheus metric of one app, on a registry of its own (``runtime.metrics``).

One process: the app's registry is what ``/metrics`` shows. Several (``farmstand serve
--workers N``, see ``multiprocess``): each process writes its values to files in a shared
directory and a scrape, whichever process answers it, reports the sum over all of them.

Gauges of the notification queue (its depth and age, FAILED rows and paused channels) come
from the database at scrape time; the pool gauges
are read from SQLAlchemy's pool. Label values are bounded sets (route templates, statuses,
channels), never ids.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text

from farmstand.db import Database, utcnow
from farmstand.notifications.models import (
    ChannelState,
    NotificationChannel,
    NotificationStatus,
    OrderNotification,
)
from farmstand.observability import multiprocess

log = logging.getLogger(__name__)

# Use cases find the app's metrics in their session's info (see ``count_status_change``).
METRICS_KEY = "farmstand.metrics"

# 1 ms to 10 s; 50 ms and 200 ms are bucket edges because the targets and alerts use them.
REQUEST_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
SEND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# Label values created up front, so every series exists (at 0) from the first scrape and a
# rate() over it sees the first increment.
SSE_DISCONNECT_REASONS = ("client", "slow", "overflow", "shutdown", "error")
NOTIFICATION_RESULTS = ("sent", "retry", "failed")
SENT_CHANNELS = tuple(c for c in NotificationChannel if c is not NotificationChannel.IN_APP)
# Why a request was refused with 503: no database connection within the bounded wait, or too
# many requests in flight. Add a reason here before using it.
SHED_REASONS = ("db_pool", "db_unavailable", "in_flight")

QUEUE_PROBE_TIMEOUT = 1.0  # seconds; a slower database leaves the queue gauges out

# ``_created`` series double the output for nothing Prometheus uses; off for this process.
disable_created_metrics()  # type: ignore[no-untyped-call]


class Metrics:
    """The metrics of one app. Attribute names are the API the rest of the code uses."""

    def __init__(self) -> None:
        self.multiprocess_dir = multiprocess.directory()
        self.registry = registry = CollectorRegistry()

        self.http_request_duration = Histogram(
            "farmstand_http_request_duration_seconds",
            "HTTP requests: seconds from arrival to the end of the response, by route template "
            "(`other` when no route matched) and status code.",
            ["method", "route", "status"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.status_changes = Counter(
            "farmstand_status_changes",
            "Order status changes written, by previous and new status.",
            ["from_status", "to_status"],
            registry=registry,
        )
        self.sse_streams_open = Gauge(
            "farmstand_sse_streams_open",
            "Event streams open now.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.sse_disconnects = Counter(
            "farmstand_sse_disconnects",
            "Event streams ended, by reason: the client left, was too slow to read, fell too "
            "far behind (overflow), or the server shut down.",
            ["reason"],
            registry=registry,
        )
        self.events_published = Counter(
            "farmstand_events_published",
            "Events this process sequenced and published on the bus.",
            registry=registry,
        )
        self.events_relayed_late = Counter(
            "farmstand_events_relayed_late",
            "Events published by the relay after their writer's grace period (the writer died "
            "between commit and publish, or its sequencer fell behind).",
            registry=registry,
        )
        self.notifications = Counter(
            "farmstand_notifications",
            "Notification send attempts by channel and result: sent, retry (failed, will be "
            "tried again) or failed (given up).",
            ["channel", "result"],
            registry=registry,
        )
        self.notification_send_duration = Histogram(
            "farmstand_notification_send_duration_seconds",
            "Seconds a channel took to send one batch (a dispatcher round's notifications for "
            "that channel, sent over shared connections).",
            ["channel"],
            buckets=SEND_BUCKETS,
            registry=registry,
        )
        self.db_pool_in_use = Gauge(
            "farmstand_db_pool_in_use",
            "Database connections checked out of the pool.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.db_pool_waiting = Gauge(
            "farmstand_db_pool_waiting",
            "Requests and tasks waiting for a database connection.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.requests_shed = Counter(
            "farmstand_requests_shed",
            "Requests refused with 503 to stay responsive under overload, by reason.",
            ["reason"],
            registry=registry,
        )

        for reason in SSE_DISCONNECT_REASONS:
            self.sse_disconnects.labels(reason)
        for channel in SENT_CHANNELS:
            for result in NOTIFICATION_RESULTS:
                self.notifications.labels(str(channel), result)
        for reason in SHED_REASONS:
            self.requests_shed.labels(reason)
        if self.multiprocess_dir is None:
            # Per-process figures (CPU, memory, collector pauses); they do not add up across
            # processes, so several processes leave them out.
            ProcessCollector(registry=registry)
            GCCollector(registry=registry)
        self._status_change_children: dict[tuple[str, str], Any] = {}
        self._queue_probe_failed = False
        self.queue_probe_timeout = QUEUE_PROBE_TIMEOUT

    # -- used by the rest of the code ----------------------------------------------------------

    def count_status_change(self, from_status: str, to_status: str) -> None:
        key = (from_status, to_status)
        child = self._status_change_children.get(key)
        if child is None:
            child = self._status_change_children[key] = self.status_changes.labels(
                str(from_status), str(to_status)
            )
        child.inc()

    def sample_pool(self, db: Database) -> None:
        """Copy the pool's figures into the gauges (at scrape time, and every few seconds in
        each process when there are several)."""
        pool: Any = db.engine.pool
        checkedout = getattr(pool, "checkedout", None)
        if callable(checkedout):
            self.db_pool_in_use.set(checkedout())
        self.db_pool_waiting.set(_pool_waiters(pool))

    # -- /metrics -------------------------------------------------------------------------------

    async def render(self, db: Database | None = None) -> bytes:
        """The text exposition: this app's metrics (or every process's, summed), and the
        notification queue read from the database unless it is slow to answer."""
        sources: list[Collector] = []
        if db is not None:
            self.sample_pool(db)
            queue = await self.queue_snapshot(db)
            if queue is not None:
                sources.append(queue)
        if self.multiprocess_dir is not None:
            multiprocess.reap_dead_processes(self.multiprocess_dir)
            sources.insert(0, MultiProcessCollector(None, self.multiprocess_dir))  # type: ignore[no-untyped-call]
        else:
            sources.insert(0, self.registry)
        return generate_latest(_Sources(sources))

    async def queue_snapshot(self, db: Database) -> QueueSnapshot | None:
        limit = self.queue_probe_timeout
        try:
            # PostgreSQL stops the statement itself a little before the caller gives up on it.
            snapshot = await asyncio.wait_for(_probe_queue(db, int(limit * 800)), limit)
        except Exception as exc:  # slow or unreachable: the scrape goes on without the two
            if not self._queue_probe_failed:
                log.warning("notification queue gauges left out of /metrics: %r", exc)
            self._queue_probe_failed = True
            return None
        self._queue_probe_failed = False
        return snapshot


def count_status_change(info: Mapping[str, Any], from_status: str, to_status: str) -> None:
    """Count a status change in the metrics of the app whose session ``info`` this is."""
    metrics = info.get(METRICS_KEY)
    if metrics is not None:
        metrics.count_status_change(from_status, to_status)


@dataclass(frozen=True)
class QueueSnapshot:
    """The notification queue at scrape time: due rows not sent yet, and how late the oldest
    one is (0 when none is due)."""

    depth: int
    oldest_due_age_seconds: float
    failed: Mapping[str, int] | None = None  # FAILED rows per channel
    paused: Mapping[str, bool] | None = None  # channels paused by a provider outage

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "farmstand_notification_queue_depth",
            "Notifications due and not sent yet (all workers).",
            value=self.depth,
        )
        yield GaugeMetricFamily(
            "farmstand_notification_oldest_due_age_seconds",
            "Seconds since the oldest unsent notification became due (0 when none is due).",
            value=self.oldest_due_age_seconds,
        )
        failed = GaugeMetricFamily(
            "farmstand_notifications_failed_rows",
            "Notifications given up (FAILED) and kept, by channel (all workers): an admin can "
            "queue them again.",
            labels=["channel"],
        )
        paused = GaugeMetricFamily(
            "farmstand_notification_channel_paused",
            "1 while a channel is paused after a provider-wide failure (nothing is sent on it "
            "until its provider answers a probe), else 0.",
            labels=["channel"],
        )
        for channel in SENT_CHANNELS:
            failed.add_metric([str(channel)], (self.failed or {}).get(str(channel), 0))
            paused.add_metric([str(channel)], int((self.paused or {}).get(str(channel), False)))
        yield failed
        yield paused


async def _probe_queue(db: Database, statement_timeout_ms: int) -> QueueSnapshot:
    """One statement on the dispatcher's index (status, next_attempt_at): due QUEUED rows."""
    now = utcnow()
    async with db.transaction(write=False) as session:
        if not db.is_sqlite:
            await session.execute(text(f"SET LOCAL statement_timeout = {statement_timeout_ms}"))
        depth, oldest = (
            await session.execute(
                select(func.count(), func.min(OrderNotification.next_attempt_at)).where(
                    OrderNotification.status == NotificationStatus.QUEUED,
                    OrderNotification.next_attempt_at <= now,
                )
            )
        ).one()
        # The same index's FAILED range, and the (few) channel states.
        failed = {
            str(channel): int(count)
            for channel, count in await session.execute(
                select(OrderNotification.channel, func.count())
                .where(OrderNotification.status == NotificationStatus.FAILED)
                .group_by(OrderNotification.channel)
            )
        }
        paused = {
            str(channel): True
            for channel in await session.scalars(
                select(ChannelState.channel).where(
                    ChannelState.failures > 0, ChannelState.paused_until > now
                )
            )
        }
    age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
    return QueueSnapshot(int(depth), age, failed, paused)


def _pool_waiters(pool: Any) -> int:
    """How many are blocked waiting for a connection: SQLAlchemy does not say, but its async
    pool queue is an asyncio.Queue whose waiters are listed. 0 when that cannot be read."""
    queue = getattr(getattr(pool, "_pool", None), "_queue", None)
    getters = getattr(queue, "_getters", None)
    return len(getters) if getters is not None else 0


class _Sources:
    """Several collectors seen as one, for ``generate_latest``."""

    def __init__(self, sources: Iterable[Collector]) -> None:
        self._sources = list(sources)

    def collect(self) -> Iterator[Metric]:
        for source in self._sources:
            yield from source.collect()
