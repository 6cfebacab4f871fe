"""After commit: sequence the new events and publish them; the same loop is the relay.

Fast path: a commit that wrote events wakes this process's sequencer, which gives every
committed, unsequenced event its position (in batches, on the background pool) and publishes
them at once. Relay: the same work runs every interval, so events whose writer died between
commit and publish go out from whichever process runs next; those published more than a grace
period after they were written are counted and logged as late. Old events are pruned on a
schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

from farmstand.db import Database, utcnow, wait_event
from farmstand.events import service
from farmstand.events.bus import EventBus
from farmstand.observability.metrics import Metrics
from farmstand.observability.tracing import span

log = logging.getLogger(__name__)

PRUNE_EVERY = timedelta(hours=1)
BATCH = 1000  # what one sequencing transaction takes at most (see service.sequence_pending)


class Sequencer:
    def __init__(
        self,
        db: Database,
        bus: EventBus,
        *,
        relay_interval: float,
        grace: float,
        retention: timedelta,
        metrics: Metrics | None = None,
    ) -> None:
        self._db = db
        self._metrics = metrics or Metrics()
        self._bus = bus
        self._relay_interval = relay_interval
        self._grace = timedelta(seconds=grace)
        self._retention = retention
        self._wake = asyncio.Event()
        self._pending_commits = False
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_prune = utcnow() - PRUNE_EVERY
        self.published = 0
        self.published_late = 0

    async def on_commit(self, info: dict[str, Any]) -> None:
        """Commit listener: wake the loop when the transaction wrote events (never blocks)."""
        if info.get(service.NEW_EVENTS_KEY):
            self._pending_commits = True
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="event-sequencer")

    async def stop(self, grace: float = 10) -> None:
        """Let the pass in flight finish, then stop. Cancelled inside its transaction, a pass
        could leave its connection holding SQLite's write lock, and the last flush below then
        waited out the whole busy timeout (30 s) for it."""
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            try:
                async with asyncio.timeout(grace):
                    await asyncio.shield(self._task)
            except TimeoutError:
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pending_commits:
            try:
                await self.flush()  # what this process committed goes out before it stops
            except Exception:  # the relay of another process publishes it
                log.exception("could not publish this process's last events")

    async def flush(self) -> int:
        """Sequence and publish every committed event not yet published; returns how many."""
        total = 0
        while True:
            self._pending_commits = False
            messages = await service.sequence_pending(self._db)
            await self._publish(messages)
            total += len(messages)
            if len(messages) < BATCH:
                return total

    async def relay(self) -> int:
        """The periodic pass: publishes events whose writer did not (it died after commit)."""
        return await self.flush()

    async def _publish(self, messages: list[service.Message]) -> None:
        if not messages:
            return
        self.published += len(messages)
        late_before = utcnow() - self._grace
        late = sum(1 for m in messages if datetime.fromisoformat(m["createdAt"]) < late_before)
        if late:
            self.published_late += late
            self._metrics.events_relayed_late.inc(late)
            log.warning(
                "published %d event(s) more than %.1fs after they were written (a writer "
                "stopped before publishing, or sequencing fell behind)",
                late,
                self._grace.total_seconds(),
            )
        try:
            with span("events.publish", events=len(messages)):
                await self._bus.publish(messages)
        except Exception:  # every hub also reads what it missed from the database
            log.exception("publishing %d event(s) failed", len(messages))
        else:
            self._metrics.events_published.inc(len(messages))

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_relay = loop.time() + self._relay_interval
        while True:
            timeout = max(0.0, next_relay - loop.time())
            await wait_event(self._wake, timeout)
            self._wake.clear()
            if self._stopping:
                return  # stop() flushes what is still pending
            try:
                await self.flush()
                if loop.time() >= next_relay:
                    next_relay = loop.time() + self._relay_interval
                    await self._maybe_prune()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("event sequencing failed; retrying")
                await asyncio.sleep(min(self._relay_interval, 1.0))

    async def _maybe_prune(self) -> None:
        now = utcnow()
        if now - self._last_prune < PRUNE_EVERY:
            return
        self._last_prune = now
        removed = await service.prune(self._db, now - self._retention)
        if removed:
            log.info("pruned %d event(s) older than %s", removed, self._retention)
