"""What the farm has to pick and pack: the pick list (how much of each product its confirmed
and preparing orders need) and the orders for packing slips. Reads only; one statement each.

The farm is the one its page already found for ``user`` (``catalog.views.farm_section``):
checked here again, without a statement, so these never answer for a farm the user does not
manage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from farmstand import zones
from farmstand.accounts.principal import Person
from farmstand.catalog import access as farm_access
from farmstand.catalog.errors import FarmNotFound
from farmstand.catalog.models import Farm
from farmstand.orders import access
from farmstand.orders import repository as repo
from farmstand.orders.records import OrderRecord
from farmstand.orders.states import OrderStatus

# Accepted and not yet packed: what is left to pick, whenever the order was placed.
TO_PICK = (OrderStatus.CONFIRMED, OrderStatus.PREPARING)
# Slips on one printed run; more are cut off (and the page says so).
MAX_SLIPS = 200


@dataclass(frozen=True, slots=True)
class PickLine:
    """One product across the orders: ``quantity`` in all, ``prepared`` of it already
    ticked as prepared on its orders, in ``orders`` orders."""

    product_id: str
    name: str
    unit: str
    quantity: int
    prepared: int
    orders: int

    @property
    def left(self) -> int:
        return self.quantity - self.prepared


def _ensure_manages(user: Person, farm: Farm) -> None:
    if not farm_access.may_manage_farm(user, farm.owner_id):
        raise FarmNotFound()


def farm_day(farm: Farm, now: datetime) -> tuple[date, datetime, datetime]:
    """Today on the farm's clock, and when it starts and ends in UTC."""
    zone = zones.zone(farm.timezone)
    today = now.astimezone(zone).date()
    start = datetime.combine(today, time.min, tzinfo=zone)
    end = datetime.combine(today + timedelta(days=1), time.min, tzinfo=zone)
    return today, start.astimezone(UTC), end.astimezone(UTC)


async def pick_list(
    session: AsyncSession,
    user: Person,
    farm: Farm,
    *,
    ready_between: tuple[datetime, datetime] | None = None,
) -> list[PickLine]:
    """How much of each product the farm's confirmed and preparing orders need, by product
    name (one grouped statement); with ``ready_between``, only the orders estimated ready
    then. Named and measured as the catalogue has the product now."""
    _ensure_manages(user, farm)
    items, orders, products = repo.ITEMS, repo.ORDERS, repo.PRODUCTS
    quantity = func.sum(items.c.quantity)
    prepared = func.sum(case((items.c.prepared.is_(True), items.c.quantity), else_=0))
    query: Any = (
        select(
            products.c.id,
            products.c.name,
            products.c.unit,
            quantity.label("quantity"),
            prepared.label("prepared"),
            func.count(func.distinct(orders.c.id)).label("orders"),
        )
        .select_from(
            items.join(orders, orders.c.id == items.c.order_id).join(
                products, products.c.id == items.c.product_id
            )
        )
        .where(orders.c.farm_id == farm.id, orders.c.status.in_(TO_PICK))
        .group_by(products.c.id, products.c.name, products.c.unit)
        .order_by(products.c.name, products.c.id)
    )
    if ready_between is not None:
        start, end = ready_between
        query = query.where(orders.c.estimated_ready_at >= start, orders.c.estimated_ready_at < end)
    rows = await (await session.connection()).execute(query)
    return [
        PickLine(row.id, row.name, row.unit, int(row.quantity), int(row.prepared), row.orders)
        for row in rows
    ]


async def packing_slips(
    session: AsyncSession,
    user: Person,
    farm: Farm,
    *,
    statuses: Sequence[OrderStatus] = TO_PICK,
    order_ids: Sequence[str] = (),
) -> tuple[list[OrderRecord], bool]:
    """The farm's orders to pack, oldest first, each with its items (one statement): those
    chosen by id (other farms' ignored), or else those in ``statuses``. Also whether more
    than ``MAX_SLIPS`` matched (only the newest ``MAX_SLIPS`` are returned)."""
    _ensure_manages(user, farm)
    if order_ids:
        records = await repo.load_orders(session, list(dict.fromkeys(order_ids))[: MAX_SLIPS + 1])
        records = [r for r in records if r.farm_id == farm.id and access.may_see(user, r)]
        records.sort(key=lambda r: (r.created_at, r.id), reverse=True)
    else:
        records = await repo.list_orders(
            session,
            access.visible_orders_condition(user),
            farm_id=farm.id,
            statuses=statuses,
            before=None,
            limit=MAX_SLIPS + 1,
        )
    more = len(records) > MAX_SLIPS
    return list(reversed(records[:MAX_SLIPS])), more
