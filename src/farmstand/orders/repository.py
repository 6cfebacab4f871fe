"""Order queries and locking. No business decisions here."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from farmstand.accounts.models import User
from farmstand.accounts.roles import Role
from farmstand.catalog.models import Farm, Product
from farmstand.orders.models import Order, OrderItem, OrderStatusHistory
from farmstand.orders.states import OrderStatus
from farmstand.schemas import newest_first


def _with_parties(query: Select[tuple[Order]]) -> Select[tuple[Order]]:
    return query.options(selectinload(Order.farm), selectinload(Order.customer))


def _with_items(query: Select[tuple[Order]]) -> Select[tuple[Order]]:
    return query.options(selectinload(Order.items).selectinload(OrderItem.product))


async def get_order(
    session: AsyncSession, order_id: str, *, lock: bool = False, items: bool = True
) -> Order | None:
    """Load an order with its farm and customer (and items); ``lock`` takes its row lock.

    On PostgreSQL the lock is ``SELECT … FOR UPDATE``. SQLite has no row locks: its write
    transactions hold the database write lock from BEGIN IMMEDIATE, and the version column
    still guards every UPDATE with compare-and-set.
    """
    query = _with_parties(select(Order).where(Order.id == order_id))
    if items:
        query = _with_items(query)
    if lock:
        query = query.execution_options(populate_existing=True)
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(of=Order)
    return (await session.scalars(query)).one_or_none()


def visible_orders(user: User) -> Select[tuple[Order]]:
    """Orders the user may see, as SQL: the one rule the lists and streams share."""
    query = select(Order)
    if user.role is Role.CUSTOMER:
        query = query.where(Order.customer_id == user.id)
    elif user.role is Role.FARMER:
        query = query.where(Order.farm_id.in_(select(Farm.id).where(Farm.owner_id == user.id)))
    return query


async def list_orders(
    session: AsyncSession,
    user: User,
    *,
    farm_id: str | None,
    statuses: Sequence[OrderStatus],
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[Order]:
    query = _with_items(_with_parties(visible_orders(user)))
    if farm_id is not None:
        query = query.where(Order.farm_id == farm_id)
    if statuses:
        query = query.where(Order.status.in_(statuses))
    return list((await session.scalars(newest_first(query, Order, before, limit))).all())


async def history(session: AsyncSession, order_id: str) -> list[OrderStatusHistory]:
    query = (
        select(OrderStatusHistory)
        .where(OrderStatusHistory.order_id == order_id)
        .options(selectinload(OrderStatusHistory.actor))
        .order_by(OrderStatusHistory.seq)
    )
    return list((await session.scalars(query)).all())


async def products_of_farm(
    session: AsyncSession, farm_id: str, product_ids: Sequence[str]
) -> dict[str, Product]:
    rows = await session.scalars(
        select(Product).where(Product.farm_id == farm_id, Product.id.in_(product_ids))
    )
    return {product.id: product for product in rows}


async def take_stock(session: AsyncSession, product_id: str, quantity: int) -> bool:
    """Atomically take ``quantity`` from stock; False when there isn't enough."""
    result = await session.execute(
        update(Product)
        .where(Product.id == product_id, Product.stock >= quantity)
        .values(stock=Product.stock - quantity)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


async def return_stock(session: AsyncSession, items: Sequence[OrderItem]) -> None:
    for item in sorted(items, key=lambda i: i.product_id):
        await session.execute(
            update(Product)
            .where(Product.id == item.product_id)
            .values(stock=Product.stock + item.quantity)
            .execution_options(synchronize_session=False)
        )


async def order_number_taken(session: AsyncSession, number: str) -> bool:
    return await session.scalar(select(Order.id).where(Order.order_number == number)) is not None
