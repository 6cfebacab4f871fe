"""After commit: sequence the new events and publish them; and the relay for the rest.

Fast path: a commit that wrote events kicks this process's sequencer, which gives them their
positions and publishes them at once. Relay: every interval, events committed more than a
grace period ago and still unsequenced (their writer died between commit and publish) are
sequenced and published here. Old events are pruned on a schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any

from farmstand.db import Database, utcnow
from farmstand.events import service
from farmstand.events.bus import EventBus

log = logging.getLogger(__name__)

PRUNE_EVERY = timedelta(hours=1)


class Sequencer:
    def __init__(
        self,
        db: Database,
        bus: EventBus,
        *,
        relay_interval: float,
        grace: float,
        retention: timedelta,
    ) -> None:
        self._db = db
        self._bus = bus
        self._relay_interval = relay_interval
        self._grace = timedelta(seconds=grace)
        self._retention = retention
        self._ids: set[int] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_prune = utcnow() - PRUNE_EVERY

    async def on_commit(self, info: dict[str, Any]) -> None:
        """Commit listener: remember the new events and wake the loop (never blocks)."""
        ids = service.new_event_ids(info)
        if ids:
            self._ids.update(ids)
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="event-sequencer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self.flush()  # what this process committed goes out before it stops
        except Exception:  # the relay of another process publishes it after its grace
            log.exception("could not publish this process's last events")

    async def flush(self) -> None:
        """Sequence and publish the events this process committed."""
        while self._ids:
            ids, self._ids = list(self._ids), set()
            await self._publish(await service.sequence(self._db, ids=ids))

    async def relay(self) -> int:
        """Sequence and publish events orphaned by a writer that died after commit."""
        messages = await service.sequence(self._db, older_than=utcnow() - self._grace)
        if messages:
            log.warning("relayed %d event(s) left unpublished after commit", len(messages))
        await self._publish(messages)
        return len(messages)

    async def _publish(self, messages: list[service.Message]) -> None:
        if not messages:
            return
        try:
            await self._bus.publish(messages)
        except Exception:  # every hub also reads what it missed from the database
            log.exception("publishing %d event(s) failed", len(messages))

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_relay = loop.time()
        while True:
            timeout = max(0.0, next_relay - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)
            self._wake.clear()
            try:
                await self.flush()
                if loop.time() >= next_relay:
                    next_relay = loop.time() + self._relay_interval
                    await self.relay()
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
