"""Recording events in the caller's transaction, sequencing them after commit, reading them back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, false, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.db import Database, Write, insert_rows, rows_params, utcnow
from farmstand.events.models import INTERNAL_EVENTS, EventCounter, EventType, OrderEvent
from farmstand.schemas import iso_z

# Set in ``session.info`` by a transaction that wrote events: the commit wakes the sequencer.
NEW_EVENTS_KEY = "farmstand.new_events"

Message = dict[str, Any]


def event_row(
    type: EventType,
    *,
    order_id: str | None,
    farm_id: str | None,
    customer_id: str | None,
    data: dict[str, Any],
    user_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """One event as a row for a (multi-row) insert; see ``insert_events``."""
    return {
        "type": type,
        "order_id": order_id,
        "farm_id": farm_id,
        "customer_id": customer_id,
        "user_id": user_id,
        "data": data,
        "created_at": now or utcnow(),
    }


_EVENT_COLUMNS = ("type", "order_id", "farm_id", "customer_id", "user_id", "data", "created_at")


def events_write(rows: Sequence[dict[str, Any]], prefix: str = "e") -> Write:
    """The insert of event rows, for ``db.write_together``; call ``mark_written`` after."""
    table = cast(Table, OrderEvent.__table__)
    count = len(rows)
    return Write(
        ("events", prefix, count),
        lambda: insert_rows(table, _EVENT_COLUMNS, count, prefix),
        rows_params(prefix, _EVENT_COLUMNS, rows),
    )


def mark_written(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """After events are written: the commit wakes the sequencer."""
    if rows:
        session.info[NEW_EVENTS_KEY] = True


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
    """Add an event to the current transaction (ORM, flushed with the rest of the session)."""
    event = OrderEvent(
        **event_row(
            type,
            order_id=order_id,
            farm_id=farm_id,
            customer_id=customer_id,
            data=data,
            user_id=user_id,
            now=now,
        )
    )
    session.add(event)
    session.info[NEW_EVENTS_KEY] = True
    return event


class ViewKind(StrEnum):
    MINE = "mine"  # GET /api/events: everything the user may see
    FARM = "farm"
    CUSTOMER = "customer"
    ORDER = "order"


@dataclass(frozen=True, slots=True)
class View:
    """What a stream was opened for; its ``Scope`` is computed from it, when it opens and
    again whenever its user's account changes (``farmstand.events.streams.scope_of``)."""

    kind: ViewKind
    key: str | None = None  # the farm, customer or order id


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

    def matches(self, message: Message) -> bool:
        """Whether ``where()`` would select this (client-visible) event: for events held back
        while a stream's scope is being recomputed (see ``Hub``)."""
        user_id = message.get("userId")
        if user_id:
            return user_id in self.users
        return (
            self.everything
            or message.get("farmId") in self.farms
            or message.get("customerId") in self.customers
            or message.get("orderId") in self.orders
        )


async def _events_after(
    db: Database, position: int, limit: int, scope: Scope | None
) -> list[Message]:
    query = select(*_RETURNED).where(OrderEvent.position > position)
    if scope is not None:  # a client's replay: what it may see, and never internal events
        query = query.where(scope.where(), OrderEvent.type.not_in(list(INTERNAL_EVENTS)))
    query = query.order_by(OrderEvent.position).limit(limit)
    # The hub's reads come from the background pool: they never queue behind requests.
    async with db.transaction(write=False, background=scope is None) as session:
        return [_message(*row) for row in await session.execute(query)]


async def replay(db: Database, scope: Scope, after: int, limit: int = 500) -> list[Message]:
    """The next ``limit`` events after ``after`` that ``scope`` may see, in position order."""
    return await _events_after(db, after, limit, scope)


async def published_after(db: Database, position: int, limit: int = 1000) -> list[Message]:
    """Every sequenced event after ``position`` (the hub's catch-up and gap filling)."""
    return await _events_after(db, position, limit, None)


async def last_position(db: Database) -> int:
    async with db.transaction(write=False, background=True) as session:
        return (
            await session.scalar(select(EventCounter.position).where(EventCounter.id == 1))
        ) or 0


async def oldest_position(db: Database) -> int | None:
    async with db.transaction(write=False) as session:
        return await session.scalar(select(func.min(OrderEvent.position)))


_RETURNED = (
    OrderEvent.position,
    OrderEvent.type,
    OrderEvent.order_id,
    OrderEvent.farm_id,
    OrderEvent.customer_id,
    OrderEvent.user_id,
    OrderEvent.data,
    OrderEvent.created_at,
)


_EVENTS = cast(Table, OrderEvent.__table__)
_COUNTER = cast(Table, EventCounter.__table__)


def _sequence_statements(limit: int) -> tuple[Any, Any, Any]:
    lock = select(_COUNTER.c.position).where(_COUNTER.c.id == 1).with_for_update()
    pending = (
        select(_EVENTS.c.id, func.row_number().over(order_by=_EVENTS.c.id).label("rn"))
        .where(_EVENTS.c.position.is_(None))
        .order_by(_EVENTS.c.id)
        .limit(limit)
        .subquery("pending")
    )
    assign = (
        update(_EVENTS)
        .where(_EVENTS.c.id == pending.c.id)
        .values(
            position=bindparam("base", type_=_EVENTS.c.position.type) + pending.c.rn,
            published_at=bindparam("now", type_=_EVENTS.c.published_at.type),
        )
        .returning(*(_EVENTS.c[column.key] for column in _RETURNED))
    )
    advance = (
        update(_COUNTER)
        .where(_COUNTER.c.id == 1)
        .values(position=bindparam("position", type_=_COUNTER.c.position.type))
    )
    return lock, assign, advance


_SEQUENCE = _sequence_statements(1000)


async def sequence_pending(db: Database) -> list[Message]:
    """Give committed, unsequenced events their positions (up to 1000), in one short
    transaction on the background pool; returns their messages, in position order.

    The counter row's lock makes sequencing transactions run one at a time (in every process),
    and the events are read after it is taken, so positions are handed out in commit order
    with no gaps. Any process may sequence any committed event: whichever gets there first.
    """
    lock, assign, advance = _SEQUENCE
    async with db.writing(), db.background_engine.begin() as connection:
        base = await connection.scalar(lock)
        if base is None:
            await connection.execute(insert(_COUNTER).values(id=1, position=0))
            base = 0
        rows = list(await connection.execute(assign, {"base": base, "now": utcnow()}))
        if rows:
            await connection.execute(advance, {"position": base + len(rows)})
    rows.sort(key=lambda row: row[0])
    return [_message(*row) for row in rows]


def _message(
    position: int,
    type: str,
    order_id: str | None,
    farm_id: str | None,
    customer_id: str | None,
    user_id: str | None,
    data: dict[str, Any],
    created_at: datetime,
) -> Message:
    return {
        "eventId": position,
        "type": str(type),
        "orderId": order_id,
        "farmId": farm_id,
        "customerId": customer_id,
        "userId": user_id,
        "data": data,
        "createdAt": iso_z(created_at),
    }


async def prune(db: Database, older_than: datetime) -> int:
    async with db.transaction(background=True) as session:
        result = await session.execute(
            delete(OrderEvent).where(
                OrderEvent.created_at < older_than, OrderEvent.position.is_not(None)
            )
        )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def count_since(session: AsyncSession, since: datetime) -> dict[EventType, int]:
    """Events recorded since ``since``, by type (internal ones left out; zeros included)."""
    table = cast(Table, OrderEvent.__table__)
    rows = await (await session.connection()).execute(
        select(table.c.type, func.count())
        .where(table.c.created_at >= since, table.c.type.not_in(sorted(INTERNAL_EVENTS)))
        .group_by(table.c.type)
    )
    counts = {kind: 0 for kind in EventType if kind not in INTERNAL_EVENTS}
    for kind, count in rows:
        counts[EventType(kind)] = int(count)
    return counts
