"""Recording events in the caller's transaction, sequencing them after commit, reading them back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, exists, false, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.db import Database, utcnow
from farmstand.events.models import EventCounter, EventType, OrderEvent
from farmstand.schemas import iso_z

NEW_EVENTS_KEY = "farmstand.new_events"

Message = dict[str, Any]


def record(
    session: AsyncSession,
    type: EventType,
    *,
    order_id: str | None,
    farm_id: str | None,
    customer_id: str | None,
    data: dict[str, Any],
    user_id: str | None = None,
    now: datetime | None = None,
) -> OrderEvent:
    """Add an event to the current transaction; it is sequenced and published after commit."""
    event = OrderEvent(
        type=type,
        order_id=order_id,
        farm_id=farm_id,
        customer_id=customer_id,
        user_id=user_id,
        data=data,
        created_at=now or utcnow(),
    )
    session.add(event)
    session.info.setdefault(NEW_EVENTS_KEY, []).append(event)
    return event


def new_event_ids(info: dict[str, Any]) -> list[int]:
    """Ids of the events a committed transaction wrote (read by the commit listener)."""
    return [event.id for event in info.get(NEW_EVENTS_KEY, ()) if event.id is not None]


def to_message(event: OrderEvent) -> Message:
    """The wire form: what the bus carries and what an SSE ``data:`` line holds."""
    return {
        "eventId": event.position,
        "type": str(event.type),
        "orderId": event.order_id,
        "farmId": event.farm_id,
        "customerId": event.customer_id,
        "userId": event.user_id,
        "data": event.data,
        "createdAt": iso_z(event.created_at),
    }


@dataclass(frozen=True)
class Scope:
    """Which events a stream may carry; the same rule routes live events and replays."""

    farms: frozenset[str] = field(default_factory=frozenset)
    customers: frozenset[str] = field(default_factory=frozenset)
    orders: frozenset[str] = field(default_factory=frozenset)
    users: frozenset[str] = field(default_factory=frozenset)
    everything: bool = False

    def where(self) -> Any:
        personal = OrderEvent.user_id.in_(self.users) if self.users else false()
        if self.everything:
            shared: Any = OrderEvent.user_id.is_(None)
        else:
            conditions = [
                column.in_(values)
                for column, values in (
                    (OrderEvent.farm_id, self.farms),
                    (OrderEvent.customer_id, self.customers),
                    (OrderEvent.order_id, self.orders),
                )
                if values
            ]
            shared = (OrderEvent.user_id.is_(None) & or_(*conditions)) if conditions else false()
        return or_(shared, personal)


async def _events_after(
    db: Database, position: int, limit: int, scope: Scope | None
) -> list[Message]:
    query: Select[tuple[OrderEvent]] = select(OrderEvent).where(OrderEvent.position > position)
    if scope is not None:
        query = query.where(scope.where())
    query = query.order_by(OrderEvent.position).limit(limit)
    async with db.transaction(write=False) as session:
        return [to_message(event) for event in await session.scalars(query)]


async def replay(db: Database, scope: Scope, after: int, limit: int = 500) -> list[Message]:
    """The next ``limit`` events after ``after`` that ``scope`` may see, in position order."""
    return await _events_after(db, after, limit, scope)


async def published_after(db: Database, position: int, limit: int = 1000) -> list[Message]:
    """Every sequenced event after ``position`` (the hub's catch-up and gap filling)."""
    return await _events_after(db, position, limit, None)


async def last_position(db: Database) -> int:
    async with db.transaction(write=False) as session:
        return (
            await session.scalar(select(EventCounter.position).where(EventCounter.id == 1))
        ) or 0


async def oldest_position(db: Database) -> int | None:
    async with db.transaction(write=False) as session:
        return await session.scalar(select(func.min(OrderEvent.position)))


async def sequence(
    db: Database,
    *,
    ids: Sequence[int] | None = None,
    older_than: datetime | None = None,
    limit: int = 1000,
) -> list[Message]:
    """Give committed, unsequenced events their positions, in one short transaction.

    The counter row's lock makes sequencing transactions run one at a time, so positions are
    handed out in commit order with no gaps. Returns the messages to publish.
    """
    pending = OrderEvent.position.is_(None)
    if ids is not None:
        if not ids:
            return []
        pending = pending & OrderEvent.id.in_(ids)
    if older_than is not None:
        pending = pending & (OrderEvent.created_at < older_than)
    if ids is None:
        # The relay runs in every process every second: look before taking the lock.
        async with db.transaction(write=False) as session:
            if not await session.scalar(select(exists().where(pending))):
                return []
    now = utcnow()
    async with db.transaction() as session:
        counter = await session.scalar(
            select(EventCounter).where(EventCounter.id == 1).with_for_update()
        )
        if counter is None:
            counter = EventCounter(id=1, position=0)
            session.add(counter)
        events = list(
            await session.scalars(
                select(OrderEvent).where(pending).order_by(OrderEvent.id).limit(limit)
            )
        )
        for offset, event in enumerate(events, start=1):
            event.position = counter.position + offset
            event.published_at = now
        counter.position += len(events)
    return [to_message(event) for event in events]


async def prune(db: Database, older_than: datetime) -> int:
    async with db.transaction() as session:
        result = await session.execute(
            delete(OrderEvent).where(
                OrderEvent.created_at < older_than, OrderEvent.position.is_not(None)
            )
        )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
