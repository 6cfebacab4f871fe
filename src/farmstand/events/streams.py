"""SSE streams: who may open which stream, and the generator that replays then goes live."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.accounts.models import User
from farmstand.accounts.roles import Role
from farmstand.catalog import service as catalog
from farmstand.catalog.models import Farm
from farmstand.config import Settings
from farmstand.db import Database
from farmstand.errors import NotFound, Unprocessable
from farmstand.events import service
from farmstand.events.hub import CLOSED, OVERFLOW, Hub, encode_frame
from farmstand.events.service import Scope
from farmstand.orders import service as orders


class CustomerNotFound(NotFound):
    message = "Customer not found."


async def scope_for_farm(session: AsyncSession, user: User, farm_id: str) -> Scope:
    farm = await session.get(Farm, farm_id)
    if farm is None or not (user.role is Role.ADMIN or farm.owner_id == user.id):
        raise catalog.FarmNotFound()
    return Scope(farms=frozenset({farm.id}))


async def scope_for_customer(session: AsyncSession, user: User, customer_id: str) -> Scope:
    if user.role is not Role.ADMIN and customer_id != user.id:
        raise CustomerNotFound()
    if user.role is Role.ADMIN:
        customer = await session.get(User, customer_id)
        if customer is None or customer.role is not Role.CUSTOMER:
            raise CustomerNotFound()
    return Scope(customers=frozenset({customer_id}))


async def scope_for_order(session: AsyncSession, user: User, order_id: str) -> Scope:
    order = await orders.get_visible_order(session, user, order_id)
    return Scope(orders=frozenset({order.id}))


async def scope_for_user(session: AsyncSession, user: User) -> Scope:
    """Everything the user may see, plus the events meant for them alone."""
    me = frozenset({user.id})
    if user.role is Role.ADMIN:
        return Scope(everything=True, users=me)
    if user.role is Role.FARMER:
        farms = await session.scalars(select(Farm.id).where(Farm.owner_id == user.id))
        return Scope(farms=frozenset(farms), users=me)
    return Scope(customers=me, users=me)


def parse_last_event_id(header: str | None, query: str | None) -> int | None:
    raw = header if header not in (None, "") else query
    if raw in (None, ""):
        return None
    assert raw is not None
    try:
        value = int(raw.strip())
    except ValueError:
        value = -1
    if value < 0:
        raise Unprocessable(
            "Last-Event-ID must be an event id this server sent (a whole number).",
            details=[{"field": "lastEventId", "message": "must be a non-negative integer"}],
        )
    return value


def _control(event: str, data: dict[str, object], *, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def event_stream(
    db: Database, hub: Hub, settings: Settings, scope: Scope, last_event_id: int | None
) -> AsyncIterator[bytes]:
    """Replay what the client missed from the table, then live events, with no gap or repeat.

    Subscribing comes first: anything delivered from then on is queued while the replay reads
    the table, and queued frames at or below the last replayed position are skipped.
    """
    sub = hub.subscribe(scope)
    try:
        yield f"retry: {settings.sse_retry_ms}\n\n".encode()
        if last_event_id is None:
            # Nothing to resume: start at the live edge, and give the client an id to resume from.
            last_sent = sub.start_position - 1
            yield _control("CONNECTED", {"lastEventId": last_sent}, event_id=last_sent)
        else:
            last_sent = last_event_id
            oldest = await service.oldest_position(db)
            if oldest is not None and last_event_id < oldest - 1:
                # Pruned past the client's point: it must reload its state, then carry on.
                yield _control(
                    "RESET", {"reason": "Events since your last one were pruned; reload the data."}
                )
            while True:
                batch = await service.replay(db, scope, after=last_sent)
                for message in batch:
                    yield encode_frame(message).data
                    last_sent = int(message["eventId"])
                if len(batch) < 500:
                    break
        while True:
            frame = await sub.get()
            if frame is CLOSED:
                return
            if frame is OVERFLOW:
                yield _control(
                    "OVERFLOW",
                    {
                        "reason": "Too slow to keep up; reconnect to resume.",
                        "lastEventId": last_sent,
                    },
                )
                return
            if frame.position <= last_sent:
                continue
            yield frame.data
            last_sent = frame.position
    finally:
        hub.unsubscribe(sub)
