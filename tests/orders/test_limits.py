"""A farm's per-customer limits: open orders at the farm, and units of a product per order.

One new account must not be able to hoard a farm's whole stock; the farm sets the limits
(sane defaults) and sees them on the farm.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx
import pytest

from farmstand.accounts.roles import Role
from farmstand.catalog.models import DEFAULT_MAX_ITEM_QUANTITY, DEFAULT_MAX_OPEN_ORDERS
from farmstand.config import Settings
from farmstand.orders.states import OrderStatus
from tests.conftest import make_settings
from tests.factories import Factory
from tests.orders.helpers import Party, Shop, expect, order_body, place, set_status, sign_in

RACERS = 12


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """A pool large enough for every racer to hold a connection (real concurrency on PG)."""
    return make_settings(database_url, tmp_path, db_pool_size=10, db_max_overflow=RACERS)


async def set_limits(client: httpx.AsyncClient, shop: Shop, **limits: int) -> httpx.Response:
    return await client.patch(
        f"/api/farms/{shop.farm.id}", json=limits, headers=shop.farmer.headers
    )


async def test_a_new_farm_has_the_default_limits_and_shows_them(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    farmer = await sign_in(factory, Role.FARMER)
    created = expect(
        await client.post("/api/farms", json={"name": "Hill Farm"}, headers=farmer.headers), 201
    )
    assert created["maxOpenOrders"] == DEFAULT_MAX_OPEN_ORDERS == 3
    assert created["maxItemQuantity"] == DEFAULT_MAX_ITEM_QUANTITY == 20
    shown = expect(await client.get(f"/api/farms/{created['id']}", headers=farmer.headers), 200)
    assert (shown["maxOpenOrders"], shown["maxItemQuantity"]) == (3, 20)


async def test_the_farmer_changes_the_limits_and_nobody_else_can(
    client: httpx.AsyncClient, factory: Factory, shop: Shop, other_shop: Shop, admin: Party
) -> None:
    # The owner changes them; the farm shows the new values
    changed = expect(await set_limits(client, shop, maxOpenOrders=5, maxItemQuantity=50), 200)
    assert (changed["maxOpenOrders"], changed["maxItemQuantity"]) == (5, 50)
    # An admin may too
    url = f"/api/farms/{shop.farm.id}"
    admin_change = await client.patch(url, json={"maxOpenOrders": 4}, headers=admin.headers)
    assert expect(admin_change, 200)["maxOpenOrders"] == 4
    # Another farm's farmer and a customer may not
    for stranger in (other_shop.farmer, shop.customer):
        refused = await client.patch(url, json={"maxOpenOrders": 100}, headers=stranger.headers)
        assert refused.status_code == 403, refused.text
        assert refused.json()["success"] is False
    # Nonsense values are a 422 naming the field, never a 500
    for body in (
        {"maxOpenOrders": 0},
        {"maxItemQuantity": -1},
        {"maxOpenOrders": None},
        {"maxOpenOrders": "many"},
        {"maxItemQuantity": 10_001},
        {"nope": 1},
    ):
        response = await client.patch(url, json=body, headers=shop.farmer.headers)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["success"] is False
    missing = await client.patch(
        "/api/farms/no-such-farm", json={"maxOpenOrders": 2}, headers=shop.farmer.headers
    )
    assert missing.status_code == 404
    shown = expect(await client.get(url, headers=shop.farmer.headers), 200)
    assert (shown["maxOpenOrders"], shown["maxItemQuantity"]) == (4, 50)


async def test_a_customer_cannot_hold_more_open_orders_than_the_farm_allows(
    client: httpx.AsyncClient, shop: Shop, other_shop: Shop
) -> None:
    # Given a farm allowing 2 open orders per customer
    expect(await set_limits(client, shop, maxOpenOrders=2), 200)
    body = order_body(shop, (shop.carrots, 1))
    first = expect(await place(client, shop.customer, body), 201)
    expect(await place(client, shop.customer, body), 201)

    # When the customer places a third
    refused = await place(client, shop.customer, body)

    # Then it is refused, naming the limit, and no stock is taken
    error = expect(refused, 409)
    assert "maxOpenOrders" in error["error"]
    assert error["details"] == {"limit": "maxOpenOrders", "max": 2, "open": 2}
    # Other customers, and the same customer at another farm, are not affected
    expect(await place(client, other_shop.customer, body), 201)
    expect(await place(client, shop.customer, order_body(other_shop, (other_shop.eggs, 1))), 201)
    # A cancelled order is no longer open: the customer may order again
    expect(await set_status(client, first["id"], shop.customer, OrderStatus.CANCELLED), 200)
    expect(await place(client, shop.customer, body), 201)


async def test_completed_and_refunded_orders_do_not_count(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    customer = await sign_in(factory, Role.CUSTOMER)
    farm = await factory.farm(max_open_orders=1)
    product = await factory.product(farm)
    for status in (OrderStatus.COMPLETED, OrderStatus.REFUNDED, OrderStatus.CANCELLED):
        await factory.order(status=status, farm=farm, customer=customer.user, products=[product])
    body = {"farmId": farm.id, "items": [{"productId": product.id, "quantity": 1}]}
    expect(await place(client, customer, body), 201)
    expect(await place(client, customer, body), 409)


async def test_an_order_cannot_hold_more_of_a_product_than_the_farm_allows(
    client: httpx.AsyncClient, shop: Shop
) -> None:
    expect(await set_limits(client, shop, maxItemQuantity=4), 200)
    # Split over two lines of the same product: still 5 of it
    body = order_body(shop, (shop.carrots, 3), (shop.carrots, 2), (shop.eggs, 1))
    error = expect(await place(client, shop.customer, body), 422)
    assert "maxItemQuantity" in error["error"]
    assert error["details"] == [
        {
            "field": "items",
            "productId": shop.carrots.id,
            "limit": "maxItemQuantity",
            "max": 4,
            "quantity": 5,
            "message": "at most 4 per order",
        }
    ]
    expect(await place(client, shop.customer, order_body(shop, (shop.carrots, 4))), 201)


async def test_parallel_orders_by_one_customer_stay_within_the_limit(
    client: httpx.AsyncClient, factory: Factory, shop: Shop
) -> None:
    # Given a farm allowing 2 open orders, and products no two orders share (so only the
    # limit, not a product lock, can stop them)
    expect(await set_limits(client, shop, maxOpenOrders=2), 200)
    products = [await factory.product(shop.farm, stock=5) for _ in range(RACERS)]

    # When the same customer places 12 orders at the same moment
    responses = await asyncio.gather(
        *(place(client, shop.customer, order_body(shop, (p, 1))) for p in products)
    )

    # Then exactly two get through; the others are told of the limit
    codes = Counter(response.status_code for response in responses)
    assert codes == {201: 2, 409: RACERS - 2}, [r.text for r in responses][:3]
    listed = expect(
        await client.get(
            "/api/orders", params={"farmId": shop.farm.id}, headers=shop.customer.headers
        ),
        200,
    )
    assert len(listed["items"]) == 2
