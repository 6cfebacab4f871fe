"""GET /api/orders, /api/orders/{id} and /api/orders/{id}/status: who sees what, in what order."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta

import httpx

from farmstand.db import utcnow
from farmstand.orders.states import FulfillmentType, OrderStatus
from tests.factories import Factory
from tests.orders.helpers import (
    Party,
    Shop,
    expect,
    get_order,
    history,
    make_order,
    replayed,
)

S = OrderStatus


async def listed_ids(client: httpx.AsyncClient, who: Party, query: str = "") -> list[str]:
    page = expect(await client.get(f"/api/orders?limit=100{query}", headers=who.headers), 200)
    assert page["nextCursor"] is None
    return [order["id"] for order in page["items"]]


async def test_customer_lists_only_their_own_orders(
    client: httpx.AsyncClient, factory: Factory, shop: Shop, other_shop: Shop
) -> None:
    # Given two orders of the customer and one of another customer at the same farm
    mine = [await make_order(factory, shop), await make_order(factory, shop)]
    await make_order(factory, shop, customer=other_shop.customer)

    # When the customer lists their orders, Then they see exactly their two
    assert set(await listed_ids(client, shop.customer)) == {order.id for order in mine}


async def test_farmer_lists_only_their_farms_orders_and_admin_lists_all(
    client: httpx.AsyncClient, factory: Factory, shop: Shop, other_shop: Shop, admin: Party
) -> None:
    ours = [await make_order(factory, shop), await make_order(factory, shop, S.CONFIRMED)]
    theirs = await make_order(factory, other_shop)

    assert set(await listed_ids(client, shop.farmer)) == {order.id for order in ours}
    assert set(await listed_ids(client, other_shop.farmer)) == {theirs.id}
    assert set(await listed_ids(client, admin)) == {order.id for order in [*ours, theirs]}


async def test_farm_filter_narrows_the_list(
    client: httpx.AsyncClient, factory: Factory, shop: Shop, other_shop: Shop, admin: Party
) -> None:
    ours = await make_order(factory, shop)
    theirs = await make_order(factory, other_shop)

    assert await listed_ids(client, admin, f"&farmId={other_shop.farm.id}") == [theirs.id]
    assert await listed_ids(client, shop.farmer, f"&farmId={shop.farm.id}") == [ours.id]


async def test_farmer_cannot_filter_by_another_farm(
    client: httpx.AsyncClient, factory: Factory, shop: Shop, other_shop: Shop, admin: Party
) -> None:
    await make_order(factory, other_shop)

    response = await client.get(
        f"/api/orders?farmId={other_shop.farm.id}", headers=shop.farmer.headers
    )

    # Then it is the same reply as for a farm that does not exist
    error = expect(response, 404)
    unknown = expect(await client.get("/api/orders?farmId=nope", headers=admin.headers), 404)
    assert error == unknown


async def test_status_filter_takes_several_statuses(
    client: httpx.AsyncClient, factory: Factory, shop: Shop
) -> None:
    pending = await make_order(factory, shop, S.PENDING)
    confirmed = await make_order(factory, shop, S.CONFIRMED)
    await make_order(factory, shop, S.PREPARING)
    await make_order(factory, shop, S.CANCELLED)

    ids = await listed_ids(client, shop.farmer, "&status=PENDING,CONFIRMED")

    assert set(ids) == {pending.id, confirmed.id}
    assert await listed_ids(client, shop.farmer, "&status=CONFIRMED") == [confirmed.id]
    unknown = await client.get("/api/orders?status=PENDING,SHIPPED", headers=shop.farmer.headers)
    assert "SHIPPED" in expect(unknown, 422)["error"]


async def test_orders_are_listed_newest_first(
    client: httpx.AsyncClient, factory: Factory, shop: Shop
) -> None:
    now = utcnow()
    middle = await make_order(factory, shop, placed_at=now - timedelta(hours=2))
    newest = await make_order(factory, shop, placed_at=now - timedelta(hours=1))
    oldest = await make_order(factory, shop, placed_at=now - timedelta(hours=3))

    page = expect(await client.get("/api/orders", headers=shop.customer.headers), 200)

    assert [order["id"] for order in page["items"]] == [newest.id, middle.id, oldest.id]


async def test_cursor_pagination_walks_every_order_exactly_once(
    client: httpx.AsyncClient, factory: Factory, shop: Shop
) -> None:
    # Given seven orders, three of them placed at the very same instant
    now = utcnow()
    same = now - timedelta(minutes=30)
    placed = [now - timedelta(minutes=m) for m in (50, 40)] + [same, same, same]
    placed += [now - timedelta(minutes=m) for m in (20, 10)]
    orders = [await make_order(factory, shop, placed_at=when) for when in placed]

    # When the farmer walks the list three at a time
    seen: list[str] = []
    pages = 0
    url = "/api/orders?limit=3"
    while True:
        page = expect(await client.get(url, headers=shop.farmer.headers), 200)
        pages += 1
        seen += [order["id"] for order in page["items"]]
        if page["nextCursor"] is None:
            break
        url = f"/api/orders?limit=3&cursor={page['nextCursor']}"

    # Then every order appears once, newest first, and the last page says so
    assert pages == 3
    assert sorted(seen) == sorted(order.id for order in orders)
    assert len(seen) == len(set(seen))
    by_id = {order.id: order.created_at for order in orders}
    times = [by_id[order_id] for order_id in seen]
    assert times == sorted(times, reverse=True)

    # And a page that holds exactly what is left is the last one
    exact = expect(await client.get("/api/orders?limit=7", headers=shop.farmer.headers), 200)
    assert [order["id"] for order in exact["items"]] == seen
    assert exact["nextCursor"] is None


async def test_bad_cursor_or_limit_is_refused(client: httpx.AsyncClient, shop: Shop) -> None:
    cursors = [
        "not-a-cursor!",
        base64.urlsafe_b64encode(b"yesterday|abc").decode(),
        base64.urlsafe_b64encode(b"2024-01-01T00:00:00|abc").decode(),  # naive time
        base64.urlsafe_b64encode(b"2024-01-01T00:00:00+00:00|").decode(),  # no id
    ]
    queries = [f"cursor={cursor}" for cursor in cursors]
    queries += [f"limit={limit}" for limit in ("0", "101", "-1", "ten")]
    for query in queries:
        response = await client.get(f"/api/orders?{query}", headers=shop.farmer.headers)

        error = expect(response, 422, query)
        assert error["details"][0]["field"] == query.split("=")[0], query


async def test_order_comes_with_its_items_and_products(
    client: httpx.AsyncClient, factory: Factory, shop: Shop
) -> None:
    order = await factory.order(
        customer=shop.customer.user, farm=shop.farm, products=[shop.carrots, shop.eggs], quantity=2
    )

    data = await get_order(client, order.id, shop.customer)

    assert data["id"] == order.id
    assert data["totalAmount"] == "13.50"
    assert [(item["productName"], item["quantity"]) for item in data["items"]] == [
        ("Carrots", 2),
        ("Eggs", 2),
    ]
    assert data["items"][0]["product"] == {"id": shop.carrots.id, "name": "Carrots", "unit": "lb"}
    assert data["items"][0]["prepared"] is False


async def test_allowed_statuses_reflect_what_the_caller_may_do_next(
    client: httpx.AsyncClient, factory: Factory, shop: Shop, admin: Party
) -> None:
    # Given an order in each status, What (customer, farmer, admin) may do next
    expected = {
        S.PENDING: ([S.CANCELLED], [S.CONFIRMED, S.CANCELLED], [S.CONFIRMED, S.CANCELLED]),
        S.CONFIRMED: ([], [S.PREPARING, S.CANCELLED], [S.PREPARING, S.CANCELLED]),
        # items not prepared yet: not READY_FOR_PICKUP
        S.PREPARING: ([], [S.CANCELLED], [S.CANCELLED]),
        S.READY_FOR_PICKUP: ([S.COMPLETED], [S.COMPLETED, S.CANCELLED], [S.COMPLETED, S.CANCELLED]),
        S.COMPLETED: ([], [S.REFUNDED], [S.REFUNDED]),
        S.REFUNDED: ([], [], []),
    }
    for status, allowed in expected.items():
        order = await make_order(factory, shop, status)
        for who, may in zip((shop.customer, shop.farmer, admin), allowed, strict=True):
            # When each reads the order, Then the reply lists exactly those targets
            data = await get_order(client, order.id, who)

            assert data["status"] == status
            assert data["allowedStatuses"] == may, (status, who.user.role)

    # And a customer past the cancellation window may do nothing more
    late = await make_order(factory, shop, placed_at=utcnow() - timedelta(hours=25))
    assert (await get_order(client, late.id, shop.customer))["allowedStatuses"] == []


async def test_history_is_oldest_first_and_replays_to_the_status(
    client: httpx.AsyncClient, factory: Factory, shop: Shop
) -> None:
    journeys = [
        (FulfillmentType.PICKUP, S.COMPLETED),
        (FulfillmentType.DELIVERY, S.COMPLETED),
        (FulfillmentType.SHIPPING, S.REFUNDED),
    ]
    for fulfillment, final in journeys:
        order = await make_order(factory, shop, final, fulfillment=fulfillment)

        rows = await history(client, order.id, shop.customer)

        assert (rows[0]["fromStatus"], rows[0]["toStatus"]) == (None, "PENDING")
        times = [datetime.fromisoformat(row["createdAt"]) for row in rows]
        assert times == sorted(times)
        assert replayed(rows) == final
        assert (await get_order(client, order.id, shop.customer))["status"] == final
        assert all(row["orderId"] == order.id for row in rows)
        assert all(row["changedBy"] == shop.farmer.id for row in rows[1:])
