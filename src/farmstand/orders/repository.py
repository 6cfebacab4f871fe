"""Order queries, locking and writes. No business decisions here.

The hot paths are priced: an order is read with its farm, customer and items (and, when a
notification follows, its recipient's preferences) in ONE statement, and a change writes the
order, its history, its events and its notifications in ONE more (see ``db.write_together``).
Statements are built once per shape and reused with bind parameters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    Text,
    bindparam,
    case,
    func,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from farmstand.accounts.models import User
from farmstand.catalog.models import Farm, Product
from farmstand.db import Write, insert_rows, rows_params, utcnow
from farmstand.notifications.models import NotificationType
from farmstand.notifications.recipients import RecipientFacts, facts_from, recipient_columns
from farmstand.orders.models import Order, OrderItem, OrderStatusHistory
from farmstand.orders.records import ORDER_FIELDS, ItemRecord, OrderRecord, parse_items
from farmstand.orders.states import OPEN_STATUSES, OrderStatus

ORDERS = cast(Table, Order.__table__)
ITEMS = cast(Table, OrderItem.__table__)
HISTORY = cast(Table, OrderStatusHistory.__table__)
FARMS = cast(Table, Farm.__table__)
PRODUCTS = cast(Table, Product.__table__)
USERS = cast(Table, User.__table__)
# The order's customer (an alias: the same statement may join users again for other roles).
CUSTOMERS = USERS.alias("customer")


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def _items_json(dialect: str) -> ColumnElement[Any]:
    """The order's items (with their product's current name and unit) as one JSON array."""
    columns = (
        ITEMS.c.id,
        ITEMS.c.product_id,
        ITEMS.c.position,
        ITEMS.c.product_name,
        ITEMS.c.unit,
        ITEMS.c.quantity,
        ITEMS.c.unit_price,
        ITEMS.c.prepared,
        ITEMS.c.prepared_at,
        PRODUCTS.c.name,
        PRODUCTS.c.unit,
    )
    if dialect == "postgresql":
        aggregate = func.json_agg(func.json_build_array(*columns))
    else:
        aggregate = func.json_group_array(func.json_array(*columns))
    query = (
        select(aggregate)
        .select_from(ITEMS.join(PRODUCTS, PRODUCTS.c.id == ITEMS.c.product_id))
        .where(ITEMS.c.order_id == ORDERS.c.id)
        .scalar_subquery()
    )
    return (query.cast(Text) if dialect == "postgresql" else query).label("items_json")


def _record_query(dialect: str, recipient_type: ColumnElement[Any] | None = None) -> Select[Any]:
    customers = CUSTOMERS
    columns: list[Any] = [ORDERS.c[name] for name in ORDER_FIELDS]
    columns += [
        FARMS.c.owner_id.label("farm_owner_id"),
        FARMS.c.name.label("farm_name"),
        FARMS.c.timezone.label("farm_timezone"),
        customers.c.name.label("customer_name"),
        _items_json(dialect),
    ]
    if recipient_type is not None:
        columns += recipient_columns(customers, recipient_type, dialect)
    return select(*columns).select_from(
        ORDERS.join(FARMS, FARMS.c.id == ORDERS.c.farm_id).join(
            customers, customers.c.id == ORDERS.c.customer_id
        )
    )


def _record(row: Any) -> OrderRecord:
    mapping = row._mapping
    return OrderRecord(
        **{name: mapping[name] for name in ORDER_FIELDS},
        farm_owner_id=mapping["farm_owner_id"],
        farm_name=mapping["farm_name"],
        farm_timezone=mapping["farm_timezone"],
        customer_name=mapping["customer_name"],
        items=parse_items(mapping["items_json"]),
    )


_LOAD: dict[tuple[str, bool, bool], Any] = {}


def _load_statement(dialect: str, lock: bool, with_recipient: bool) -> Any:
    key = (dialect, lock, with_recipient)
    statement = _LOAD.get(key)
    if statement is None:
        kind = bindparam("notify_type", type_=Text) if with_recipient else None
        statement = _record_query(dialect, kind).where(ORDERS.c.id == bindparam("order_id"))
        if lock and dialect == "postgresql":
            statement = statement.with_for_update(of=ORDERS)
        _LOAD[key] = statement
    return statement


async def load_order(
    session: AsyncSession,
    order_id: str,
    *,
    lock: bool = False,
    notify: NotificationType | None = None,
) -> tuple[OrderRecord, RecipientFacts | None] | None:
    """The order with its farm, customer and items, in one statement; with ``notify``, also
    what notifying its customer of that type needs. ``lock`` takes the order's row lock.

    On PostgreSQL the lock is ``SELECT … FOR UPDATE OF orders``. SQLite has no row locks: its
    write transactions hold the database write lock from BEGIN IMMEDIATE, and every UPDATE of
    an order still compares its version (compare-and-set).
    """
    dialect = _dialect(session)
    params: dict[str, Any] = {"order_id": order_id}
    if notify is not None:
        params["notify_type"] = str(notify)
    statement = _load_statement(dialect, lock, notify is not None)
    row = (await (await session.connection()).execute(statement, params)).first()
    if row is None:
        return None
    return _record(row), (facts_from(row) if notify is not None else None)


async def load_orders(session: AsyncSession, order_ids: Iterable[str]) -> list[OrderRecord]:
    """Several orders by id, each with its farm, customer and items (no lock)."""
    ids = list(order_ids)
    if not ids:
        return []
    query = _record_query(_dialect(session)).where(ORDERS.c.id.in_(ids))
    return [_record(row) for row in await (await session.connection()).execute(query)]


@dataclass(frozen=True, slots=True)
class OrderFilter:
    """What narrows a list of orders beyond who may see them (the board's tabs and search).

    ``completed_since`` maps a farm's time zone to a time (the start of that farm's day, in
    UTC): only orders completed since then, at a farm of that zone, pass. ``search`` matches
    the order number or the customer's name, case-insensitive, anywhere in it."""

    farm_id: str | None = None
    statuses: Sequence[OrderStatus] = ()
    completed_since: Mapping[str, datetime] | None = None
    search: str | None = None


def _completed_since(since: Mapping[str, datetime]) -> ColumnElement[Any]:
    """The start of the order's farm's day: one bound time per zone, chosen by the farm's."""
    kind = ORDERS.c.completed_at.type
    values = list(since.items())
    earliest = bindparam("since_else", min(since.values()), type_=kind)
    if len(values) == 1:
        return bindparam("since_0", values[0][1], type_=kind)
    return case(
        {zone: bindparam(f"since_{n}", at, type_=kind) for n, (zone, at) in enumerate(values)},
        value=FARMS.c.timezone,
        else_=earliest,
    )


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _filtered(query: Select[Any], visible: ColumnElement[bool] | None, where: OrderFilter) -> Any:
    if visible is not None:
        query = query.where(visible)
    if where.farm_id is not None:
        query = query.where(ORDERS.c.farm_id == where.farm_id)
    if where.statuses:
        query = query.where(ORDERS.c.status.in_(list(where.statuses)))
    if where.completed_since:
        query = query.where(ORDERS.c.completed_at >= _completed_since(where.completed_since))
    if where.search:
        pattern = f"%{_escape_like(where.search.lower())}%"
        query = query.where(
            func.lower(ORDERS.c.order_number).like(pattern, escape="\\")
            | func.lower(CUSTOMERS.c.name).like(pattern, escape="\\")
        )
    return query


async def list_orders(
    session: AsyncSession,
    visible: ColumnElement[bool] | None,
    *,
    farm_id: str | None,
    statuses: Sequence[OrderStatus],
    before: tuple[datetime, str] | None,
    limit: int,
    where: OrderFilter | None = None,
) -> list[OrderRecord]:
    """A page of the ``visible`` orders (see ``access.visible_orders_condition``; None for
    all), newest first, in one statement; ``where`` narrows it further."""
    where = where or OrderFilter()
    query = _filtered(_record_query(_dialect(session)), visible, where)
    if farm_id is not None:
        query = query.where(ORDERS.c.farm_id == farm_id)
    if statuses:
        query = query.where(ORDERS.c.status.in_(list(statuses)))
    if before is not None:
        query = query.where(tuple_(ORDERS.c.created_at, ORDERS.c.id) < tuple_(*before))
    query = query.order_by(ORDERS.c.created_at.desc(), ORDERS.c.id.desc()).limit(limit)
    return [_record(row) for row in await (await session.connection()).execute(query)]


@dataclass(frozen=True, slots=True)
class StatusCounts:
    by_status: dict[OrderStatus, int]
    completed_since: int  # of the COMPLETED ones, those completed since ``completed_since``


async def count_by_status(
    session: AsyncSession,
    visible: ColumnElement[bool] | None,
    where: OrderFilter,
    completed_since: Mapping[str, datetime],
) -> StatusCounts:
    """How many of the ``visible`` orders ``where`` lets through are in each status, and how
    many were completed since the start of their farm's day: ONE grouped statement."""
    recent = func.sum(
        case((ORDERS.c.completed_at >= _completed_since(completed_since), 1), else_=0)
    )
    query = select(ORDERS.c.status, func.count(), recent).select_from(
        ORDERS.join(FARMS, FARMS.c.id == ORDERS.c.farm_id).join(
            CUSTOMERS, CUSTOMERS.c.id == ORDERS.c.customer_id
        )
    )
    query = _filtered(query, visible, where).group_by(ORDERS.c.status)
    by_status: dict[OrderStatus, int] = {}
    completed = 0
    for status, count, since in await (await session.connection()).execute(query):
        by_status[OrderStatus(status)] = int(count)
        if status == OrderStatus.COMPLETED:
            completed = int(since or 0)
    return StatusCounts(by_status, completed)


# -- history --------------------------------------------------------------------------------

_HISTORY: dict[str, Any] = {}


def _history_statement(dialect: str) -> Any:
    statement = _HISTORY.get(dialect)
    if statement is None:
        actors = USERS.alias("actor")
        statement = _HISTORY[dialect] = (
            select(
                ORDERS.c.customer_id,
                FARMS.c.owner_id,
                HISTORY.c.id,
                HISTORY.c.order_id,
                HISTORY.c.from_status,
                HISTORY.c.to_status,
                HISTORY.c.changed_by,
                actors.c.name.label("actor_name"),
                actors.c.role.label("actor_role"),
                HISTORY.c.reason,
                HISTORY.c.metadata,
                HISTORY.c.created_at,
            )
            .select_from(
                ORDERS.join(FARMS, FARMS.c.id == ORDERS.c.farm_id)
                .outerjoin(HISTORY, HISTORY.c.order_id == ORDERS.c.id)
                .outerjoin(actors, actors.c.id == HISTORY.c.changed_by)
            )
            .where(ORDERS.c.id == bindparam("order_id"))
            .order_by(HISTORY.c.seq)
        )
    return statement


async def history_with_owners(session: AsyncSession, order_id: str) -> list[Any]:
    """The order's history, oldest first, each row with the order's customer and farm owner
    (for the visibility check) and the actor's name and role; empty when no such order."""
    result = await (await session.connection()).execute(
        _history_statement(_dialect(session)), {"order_id": order_id}
    )
    return list(result)


# -- writes ---------------------------------------------------------------------------------


def order_update(order_id: str, expected_version: int, values: dict[str, Any]) -> Write:
    """``UPDATE orders SET … version = version + 1`` if still at ``expected_version``
    (compare-and-set; counted: 0 rows means someone else changed it first)."""
    names = tuple(sorted(values))

    def build() -> Any:
        return (
            update(ORDERS)
            .where(ORDERS.c.id == bindparam("o_id"), ORDERS.c.version == bindparam("o_version"))
            .values(
                {
                    ORDERS.c[name]: bindparam(f"o_{name}", type_=ORDERS.c[name].type)
                    for name in names
                }
                | {ORDERS.c.version: ORDERS.c.version + 1}
            )
            .returning(ORDERS.c.id)
        )

    params = {f"o_{name}": values[name] for name in names}
    params |= {"o_id": order_id, "o_version": expected_version}
    return Write(("order_update", names), build, params, counted=True)


_HISTORY_COLUMNS = (
    "id",
    "seq",
    "order_id",
    "from_status",
    "to_status",
    "changed_by",
    "reason",
    "metadata",
    "created_at",
)


def history_insert(row: dict[str, Any]) -> Write:
    return Write(
        "history_insert",
        lambda: insert_rows(HISTORY, _HISTORY_COLUMNS, 1, "h"),
        rows_params("h", _HISTORY_COLUMNS, [row]),
    )


def stock_return(items: Sequence[tuple[str, int]]) -> Write:
    """Put quantities back on the shelf: one statement for every product."""
    return _stock_change(items, sign=1)


def _stock_change(items: Sequence[tuple[str, int]], sign: int) -> Write:
    count = len(items)

    def build() -> Any:
        ids = [bindparam(f"s{index}_id", type_=PRODUCTS.c.id.type) for index in range(count)]
        quantities = {
            ids[index]: bindparam(f"s{index}_q", type_=PRODUCTS.c.stock.type)
            for index in range(count)
        }
        amount = case(quantities, value=PRODUCTS.c.id)
        return (
            update(PRODUCTS)
            .where(PRODUCTS.c.id.in_(ids))
            .values(
                stock=PRODUCTS.c.stock + amount if sign > 0 else PRODUCTS.c.stock - amount,
                updated_at=bindparam("s_now", type_=PRODUCTS.c.updated_at.type),
            )
        )

    params: dict[str, Any] = {"s_now": utcnow()}
    for index, (product_id, quantity) in enumerate(items):
        params[f"s{index}_id"] = product_id
        params[f"s{index}_q"] = quantity
    return Write(("stock_change", sign, count), build, params)


# -- placing orders -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FarmFacts:
    id: str
    name: str
    timezone: str
    pickup_location: str | None
    pickup_instructions: str | None
    owner: RecipientFacts  # told of every new order
    max_open_orders: int
    max_item_quantity: int
    open_orders: int  # the customer's, at this farm, before this one


@dataclass(frozen=True, slots=True)
class ProductFacts:
    id: str
    name: str
    unit: str
    price: Decimal
    stock: int
    on_sale: bool


def _open_orders(farm_id: ColumnElement[Any]) -> ColumnElement[Any]:
    """How many open orders (``states.OPEN_STATUSES``) the customer has at the farm."""
    return (
        select(func.count())
        .select_from(ORDERS)
        .where(
            ORDERS.c.customer_id == bindparam("customer_id", type_=ORDERS.c.customer_id.type),
            ORDERS.c.farm_id == farm_id,
            ORDERS.c.status.in_(sorted(OPEN_STATUSES)),
        )
        .scalar_subquery()
    )


_LOCK_PRODUCTS: dict[str, Any] = {}


def _lock_products_statement(dialect: str) -> Any:
    statement = _LOCK_PRODUCTS.get(dialect)
    if statement is None:
        owners = USERS.alias("owner")
        customers = USERS.alias("customer")
        statement = (
            select(
                FARMS.c.id.label("farm_id"),
                FARMS.c.name.label("farm_name"),
                FARMS.c.timezone.label("farm_timezone"),
                FARMS.c.pickup_location,
                FARMS.c.pickup_instructions,
                FARMS.c.max_open_orders,
                FARMS.c.max_item_quantity,
                _open_orders(FARMS.c.id).label("open_orders"),
                *recipient_columns(owners, literal(str(NotificationType.NEW_ORDER)), dialect),
                PRODUCTS.c.id,
                PRODUCTS.c.name,
                PRODUCTS.c.unit,
                PRODUCTS.c.price,
                PRODUCTS.c.stock,
                PRODUCTS.c.on_sale,
            )
            .select_from(
                FARMS.join(owners, owners.c.id == FARMS.c.owner_id)
                .join(PRODUCTS, PRODUCTS.c.farm_id == FARMS.c.id)
                .join(customers, customers.c.id == bindparam("customer_id"))
            )
            .where(
                FARMS.c.id == bindparam("farm_id"),
                PRODUCTS.c.id.in_(bindparam("product_ids", expanding=True)),
            )
            .order_by(PRODUCTS.c.id)
        )
        if dialect == "postgresql":
            # The products (their stock) and the customer's row (their open-order count: the
            # same customer's placements queue here, and ``insert_order`` counts again once
            # the queue is passed). NO KEY UPDATE: rows pointing at these (items, sessions)
            # can still be written meanwhile.
            statement = statement.with_for_update(of=[PRODUCTS, customers], key_share=True)
        _LOCK_PRODUCTS[dialect] = statement
    return statement


async def lock_products(
    session: AsyncSession, farm_id: str, customer_id: str, product_ids: Sequence[str]
) -> tuple[FarmFacts | None, dict[str, ProductFacts]]:
    """The farm (with what telling its owner of a new order needs, its limits and how many
    orders ``customer_id`` has open there) and those of ``product_ids`` it sells, locked in
    id order, with the customer's row; (None, {}) when there is no such farm."""
    dialect = _dialect(session)
    rows = list(
        await (await session.connection()).execute(
            _lock_products_statement(dialect),
            {"farm_id": farm_id, "customer_id": customer_id, "product_ids": list(product_ids)},
        )
    )
    if not rows:  # no such farm, or none of the products is the farm's
        farm_row = (
            await (await session.connection()).execute(
                select(
                    FARMS.c.id.label("farm_id"),
                    FARMS.c.name.label("farm_name"),
                    FARMS.c.timezone.label("farm_timezone"),
                    FARMS.c.pickup_location,
                    FARMS.c.pickup_instructions,
                    FARMS.c.max_open_orders,
                    FARMS.c.max_item_quantity,
                    _open_orders(FARMS.c.id).label("open_orders"),
                    *recipient_columns(USERS, literal(str(NotificationType.NEW_ORDER)), dialect),
                )
                .select_from(FARMS.join(USERS, USERS.c.id == FARMS.c.owner_id))
                .where(FARMS.c.id == farm_id),
                {"customer_id": customer_id},
            )
        ).first()
        return (_farm(farm_row) if farm_row is not None else None), {}
    products = {
        row.id: ProductFacts(row.id, row.name, row.unit, row.price, row.stock, row.on_sale)
        for row in rows
    }
    return _farm(rows[0]), products


def _farm(row: Any) -> FarmFacts:
    return FarmFacts(
        id=row.farm_id,
        name=row.farm_name,
        timezone=row.farm_timezone,
        pickup_location=row.pickup_location,
        pickup_instructions=row.pickup_instructions,
        owner=facts_from(row),
        max_open_orders=row.max_open_orders,
        max_item_quantity=row.max_item_quantity,
        open_orders=row.open_orders,
    )


async def open_orders(session: AsyncSession, customer_id: str, farm_id: str) -> int:
    """How many orders ``customer_id`` has open at ``farm_id`` now."""
    count = await (await session.connection()).scalar(
        select(_open_orders(literal(farm_id))), {"customer_id": customer_id}
    )
    return int(count or 0)


_INSERT_ORDER: dict[str, Any] = {}
_NEW_ORDER_COLUMNS = tuple(name for name in ORDER_FIELDS if name not in ("version",))


async def insert_order(session: AsyncSession, order: OrderRecord, max_open_orders: int) -> bool:
    """Insert the order row if its customer has fewer than ``max_open_orders`` open at its
    farm (counted again here: on PostgreSQL this statement sees every placement by the same
    customer that queued before it on their row lock); False when refused or when its order
    number is taken (``open_orders`` tells which)."""
    dialect = _dialect(session)
    statement = _INSERT_ORDER.get(dialect)
    if statement is None:
        insert_ = pg_insert if dialect == "postgresql" else sqlite_insert
        names = (*_NEW_ORDER_COLUMNS, "version")
        row = select(*(bindparam(name, type_=ORDERS.c[name].type) for name in names)).where(
            _open_orders(bindparam("farm_id", type_=ORDERS.c.farm_id.type))
            < bindparam("max_open_orders", type_=FARMS.c.max_open_orders.type)
        )
        statement = _INSERT_ORDER[dialect] = (
            insert_(ORDERS)
            .from_select(list(names), row)
            .on_conflict_do_nothing(index_elements=[ORDERS.c.order_number])
            .returning(ORDERS.c.id)
        )
    params = {name: getattr(order, name) for name in (*_NEW_ORDER_COLUMNS, "version")}
    params["max_open_orders"] = max_open_orders
    return (await (await session.connection()).execute(statement, params)).first() is not None


_ITEM_COLUMNS = (
    "id",
    "order_id",
    "product_id",
    "position",
    "product_name",
    "unit",
    "quantity",
    "unit_price",
    "prepared",
)


def items_insert(order_id: str, items: Sequence[ItemRecord]) -> Write:
    count = len(items)
    rows = [
        {name: getattr(item, name) for name in _ITEM_COLUMNS if name != "order_id"}
        for item in items
    ]
    params = rows_params("i", [n for n in _ITEM_COLUMNS if n != "order_id"], rows)
    params["i_order_id"] = order_id
    return Write(
        ("items_insert", count),
        lambda: insert_rows(ITEMS, _ITEM_COLUMNS, count, "i", shared=("order_id",)),
        params,
    )


def stock_take(items: Sequence[tuple[str, int]]) -> Write:
    """Take quantities from stock (checked under the products' locks): one statement."""
    return _stock_change(items, sign=-1)


def item_prepared(
    order_id: str, item_id: str, prepared: bool, prepared_at: datetime | None
) -> Write:
    def build() -> Any:
        return (
            update(ITEMS)
            .where(
                ITEMS.c.id == bindparam("p_item_id"), ITEMS.c.order_id == bindparam("p_order_id")
            )
            .values(
                prepared=bindparam("p_prepared", type_=ITEMS.c.prepared.type),
                prepared_at=bindparam("p_prepared_at", type_=ITEMS.c.prepared_at.type),
            )
        )

    params = {
        "p_item_id": item_id,
        "p_order_id": order_id,
        "p_prepared": prepared,
        "p_prepared_at": prepared_at,
    }
    return Write("item_prepared", build, params)
