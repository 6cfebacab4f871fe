"""SSE streams: who may open which stream, and the generator that replays then goes live."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator

from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.accounts.models import User
from farmstand.accounts.principal import Person, Principal
from farmstand.accounts.roles import Role
from farmstand.catalog import access as farm_access
from farmstand.config import Settings
from farmstand.db import Database
from farmstand.errors import BadRequest, NotFound
from farmstand.events import service
from farmstand.events.hub import CloseReason, Frame, Hub, Owner, Subscription, encode_frame
from farmstand.events.service import Scope, View, ViewKind
from farmstand.orders import access as order_access
from farmstand.orders import service as orders


class CustomerNotFound(NotFound):
    message = "Customer not found."


async def scope_for_farm(session: AsyncSession, user: Person, farm_id: str) -> Scope:
    await farm_access.ensure_manages_farm_id(session, user, farm_id)
    return Scope(farms=frozenset({farm_id}), users=frozenset({user.id}))


async def scope_for_customer(session: AsyncSession, user: Person, customer_id: str) -> Scope:
    if not order_access.may_watch_customer(user, customer_id):
        raise CustomerNotFound()
    if user.role is Role.ADMIN:
        customer = await session.get(User, customer_id)
        if customer is None or customer.role is not Role.CUSTOMER:
            raise CustomerNotFound()
    return Scope(customers=frozenset({customer_id}), users=frozenset({user.id}))


async def scope_for_order(session: AsyncSession, user: Person, order_id: str) -> Scope:
    order = await orders.get_visible_order(session, user, order_id)
    return Scope(orders=frozenset({order.id}), users=frozenset({user.id}))


async def scope_for_user(session: AsyncSession, user: Person) -> Scope:
    """Everything the user may see, plus the events meant for them alone."""
    me = frozenset({user.id})
    farms = await farm_access.managed_farm_ids(session, user)
    if farms is None:
        return Scope(everything=True, users=me)
    if user.role is Role.FARMER:
        return Scope(farms=farms, users=me)
    return Scope(customers=me, users=me)


async def scope_of(session: AsyncSession, user: Person, view: View) -> Scope:
    """The scope of a stream opened for ``view`` (when it opens, and again when the user's
    account changes); NotFound when the user may not see it. Every stream also carries the
    events meant for its user alone (their in-app notifications), so a page that follows one
    order or farm needs no second stream for its notification bell."""
    if view.kind is ViewKind.MINE:
        return await scope_for_user(session, user)
    assert view.key is not None
    if view.kind is ViewKind.FARM:
        return await scope_for_farm(session, user, view.key)
    if view.kind is ViewKind.CUSTOMER:
        return await scope_for_customer(session, user, view.key)
    return await scope_for_order(session, user, view.key)


def owner_of(user: Principal, view: View, changes_seen: int) -> Owner:
    return Owner(
        user_id=user.id,
        session_id=user.session_id,
        expires_at=user.session_expires_at.timestamp(),
        view=view,
        changes_seen=changes_seen,
    )


# Event ids are positions in a 64-bit column; anything else is not an id this server sent.
MAX_EVENT_ID = 2**63 - 1
_EVENT_ID = re.compile(r"[0-9]{1,19}")


def parse_last_event_id(header: str | None, query: str | None) -> int | None:
    """The id to resume after (the header wins over the query), or None for a fresh stream.

    Only ASCII digits of a value up to 2**63 - 1 are accepted: anything else (signs, spaces
    inside, exponents, other scripts' digits, too large) is a 400, never a failed stream."""
    raw = header if header not in (None, "") else query
    if raw is None or raw.strip() == "":
        return None
    text = raw.strip()
    if _EVENT_ID.fullmatch(text) is None or int(text) > MAX_EVENT_ID:
        raise BadRequest(
            "Last-Event-ID (or lastEventId) must be an event id this server sent: "
            f"a whole number from 0 to {MAX_EVENT_ID}.",
            details=[
                {
                    "field": "lastEventId",
                    "message": f"must be a whole number from 0 to {MAX_EVENT_ID}",
                }
            ],
        )
    return int(text)


def _control(event: str, data: dict[str, object], *, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


REPLAY_BATCH = 500


class EventStream:
    """What one stream says, in order: the ``retry:`` hint; ``CONNECTED`` (a fresh stream) or
    the replay of what the client missed (``RESET`` first if that was pruned); then live frames
    with no gap or repeat at the seam; and, if it falls behind, ``OVERFLOW``.

    The response (``farmstand.events.sse``) subscribes it to the hub *before* the replay reads
    the table, so live frames queue meanwhile; those at or below the last replayed position
    are skipped. Nothing here holds a database connection between reads.
    """

    __slots__ = ("db", "hub", "last_event_id", "last_sent", "owner", "retry_ms", "scope")

    def __init__(
        self,
        db: Database,
        hub: Hub,
        settings: Settings,
        scope: Scope,
        last_event_id: int | None,
        owner: Owner | None = None,
    ) -> None:
        self.db = db
        self.hub = hub
        self.scope = scope
        self.owner = owner  # whose session it follows (see ``Hub.subscribe``)
        self.retry_ms = settings.sse_retry_ms
        self.last_event_id = last_event_id
        self.last_sent = -1

    async def opening(self, sub: Subscription) -> AsyncGenerator[bytes, None]:
        """The first chunks: the retry hint with ``CONNECTED``, or with the replay in batches."""
        head = f"retry: {self.retry_ms}\n\n".encode()
        if self.last_event_id is None:
            # Nothing to resume: start at the live edge, and give the client an id to resume from.
            self.last_sent = sub.start_position - 1
            yield head + _control(
                "CONNECTED", {"lastEventId": self.last_sent}, event_id=self.last_sent
            )
            return
        self.last_sent = self.last_event_id
        oldest = await service.oldest_position(self.db)
        if oldest is not None and self.last_event_id < oldest - 1:
            # Pruned past the client's point: it must reload its state, then carry on.
            head += _control(
                "RESET", {"reason": "Events since your last one were pruned; reload the data."}
            )
        while True:
            batch = await service.replay(
                self.db, self.scope, after=self.last_sent, limit=REPLAY_BATCH
            )
            if batch:
                frames = [encode_frame(message).data for message in batch]
                self.last_sent = int(batch[-1]["eventId"])
                yield head + b"".join(frames)
                head = b""
            if len(batch) < REPLAY_BATCH:
                break
        if head:
            yield head

    def live(self, frames: list[Frame]) -> bytes:
        """The chunk for frames from the hub: those already sent (by the replay) left out."""
        last = self.last_sent
        fresh = [frame for frame in frames if frame.position > last]
        if not fresh:
            return b""
        self.last_sent = fresh[-1].position
        return fresh[0].data if len(fresh) == 1 else b"".join(f.data for f in fresh)

    def last_frame(self, reason: CloseReason, note: str | None) -> bytes:
        """What a stream that ends for ``reason`` says last (nothing for most reasons)."""
        if reason is CloseReason.OVERFLOW:
            return _control(
                "OVERFLOW",
                {
                    "reason": "Too slow to keep up; reconnect to resume.",
                    "lastEventId": self.last_sent,
                },
            )
        if reason is CloseReason.SESSION:
            # Reconnecting would be refused (401): the client should sign in again first.
            return _control(
                "SESSION_ENDED",
                {
                    "reason": note or "session ended",
                    "message": "Your session has ended; sign in again.",
                    "lastEventId": self.last_sent,
                },
            )
        if reason is CloseReason.ACCESS:
            # Reconnecting would be refused (404): what it carried is no longer the user's.
            return _control(
                "ACCESS_ENDED",
                {
                    "reason": note or "access changed",
                    "message": "You may no longer see the events of this stream.",
                },
            )
        return b""
