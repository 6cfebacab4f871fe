"""The pick list and the packing slips' orders, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from farmstand.accounts.models import User
from farmstand.accounts.roles import Role
from farmstand.catalog.errors import FarmNotFound
from farmstand.catalog.models import Farm
from farmstand.orders import picking
from farmstand.orders import service as orders
from farmstand.orders.schemas import OrderPatch
from farmstand.orders.states import OrderStatus
from tests.factories import Factory


async def test_the_pick_list_sums_confirmed_and_preparing_orders_by_product(
    factory: Factory,
) -> None:
    farmer = await factory.user(Role.FARMER)
    farm = await factory.farm(farmer)
    kale = await factory.product(farm, name="Kale")
    eggs = await factory.product(farm, name="Eggs")
    apples = await factory.product(farm, name="Apples")
    # To pick: 2 + 3 kale over two orders, 3 eggs in one, 4 apples in one.
    await factory.order(farm=farm, products=[kale], quantity=2, status=OrderStatus.CONFIRMED)
    await factory.order(farm=farm, products=[kale, eggs], quantity=3, status=OrderStatus.PREPARING)
    await factory.order(farm=farm, products=[apples], quantity=4, status=OrderStatus.CONFIRMED)
    # Not to pick: waiting, packed, collected, cancelled, and another farm's.
    for status in (
        OrderStatus.PENDING,
        OrderStatus.READY_FOR_PICKUP,
        OrderStatus.COMPLETED,
        OrderStatus.CANCELLED,
    ):
        await factory.order(farm=farm, products=[kale, eggs], quantity=7, status=status)
    other = await factory.farm()
    await factory.order(
        farm=other,
        products=[await factory.product(other, name="Kale")],
        quantity=9,
        status=OrderStatus.CONFIRMED,
    )

    async with factory.db.transaction(write=False) as session:
        lines = await picking.pick_list(session, farmer, farm)

    assert [(line.name, line.quantity, line.orders, line.unit) for line in lines] == [
        ("Apples", 4, 1, "lb"),
        ("Eggs", 3, 1, "lb"),
        ("Kale", 5, 2, "lb"),
    ]
    assert all(line.prepared == 0 and line.left == line.quantity for line in lines)


async def test_the_pick_list_counts_what_is_already_prepared(factory: Factory) -> None:
    farmer = await factory.user(Role.FARMER)
    farm = await factory.farm(farmer)
    kale = await factory.product(farm, name="Kale")
    first = await factory.order(
        farm=farm, products=[kale], quantity=2, status=OrderStatus.PREPARING
    )
    await factory.order(farm=farm, products=[kale], quantity=3, status=OrderStatus.PREPARING)
    async with factory.db.transaction() as session:
        await orders.set_item_prepared(session, farmer, first.id, first.items[0].id, True)

    async with factory.db.transaction(write=False) as session:
        [line] = await picking.pick_list(session, farmer, farm)

    assert (line.quantity, line.prepared, line.left, line.orders) == (5, 2, 3, 2)


async def test_today_keeps_the_orders_estimated_ready_today_on_the_farms_clock(
    factory: Factory,
) -> None:
    farmer = await factory.user(Role.FARMER)
    farm = await factory.farm(farmer, timezone="Pacific/Auckland")
    kale = await factory.product(farm, name="Kale")
    now = datetime(2026, 12, 3, 20, 0, tzinfo=UTC)  # Fri 4 Dec, 09:00 in Auckland
    today, start, end = picking.farm_day(farm, now)
    assert str(today) == "2026-12-04"
    assert (start, end) == (
        datetime(2026, 12, 3, 11, 0, tzinfo=UTC),
        datetime(2026, 12, 4, 11, 0, tzinfo=UTC),
    )
    for ready, quantity in ((start, 1), (end - timedelta(minutes=1), 2), (end, 4), (None, 8)):
        order = await factory.order(
            farm=farm, products=[kale], quantity=quantity, status=OrderStatus.CONFIRMED
        )
        if ready is not None:
            async with factory.db.transaction() as session:
                await orders.update_details(
                    session, farmer, order.id, OrderPatch(estimated_ready_at=ready)
                )

    async with factory.db.transaction(write=False) as session:
        everything = await picking.pick_list(session, farmer, farm)
        todays = await picking.pick_list(session, farmer, farm, ready_between=(start, end))

    assert [line.quantity for line in everything] == [15]
    assert [(line.quantity, line.orders) for line in todays] == [(3, 2)]


async def test_the_packing_slips_are_the_farms_orders_to_pack_oldest_first(
    factory: Factory,
) -> None:
    farmer = await factory.user(Role.FARMER)
    farm = await factory.farm(farmer)
    kale = await factory.product(farm, name="Kale")
    start = datetime(2026, 12, 1, 8, tzinfo=UTC)
    first, second = [
        await factory.order(
            farm=farm, products=[kale], status=status, placed_at=start + timedelta(hours=hour)
        )
        for hour, status in ((0, OrderStatus.PREPARING), (1, OrderStatus.CONFIRMED))
    ]
    ready = await factory.order(farm=farm, products=[kale], status=OrderStatus.READY_FOR_PICKUP)
    await factory.order(farm=farm, products=[kale])  # pending
    elsewhere = await factory.order(status=OrderStatus.CONFIRMED)

    async with factory.db.transaction(write=False) as session:
        slips, more = await picking.packing_slips(session, farmer, farm)
        readies, _ = await picking.packing_slips(
            session, farmer, farm, statuses=[OrderStatus.READY_FOR_PICKUP]
        )
        chosen, _ = await picking.packing_slips(
            session, farmer, farm, order_ids=[second.id, elsewhere.id, "no-such-order"]
        )

    assert [order.id for order in slips] == [first.id, second.id]
    assert not more
    assert [item.product_name for item in slips[0].items] == ["Kale"]
    assert [order.id for order in readies] == [ready.id]
    assert [order.id for order in chosen] == [second.id]  # never another farm's


@pytest.mark.parametrize("role", [Role.FARMER, Role.CUSTOMER])
async def test_a_farm_the_user_does_not_manage_is_not_found(factory: Factory, role: Role) -> None:
    farm: Farm = await factory.farm()
    await factory.order(farm=farm, status=OrderStatus.CONFIRMED)
    stranger: User = await factory.user(role)

    async with factory.db.transaction(write=False) as session:
        with pytest.raises(FarmNotFound):
            await picking.pick_list(session, stranger, farm)
        with pytest.raises(FarmNotFound):
            await picking.packing_slips(session, stranger, farm)


async def test_an_admin_sees_any_farms_pick_list(factory: Factory) -> None:
    farm = await factory.farm()
    await factory.order(farm=farm, status=OrderStatus.CONFIRMED, quantity=3)
    admin = await factory.user(Role.ADMIN)

    async with factory.db.transaction(write=False) as session:
        lines = await picking.pick_list(session, admin, farm)
        slips, _ = await picking.packing_slips(session, admin, farm)

    assert [line.quantity for line in lines] == [3]
    assert len(slips) == 1
