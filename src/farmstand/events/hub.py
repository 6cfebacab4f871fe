"""The per-process hub: one bus subscription fanned out to this process's streams.

The hub delivers events in position order with no gaps: out-of-order arrivals wait briefly
for the missing positions, which are then read from the database; a periodic catch-up read
covers anything the bus lost. Each event is encoded into its SSE frame once and handed to the
streams indexed under its farm, customer, order or recipient (never a scan of every stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from dataclasses import dataclass

from farmstand.db import Database
from farmstand.events import service
from farmstand.events.service import Message, Scope

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Frame:
    position: int
    data: bytes


CLOSED = Frame(-1, b"")
OVERFLOW = Frame(-2, b"")


def encode_frame(message: Message) -> Frame:
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
    position = int(message["eventId"])
    text = f"id: {position}\nevent: {message['type']}\ndata: {body}\n\n"
    return Frame(position, text.encode())


class Subscription:
    """One stream's bounded queue of frames."""

    __slots__ = ("_queue", "done", "scope", "start_position")

    def __init__(self, scope: Scope, maxsize: int, start_position: int) -> None:
        self.scope = scope
        self.start_position = start_position
        self._queue: asyncio.Queue[Frame] = asyncio.Queue(maxsize=maxsize)
        self.done = False

    def offer(self, frame: Frame) -> None:
        if self.done:
            return
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            # Too slow to keep up: drop what it hasn't read and tell it to reconnect and
            # resume; its memory never grows past the queue bound.
            self._end(OVERFLOW)

    def _end(self, marker: Frame) -> None:
        self.done = True
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(marker)

    def close(self) -> None:
        if not self.done:
            self._end(CLOSED)

    async def get(self) -> Frame:
        return await self._queue.get()


class Hub:
    def __init__(
        self,
        db: Database,
        *,
        queue_size: int,
        poll_interval: float,
        gap_timeout: float = 0.2,
    ) -> None:
        self._db = db
        self._queue_size = queue_size
        self._poll_interval = poll_interval
        self._gap_timeout = gap_timeout
        self._next: int | None = None  # the next position to deliver
        self._pending: dict[int, Message] = {}
        self._by_farm: defaultdict[str, set[Subscription]] = defaultdict(set)
        self._by_customer: defaultdict[str, set[Subscription]] = defaultdict(set)
        self._by_order: defaultdict[str, set[Subscription]] = defaultdict(set)
        self._by_user: defaultdict[str, set[Subscription]] = defaultdict(set)
        self._everything: set[Subscription] = set()
        self._poke = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.delivered = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Begin at the current end of the stream (call after subscribing to the bus)."""
        start = await service.last_position(self._db) + 1
        async with self._lock:
            self._next = start
            self._pending = {p: m for p, m in self._pending.items() if p >= start}
            self._drain()
        self._task = asyncio.create_task(self._catch_up_loop(), name="event-hub")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for sub in list(self.subscriptions()):
            sub.close()

    def subscriptions(self) -> set[Subscription]:
        subs = set(self._everything)
        for index in (self._by_farm, self._by_customer, self._by_order, self._by_user):
            for group in index.values():
                subs |= group
        return subs

    @property
    def position(self) -> int:
        """The last position delivered to this process's streams."""
        return (self._next or 1) - 1

    # -- streams -----------------------------------------------------------------------------

    def subscribe(self, scope: Scope) -> Subscription:
        sub = Subscription(scope, self._queue_size, start_position=self.position + 1)
        self._index(sub, add=True)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._index(sub, add=False)
        sub.close()

    def _index(self, sub: Subscription, *, add: bool) -> None:
        scope = sub.scope
        for index, keys in (
            (self._by_farm, scope.farms),
            (self._by_customer, scope.customers),
            (self._by_order, scope.orders),
            (self._by_user, scope.users),
        ):
            for key in keys:
                if add:
                    index[key].add(sub)
                else:
                    group = index.get(key)
                    if group is not None:
                        group.discard(sub)
                        if not group:
                            del index[key]
        if scope.everything:
            (self._everything.add if add else self._everything.discard)(sub)

    # -- delivery ----------------------------------------------------------------------------

    async def ingest(self, messages: list[Message]) -> None:
        """Events from the bus, in any order, possibly repeated."""
        async with self._lock:
            for message in messages:
                position = message.get("eventId")
                if isinstance(position, int) and (self._next is None or position >= self._next):
                    self._pending[position] = message
            if self._next is not None:
                self._drain()
                if self._pending:  # a gap: wait briefly, then read it from the database
                    asyncio.get_running_loop().call_later(self._gap_timeout, self._poke.set)

    def _drain(self) -> None:
        assert self._next is not None
        while self._next in self._pending:
            self._deliver(self._pending.pop(self._next))
            self._next += 1

    def _deliver(self, message: Message) -> None:
        frame = encode_frame(message)
        user_id = message.get("userId")
        if user_id:
            targets = set(self._by_user.get(user_id, ()))
        else:
            targets = set(self._everything)
            for index, key in (
                (self._by_farm, message.get("farmId")),
                (self._by_customer, message.get("customerId")),
                (self._by_order, message.get("orderId")),
            ):
                if key is not None and key in index:
                    targets |= index[key]
        for sub in targets:
            sub.offer(frame)
        self.delivered += 1

    async def catch_up(self) -> None:
        """Read from the database every sequenced event this process has not delivered."""
        if self._next is None:
            return
        while True:
            messages = await service.published_after(self._db, self._next - 1)
            if not messages:
                return
            await self.ingest(messages)
            if len(messages) < 1000:
                return

    async def _catch_up_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), timeout=self._poll_interval)
            self._poke.clear()
            try:
                await self.catch_up()
            except Exception:
                log.exception("event catch-up failed; retrying")
