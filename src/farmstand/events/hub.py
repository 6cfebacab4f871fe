"""The per-process hub: one bus subscription fanned out to this process's streams.

The hub delivers events in position order with no gaps: out-of-order arrivals wait briefly
for the missing positions, which are then read from the database; a periodic catch-up read
covers anything the bus lost. Each event is encoded into its SSE frame once and handed to the
streams indexed under its farm, customer, order or recipient (never a scan of every stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from farmstand.db import Database, wait_event
from farmstand.events import service
from farmstand.events.models import INTERNAL_EVENTS, EventType
from farmstand.events.service import Message, Scope, View
from farmstand.observability.metrics import Metrics
from farmstand.observability.tracing import span

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Frame:
    position: int
    data: bytes


def encode_frame(message: Message) -> Frame:
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
    position = int(message["eventId"])
    text = f"id: {position}\nevent: {message['type']}\ndata: {body}\n\n"
    return Frame(position, text.encode())


class CloseReason(StrEnum):
    """Why a stream ended (the ``reason`` label of the disconnect counter)."""

    CLIENT = "client"  # the client went away
    SLOW = "slow"  # its socket stopped draining for sse_send_timeout_seconds
    OVERFLOW = "overflow"  # it fell sse_queue_size frames behind; told to reconnect
    SHUTDOWN = "shutdown"  # this server process is stopping
    ERROR = "error"  # the stream failed (logged with its traceback)
    SESSION = "session"  # its session ended: signed out, revoked, expired, user disabled
    ACCESS = "access"  # still signed in, but may no longer see what the stream carries


@dataclass(frozen=True, slots=True)
class Owner:
    """Who opened a stream and what for, so the hub can check it again when their account
    changes (``Hub.rechecker``) and end it when their session expires."""

    user_id: str
    session_id: str
    expires_at: float  # the session's expiry, in seconds since the epoch
    view: View  # what its scope was computed from
    # ``Hub.account_changes`` before the session was checked: if any account changed between
    # that check and the subscription, the stream is checked again at once.
    changes_seen: int


# The hub's rechecker: for each stream, its new scope, or why it must end (SESSION, ACCESS).
Recheck = dict["Subscription", "Scope | CloseReason"]
Rechecker = Callable[[Sequence["Subscription"]], Awaitable[Recheck]]


class Subscription:
    """One open stream as the hub sees it: what it may receive, and what it has not sent yet.

    Deliberately small: a list of frames, one flag for a due heartbeat and, only while the
    stream waits, one future. The hub and its timer never block on a stream; they append and
    wake it, and the stream writes everything pending in one go.
    """

    __slots__ = (
        "_frames",
        "_waiter",
        "ended",
        "held_from",
        "note",
        "owner",
        "ping",
        "recheck_cut",
        "scope",
        "slot",
        "start_position",
    )

    def __init__(
        self, scope: Scope, start_position: int, slot: int, owner: Owner | None = None
    ) -> None:
        self.scope = scope
        self.start_position = start_position
        self.slot = slot  # which heartbeat round it belongs to
        self.owner = owner
        self._frames: list[Frame] = []
        self._waiter: asyncio.Future[None] | None = None
        self.ping = False
        self.ended: CloseReason | None = None
        self.note: str | None = None  # why its session or access ended, for the last frame
        # While its account's change is checked: events from this place in the hub's log on
        # wait, and go out once its new scope is known (``Hub._settle``).
        self.held_from: int | None = None
        # Changed again while being checked: the log from here waits for the next check.
        self.recheck_cut: int | None = None

    def offer(self, frame: Frame, limit: int) -> None:
        if self.held_from is None:
            self.put(frame, limit)

    def put(self, frame: Frame, limit: int) -> None:
        if self.ended is not None:
            return
        if len(self._frames) >= limit:
            # Too slow to keep up: drop what it hasn't sent and tell it to reconnect and
            # resume; its memory never grows past the bound.
            self.end(CloseReason.OVERFLOW)
            return
        self._frames.append(frame)
        self._wake()

    def heartbeat(self) -> None:
        """Ask for a heartbeat comment, unless frames are waiting to go anyway."""
        if self.ended is None and not self._frames:
            self.ping = True
            self._wake()

    def end(self, reason: CloseReason) -> None:
        """End the stream (the first reason given is the one that counts)."""
        if self.ended is None:
            self.ended = reason
            self._frames.clear()
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next(self) -> list[Frame]:
        """Wait until there is something to do: frames (returned, oldest first), a heartbeat
        (``ping`` set, nothing returned) or the end (``ended`` set, nothing returned)."""
        while not self._frames and not self.ping and self.ended is None:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        frames, self._frames = self._frames, []
        return frames


# Heartbeats go out in rounds: each tick of the hub's one timer pings one slot of streams, so
# an idle stream hears from the server every `sse_heartbeat_seconds` and the work is spread
# evenly over the interval instead of waking every stream at once.
TICK_SECONDS = 0.25
# A check of changed accounts' streams that takes longer ends them (they reconnect, and their
# sessions are checked as any request's).
RECHECK_TIMEOUT = 10.0
SESSION_EXPIRED = "session expired"
SESSION_ENDED = "session ended"


class Hub:
    def __init__(
        self,
        db: Database,
        *,
        queue_size: int,
        poll_interval: float,
        heartbeat: float = 30.0,
        gap_timeout: float = 0.2,
        metrics: Metrics | None = None,
    ) -> None:
        self._db = db
        self._queue_size = queue_size
        self._poll_interval = poll_interval
        self._gap_timeout = gap_timeout
        self._metrics = metrics
        self._next: int | None = None  # the next position to deliver
        self._pending: dict[int, Message] = {}
        self._by_farm: defaultdict[str, set[Subscription]] = defaultdict(set)
        self._by_customer: defaultdict[str, set[Subscription]] = defaultdict(set)
        self._by_order: defaultdict[str, set[Subscription]] = defaultdict(set)
        self._by_user: defaultdict[str, set[Subscription]] = defaultdict(set)
        self._everything: set[Subscription] = set()
        # Streams by the user who opened them, and their sessions' expiries (a heap swept by
        # the timer; entries of closed streams are dropped when the heap is rebuilt).
        self._by_owner: defaultdict[str, set[Subscription]] = defaultdict(set)
        self._expiries: list[tuple[float, int, Subscription]] = []
        self._expiry_order = itertools.count()
        # Re-checking streams whose accounts changed: those waiting for the next round, those
        # in the round under way, and the events delivered meanwhile (from _log_start on),
        # which wait for their new scopes.
        self.rechecker: Rechecker | None = None
        self.account_changes = 0  # ACCOUNT_CHANGED events delivered here
        self._recheck_due: set[Subscription] = set()
        self._rechecking: set[Subscription] = set()
        self._held: set[Subscription] = set()
        self._log: list[tuple[Message, Frame | None]] = []
        self._log_start = 0
        self._recheck_wake = asyncio.Event()
        self._rechecker_task: asyncio.Task[None] | None = None
        # Every open stream, in heartbeat slots; one slot is pinged per tick.
        self._slots: list[set[Subscription]] = [
            set() for _ in range(max(1, round(heartbeat / TICK_SECONDS)))
        ]
        self._tick = heartbeat / len(self._slots)
        self._next_slot = 0
        self.heartbeat_frame = b": ping\n\n"
        self._stop_when: Callable[[], bool] | None = None
        self._ending = False
        self._poke = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.open_streams = 0
        self.closed: Counter[CloseReason] = Counter()
        # Told about internal events (such as ACCOUNT_CHANGED) from every process.
        self.internal_listeners: list[Callable[[Message], None]] = []

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Begin at the current end of the stream (call after subscribing to the bus)."""
        start = await service.last_position(self._db) + 1
        async with self._lock:
            self._next = start
            self._pending = {p: m for p, m in self._pending.items() if p >= start}
            self._drain()
        self._ending = False
        self._task = asyncio.create_task(self._catch_up_loop(), name="event-hub")
        self._ticker = asyncio.create_task(self._tick_loop(), name="event-hub-heartbeat")
        self._rechecker_task = asyncio.create_task(self._recheck_loop(), name="event-hub-recheck")

    def end_streams_when(self, stopping: Callable[[], bool] | None) -> None:
        """Poll ``stopping`` every tick; once true, end every stream (see ``end_streams``).

        For the web server's own "shutting down" flag: it waits for open responses to finish
        before the app's shutdown runs, so streams must end when the server starts to stop.
        """
        self._stop_when = stopping

    def end_streams(self) -> None:
        """End every stream, and any opened from now on, cleanly: they finish their responses
        and clients reconnect (to another process) and resume."""
        self._ending = True
        for sub in self.subscriptions():
            sub.end(CloseReason.SHUTDOWN)

    async def close(self) -> None:
        for task in (self._task, self._ticker, self._rechecker_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._ticker = self._rechecker_task = None
        self.end_streams()

    def subscriptions(self) -> set[Subscription]:
        """Every open stream."""
        return set().union(*self._slots)

    @property
    def position(self) -> int:
        """The last position delivered to this process's streams."""
        return (self._next or 1) - 1

    # -- streams -----------------------------------------------------------------------------

    def subscribe(self, scope: Scope, owner: Owner | None = None) -> Subscription:
        """A new stream; with its ``owner``, it ends when their session does and its scope
        follows changes to their account."""
        slot = self._next_slot
        self._next_slot = (slot + 1) % len(self._slots)
        sub = Subscription(scope, start_position=self.position + 1, slot=slot, owner=owner)
        self._slots[slot].add(sub)
        self._index(sub, add=True)
        self.on_open(sub)
        if self._ending:
            sub.end(CloseReason.SHUTDOWN)
        elif owner is not None:
            self._by_owner[owner.user_id].add(sub)
            if owner.expires_at <= time.time():
                sub.note = SESSION_EXPIRED
                sub.end(CloseReason.SESSION)
            else:
                heapq.heappush(self._expiries, (owner.expires_at, next(self._expiry_order), sub))
                if owner.changes_seen != self.account_changes:
                    # An account changed after this session was checked and before now: the
                    # change may be this one's (a sign-out racing the stream's opening).
                    self._mark_for_recheck(sub)
        return sub

    def unsubscribe(self, sub: Subscription, reason: CloseReason | None = None) -> None:
        """Forget a stream (its own code calls this once it has finished, whatever the cause)."""
        sub.end(reason or CloseReason.ERROR)
        slot = self._slots[sub.slot]
        if sub not in slot:
            return
        slot.discard(sub)
        self._index(sub, add=False)
        self._forget_owner(sub)
        assert sub.ended is not None
        self.on_close(sub, sub.ended)

    # The one place where a stream opens and closes: metrics (open streams, disconnects by
    # reason) hook in here.

    def on_open(self, sub: Subscription) -> None:
        self.open_streams += 1
        if self._metrics is not None:
            self._metrics.sse_streams_open.inc()
        log.debug("event stream opened (%d open)", self.open_streams)

    def on_close(self, sub: Subscription, reason: CloseReason) -> None:
        self.open_streams -= 1
        self.closed[reason] += 1
        if self._metrics is not None:
            self._metrics.sse_streams_open.dec()
            self._metrics.sse_disconnects.labels(str(reason)).inc()
        log.debug("event stream closed: %s (%d open)", reason, self.open_streams)

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

    def _forget_owner(self, sub: Subscription) -> None:
        owner = sub.owner
        if owner is None:
            return
        group = self._by_owner.get(owner.user_id)
        if group is not None:
            group.discard(sub)
            if not group:
                del self._by_owner[owner.user_id]
        self._recheck_due.discard(sub)
        if sub in self._held and sub not in self._rechecking:
            self._held.discard(sub)
            sub.held_from = None
            self._trim_log()
        if len(self._expiries) > 2 * self.open_streams + 64:
            # Mostly closed streams' entries: keep only the open ones (amortised O(1) a close).
            self._expiries = [e for e in self._expiries if e[2].ended is None]
            heapq.heapify(self._expiries)

    def _expire_sessions(self, now: float) -> None:
        """End the streams whose sessions have expired (the timer calls this every tick)."""
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            _, _, sub = heapq.heappop(expiries)
            if sub.ended is None:
                sub.note = SESSION_EXPIRED
                sub.end(CloseReason.SESSION)

    # -- account changes ---------------------------------------------------------------------

    def _account_changed(self, message: Message) -> None:
        """An ACCOUNT_CHANGED event: check the streams of that user (or of that one session)
        again. From this event on, nothing more goes to them until the check has decided what
        they may see (``_settle``); so a signed-out stream receives nothing after the sign-out,
        and one whose scope grew misses nothing."""
        self.account_changes += 1
        user_id = message.get("userId")
        subs = self._by_owner.get(user_id) if isinstance(user_id, str) else None
        if not subs:
            return
        data = message.get("data") or {}
        session_id = data.get("sessionId")
        reason = data.get("reason")
        for sub in subs:
            assert sub.owner is not None
            if session_id is None or sub.owner.session_id == session_id:
                sub.note = reason if isinstance(reason, str) else None
                self._mark_for_recheck(sub)

    def _mark_for_recheck(self, sub: Subscription) -> None:
        end = self._log_start + len(self._log)
        if sub.held_from is None:
            sub.held_from = end
            self._held.add(sub)
        elif sub in self._rechecking and sub.recheck_cut is None:
            sub.recheck_cut = end  # the round under way may not have seen this change
        self._recheck_due.add(sub)
        self._recheck_wake.set()

    async def _recheck_loop(self) -> None:
        """Rounds of checks: each takes every stream waiting, and asks the rechecker about all
        of them at once (one query for their sessions, one scope per user and view)."""
        while True:
            await self._recheck_wake.wait()
            self._recheck_wake.clear()
            batch = [sub for sub in self._recheck_due if sub.ended is None]
            self._recheck_due.clear()
            if not batch:
                self._release_ended()
                continue
            self._rechecking = set(batch)
            try:
                if self.rechecker is None:
                    results: Recheck = {sub: sub.scope for sub in batch}
                else:
                    async with asyncio.timeout(RECHECK_TIMEOUT):
                        results = await self.rechecker(batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("re-checking %d event stream(s) failed; ending them", len(batch))
                results = {}
            # No await from here: nothing is delivered while the results are applied.
            self._rechecking = set()
            for sub in batch:
                self._settle(sub, results.get(sub, CloseReason.ERROR))
            self._release_ended()

    def _settle(self, sub: Subscription, result: Scope | CloseReason) -> None:
        """Apply a check's result: end the stream, or give it its new scope and what was held
        back for it meanwhile, as that scope allows."""
        start, cut = sub.held_from, sub.recheck_cut
        assert start is not None
        end = cut if cut is not None else self._log_start + len(self._log)
        if sub.ended is None and isinstance(result, CloseReason):
            if result is CloseReason.SESSION and sub.note is None:
                sub.note = SESSION_ENDED
            sub.end(result)
        if sub.ended is None:
            assert isinstance(result, Scope)
            if result != sub.scope:
                self._index(sub, add=False)
                sub.scope = result
                self._index(sub, add=True)
            first = start - self._log_start
            for i in range(first, end - self._log_start):
                message, frame = self._log[i]
                if result.matches(message):
                    if frame is None:
                        frame = encode_frame(message)
                        self._log[i] = (message, frame)
                    sub.put(frame, self._queue_size)
        if cut is not None and sub.ended is None:
            sub.held_from, sub.recheck_cut = cut, None  # and on to the next round
        else:
            sub.held_from = sub.recheck_cut = None
            self._held.discard(sub)

    def _release_ended(self) -> None:
        for sub in [s for s in self._held if s.ended is not None and s not in self._rechecking]:
            sub.held_from = sub.recheck_cut = None
            self._held.discard(sub)
        self._trim_log()

    def _trim_log(self) -> None:
        """Drop the events no held stream waits for any longer."""
        if not self._held:
            self._log_start += len(self._log)
            self._log.clear()
            return
        keep = min(sub.held_from for sub in self._held if sub.held_from is not None)
        if keep > self._log_start:
            del self._log[: keep - self._log_start]
            self._log_start = keep

    async def _tick_loop(self) -> None:
        """The process's one timer: a heartbeat round per tick, sessions that expired, and
        the server's stop flag."""
        loop = asyncio.get_running_loop()
        slot, due = 0, loop.time()
        while True:
            due = max(due + self._tick, loop.time())
            await asyncio.sleep(due - loop.time())
            if self._stop_when is not None and not self._ending and self._stop_when():
                log.info("server stopping: ending %d event stream(s)", self.open_streams)
                self.end_streams()
            self._expire_sessions(time.time())
            if slot == 0:
                now = datetime.now(UTC).isoformat(timespec="seconds")
                self.heartbeat_frame = f": ping {now}\n\n".encode()
            for sub in self._slots[slot]:
                sub.heartbeat()
            slot = (slot + 1) % len(self._slots)

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
        if message.get("type") in INTERNAL_EVENTS:  # for this process, not for its clients
            for listener in self.internal_listeners:
                try:
                    listener(message)
                except Exception:
                    log.exception("internal event listener failed")
            if message.get("type") == EventType.ACCOUNT_CHANGED:
                self._account_changed(message)
            return
        if self._held:  # streams being re-checked get these once their new scope is known
            self._log.append((message, None))
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
        if not targets:  # every process gets every event; most have no stream for it
            return
        frame = encode_frame(message)
        limit = self._queue_size
        with span(
            "events.deliver", event_id=int(message.get("eventId") or 0), streams=len(targets)
        ):
            for sub in targets:
                sub.offer(frame, limit)

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
            await wait_event(self._poke, self._poll_interval)
            self._poke.clear()
            try:
                await self.catch_up()
            except Exception:
                log.exception("event catch-up failed; retrying")
