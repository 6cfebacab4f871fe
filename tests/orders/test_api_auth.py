"""Who may read and change which order: strangers get 404 (existence is not revealed)."""

from __future__ import annotations

import httpx

from farmstand.orders.records import OrderRecord
from farmstand.orders.states import OrderStatus
from tests.factories import Factory
from tests.orders.helpers import (
    Party,
    Shop,
    expect,
    get_order,
    history,
    make_order,
    set_status,
)

S = OrderStatus


async def assert_hidden(client: httpx.AsyncClient, order: OrderRecord, who: Party) -> None:
    """The order is invisible to ``who``: same reply as an order that does not exist."""
    missing = expect(await client.get("/api/orders/no-such-order", headers=who.headers), 404)
    read = expect(await client.get(f"/api/orders/{order.id}", headers=who.headers), 404)
    steps = expect(await client.get(f"/api/orders/{order.id}/status", headers=who.headers), 404)
    assert read == steps == missing
    page = expect(await client.get("/api/orders?limit=100", headers=who.headers), 200)
    assert order.id not in [listed["id"] for listed in page["items"]]


async def test_farmer_cannot_read_another_farms_order(
    client: httpx.AsyncClient, factory: Factory, shop: Shop, other_shop: Shop
) -> None:
    order = await make_order(factory, other_shop)

    await assert_hidden(client, order, shop.farmer)


async def test_farmer_cannot_change_another_farms_order(
    client: httpx.AsyncClient, factory: Factory, shop: Shop, other_shop: Shop
) -> None:
    # Given an order of another farm, being prepared
    order = await make_order(factory, other_shop, S.CONFIRMED)
    item_id = (await get_order(client, order.id, other_shop.farmer))["items"][0]["id"]
    intruder = shop.farmer

    # When our farmer tries every kind of change on it, Then each is a 404
    for target in (S.PREPARING, S.CANCELLED):
        expect(await set_status(client, order.id, intruder, target, reason="mine now"), 404)
    response = await client.patch(
        f"/api/orders/{order.id}", json={"pickupLocation": "My barn"}, headers=intruder.headers
    )
    expect(response, 404)
    response = await client.patch(
        f"/api/orders/{order.id}/items/{item_id}",
        json={"prepared": True},
        headers=intruder.headers,
    )
    expect(response, 404)

    # And the order is exactly as it was
    after = await get_order(client, order.id, other_shop.farmer)
    assert (after["status"], after["version"]) == (S.CONFIRMED, order.version)
    assert after["items"][0]["prepared"] is False
    assert len(await history(client, order.id, other_shop.farmer)) == 2


async def test_customer_cannot_read_another_customers_order(
    client: httpx.AsyncClient, factory: Factory, shop: Shop, other_shop: Shop
) -> None:
    order = await make_order(factory, shop)

    await assert_hidden(client, order, other_shop.customer)

    # Nor cancel it
    expect(await set_status(client, order.id, other_shop.customer, S.CANCELLED), 404)
    assert (await get_order(client, order.id, shop.customer))["status"] == S.PENDING


async def test_farm_and_admin_see_the_order_its_customer_placed(
    client: httpx.AsyncClient, factory: Factory, shop: Shop, admin: Party
) -> None:
    order = await make_order(factory, shop)

    for who in (shop.customer, shop.farmer, admin):
        assert (await get_order(client, order.id, who))["id"] == order.id
        assert len(await history(client, order.id, who)) == 1


async def test_every_order_endpoint_needs_a_session(
    client: httpx.AsyncClient, factory: Factory, shop: Shop
) -> None:
    order = await make_order(factory, shop, S.CONFIRMED)
    item_id = order.items[0].id
    calls = [
        ("GET", "/api/orders", None),
        ("POST", "/api/orders", {"farmId": shop.farm.id, "items": []}),
        ("GET", f"/api/orders/{order.id}", None),
        ("PATCH", f"/api/orders/{order.id}", {"pickupLocation": "x"}),
        ("PUT", f"/api/orders/{order.id}/status", {"status": "PREPARING"}),
        ("GET", f"/api/orders/{order.id}/status", None),
        ("PATCH", f"/api/orders/{order.id}/items/{item_id}", {"prepared": True}),
        ("POST", "/api/orders/bulk-status", {"orderIds": [order.id], "status": "PREPARING"}),
    ]
    for headers in ({}, {"Authorization": "Bearer not-a-real-token"}):
        for method, url, body in calls:
            response = await client.request(method, url, json=body, headers=headers)
            assert response.status_code == 401, (method, url, response.text)
            assert response.json()["success"] is False

    after = await get_order(client, order.id, shop.farmer)
    assert (after["status"], after["version"]) == (S.CONFIRMED, order.version)
