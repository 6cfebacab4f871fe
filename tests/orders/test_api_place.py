"""POST /api/orders: a customer places a paid order; prices and stock come from the catalogue."""

from __future__ import annotations

import httpx

from farmstand.accounts.roles import Role
from tests.factories import Factory
from tests.orders.helpers import (
    ISO_UTC,
    Json,
    Party,
    Shop,
    expect,
    history,
    order_body,
    place,
    sign_in,
    stock,
)

ADDRESS = {"line1": "1 Main St", "city": "Springfield", "postalCode": "12345", "country": "us"}
TIME_FIELDS = (
    "paidAt",
    "confirmedAt",
    "preparingAt",
    "readyAt",
    "outForDeliveryAt",
    "completedAt",
    "cancelledAt",
    "refundedAt",
    "estimatedReadyAt",
    "estimatedPickupAt",
    "createdAt",
    "updatedAt",
)


async def test_order_is_priced_from_the_products_and_taken_from_stock(
    client: httpx.AsyncClient, shop: Shop
) -> None:
    # Given carrots at 4.50 and eggs at 2.25
    # When the customer orders 2 of each
    response = await place(
        client, shop.customer, order_body(shop, (shop.carrots, 2), (shop.eggs, 2))
    )

    # Then the total is exact to the cent and every line carries the catalogue price
    order = expect(response, 201)
    assert order["totalAmount"] == "13.50"
    lines = {item["productId"]: item for item in order["items"]}
    assert lines[shop.carrots.id]["unitPrice"] == "4.50"
    assert lines[shop.carrots.id]["lineTotal"] == "9.00"
    assert lines[shop.eggs.id]["unitPrice"] == "2.25"
    assert lines[shop.eggs.id]["lineTotal"] == "4.50"
    assert lines[shop.eggs.id]["product"] == {"id": shop.eggs.id, "name": "Eggs", "unit": "lb"}

    # And the quantities were taken from stock (10 carrots and 5 eggs before)
    assert await stock(client, shop.farm, shop.customer) == {shop.carrots.id: 8, shop.eggs.id: 3}


async def test_unknown_or_server_owned_fields_are_refused(
    client: httpx.AsyncClient, shop: Shop
) -> None:
    # Given bodies that try to set what only the server decides, or carry a typo
    cases: dict[str, tuple[Json, Json]] = {
        "total": ({"totalAmount": "0.01"}, {}),
        "unit price": ({}, {"unitPrice": "0.01"}),
        "status": ({"status": "COMPLETED"}, {}),
        "typo": ({"coupon": "FREE"}, {}),
    }
    for case, (body_extra, item_extra) in cases.items():
        body = {
            "farmId": shop.farm.id,
            "items": [{"productId": shop.carrots.id, "quantity": 1, **item_extra}],
            **body_extra,
        }

        # When each is posted, Then it is refused and nothing is ordered
        error = expect(await place(client, shop.customer, body), 422, case)
        assert error["details"][0]["type"] == "extra_forbidden", case
    assert (await stock(client, shop.farm, shop.customer))[shop.carrots.id] == 10


async def test_malformed_quantities_are_refused(client: httpx.AsyncClient, shop: Shop) -> None:
    for items in ([], [{"productId": shop.carrots.id, "quantity": 0}], [{"quantity": 1}]):
        body = {"farmId": shop.farm.id, "items": items}
        expect(await place(client, shop.customer, body), 422, items)


async def test_reply_is_camel_case_with_string_ids_and_utc_times(
    client: httpx.AsyncClient, shop: Shop
) -> None:
    order = expect(await place(client, shop.customer, order_body(shop, (shop.carrots, 1))), 201)

    assert {"orderNumber", "fulfillmentType", "totalAmount", "customerId", "farmId"} <= set(order)
    assert not [key for key in order if "_" in key]
    assert not [key for key in order["items"][0] if "_" in key]
    for value in (order["id"], order["customerId"], order["farmId"], order["items"][0]["id"]):
        assert isinstance(value, str) and value
    assert order["customerId"] == shop.customer.id
    assert order["farmId"] == shop.farm.id
    assert order["customer"]["id"] == shop.customer.id
    assert order["farm"] == {"id": shop.farm.id, "name": shop.farm.name}
    assert order["orderNumber"].startswith("FS-")
    stamped = [order[name] for name in TIME_FIELDS if order[name] is not None]
    assert len(stamped) == 3  # paidAt, createdAt, updatedAt
    assert all(ISO_UTC.match(value) for value in stamped), stamped


async def test_duplicate_product_lines_are_merged(client: httpx.AsyncClient, shop: Shop) -> None:
    # When the same product appears on two lines
    body = order_body(shop, (shop.carrots, 1), (shop.eggs, 1), (shop.carrots, 2))
    order = expect(await place(client, shop.customer, body), 201)

    # Then the order has one line with the summed quantity
    quantities = {item["productId"]: item["quantity"] for item in order["items"]}
    assert quantities == {shop.carrots.id: 3, shop.eggs.id: 1}
    assert order["totalAmount"] == "15.75"
    assert (await stock(client, shop.farm, shop.customer))[shop.carrots.id] == 7

    # And lines that each fit but together exceed the stock (5 eggs) are refused
    too_many = order_body(shop, (shop.eggs, 3), (shop.eggs, 3))
    expect(await place(client, shop.customer, too_many), 409)
    assert (await stock(client, shop.farm, shop.customer))[shop.eggs.id] == 4


async def test_short_stock_refuses_the_whole_order_and_takes_nothing(
    client: httpx.AsyncClient, shop: Shop
) -> None:
    # Given 10 carrots and 5 eggs
    # When the customer asks for 2 carrots (available) and 6 eggs (one too many)
    body = order_body(shop, (shop.carrots, 2), (shop.eggs, 6))
    error = expect(await place(client, shop.customer, body), 409)

    # Then the refusal names the short product, and no stock was taken from either
    assert [line["productId"] for line in error["details"]] == [shop.eggs.id]
    assert await stock(client, shop.farm, shop.customer) == {shop.carrots.id: 10, shop.eggs.id: 5}
    listed = expect(await client.get("/api/orders", headers=shop.customer.headers), 200)
    assert listed["items"] == []


async def test_product_of_another_farm_or_unknown_is_refused(
    client: httpx.AsyncClient, shop: Shop, other_shop: Shop
) -> None:
    # When an order mixes our carrots with another farm's, and with a product that never existed
    body = order_body(shop, (shop.carrots, 1), (other_shop.carrots, 1))
    body["items"].append({"productId": "no-such-product", "quantity": 1})
    error = expect(await place(client, shop.customer, body), 422)

    # Then both strangers are named, and no farm's stock moved
    assert [line["productId"] for line in error["details"]] == [
        other_shop.carrots.id,
        "no-such-product",
    ]
    assert (await stock(client, shop.farm, shop.customer))[shop.carrots.id] == 10
    assert (await stock(client, other_shop.farm, shop.customer))[other_shop.carrots.id] == 10


async def test_unknown_farm_is_not_found(client: httpx.AsyncClient, shop: Shop) -> None:
    body = {"farmId": "no-such-farm", "items": [{"productId": shop.carrots.id, "quantity": 1}]}

    error = expect(await place(client, shop.customer, body), 404)

    assert error["error"] == "Farm not found."


async def test_delivery_details_must_match_the_fulfilment_type(
    client: httpx.AsyncClient, shop: Shop
) -> None:
    line = (shop.carrots, 1)
    cases = [
        ("deliveryAddress", order_body(shop, line, fulfillmentType="DELIVERY")),
        ("deliveryAddress", order_body(shop, line, fulfillmentType="SHIPPING")),
        (
            "deliveryAddress",
            order_body(shop, line, fulfillmentType="PICKUP", deliveryAddress=ADDRESS),
        ),
        ("deliveryAddress", order_body(shop, line, deliveryAddress=ADDRESS)),  # PICKUP by default
        (
            "pickupLocation",
            order_body(
                shop,
                line,
                fulfillmentType="DELIVERY",
                deliveryAddress=ADDRESS,
                pickupLocation="Stall 4",
            ),
        ),
    ]
    for field, body in cases:
        error = expect(await place(client, shop.customer, body), 422, body)
        assert field in str(error["details"]), body
    assert (await stock(client, shop.farm, shop.customer))[shop.carrots.id] == 10


async def test_new_order_is_pending_paid_with_one_history_row(
    client: httpx.AsyncClient, shop: Shop
) -> None:
    order = expect(await place(client, shop.customer, order_body(shop, (shop.carrots, 1))), 201)

    assert order["status"] == "PENDING"
    assert order["paidAt"] is not None
    assert order["version"] == 1
    [row] = await history(client, order["id"], shop.customer)
    assert row["fromStatus"] is None
    assert row["toStatus"] == "PENDING"
    assert row["changedBy"] == shop.customer.id
    assert row["actor"]["role"] == "CUSTOMER"


async def test_pickup_location_defaults_to_the_farms(client: httpx.AsyncClient, shop: Shop) -> None:
    default = expect(await place(client, shop.customer, order_body(shop, (shop.carrots, 1))), 201)
    chosen = expect(
        await place(
            client,
            shop.customer,
            order_body(shop, (shop.carrots, 1), pickupLocation="Saturday market, stall 4"),
        ),
        201,
    )
    delivered = expect(
        await place(
            client,
            shop.customer,
            order_body(
                shop, (shop.carrots, 1), fulfillmentType="DELIVERY", deliveryAddress=ADDRESS
            ),
        ),
        201,
    )

    assert default["pickupLocation"] == "Barn door, 12 Mill Lane"
    assert chosen["pickupLocation"] == "Saturday market, stall 4"
    # A delivery has no pickup location, and keeps its (normalised) address
    assert delivered["fulfillmentType"] == "DELIVERY"
    assert delivered["pickupLocation"] is None
    assert delivered["deliveryAddress"] == {**ADDRESS, "country": "US"}


async def test_only_customers_place_orders(
    client: httpx.AsyncClient, factory: Factory, shop: Shop
) -> None:
    for role in (Role.FARMER, Role.ADMIN):
        staff: Party = await sign_in(factory, role)

        expect(await place(client, staff, order_body(shop, (shop.carrots, 1))), 403, role)

    assert (await stock(client, shop.farm, shop.customer))[shop.carrots.id] == 10


async def test_an_order_too_large_for_the_total_column_is_refused_not_a_crash(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    # Given a product at the highest price a product may have
    customer = await factory.user(Role.CUSTOMER)
    farm = await factory.farm()
    product = await factory.product(farm, price="99999999.99", stock=10)
    # When two are ordered (a total NUMERIC(10, 2) can't hold: a 500 on PostgreSQL before)
    response = await client.post(
        "/api/orders",
        json={"farmId": farm.id, "items": [{"productId": product.id, "quantity": 2}]},
        headers=await factory.headers(customer),
    )
    # Then it is refused with a reason, and no stock is taken
    assert response.status_code == 422
    assert "total" in response.json()["error"]
    products = await client.get(
        f"/api/farms/{farm.id}/products", headers=await factory.headers(customer)
    )
    assert products.json()["data"][0]["stock"] == 10


async def test_an_off_sale_product_cannot_be_ordered_and_nothing_is_taken(
    client: httpx.AsyncClient, shop: Shop
) -> None:
    # Given the farm took its eggs off sale (with 5 still on the shelf)
    taken_off = await client.patch(
        f"/api/farms/{shop.farm.id}/products/{shop.eggs.id}",
        json={"onSale": False},
        headers=shop.farmer.headers,
    )
    expect(taken_off, 200)

    # When the customer orders carrots and eggs (the eggs from a page loaded before)
    body = order_body(shop, (shop.carrots, 2), (shop.eggs, 1))
    error = expect(await place(client, shop.customer, body), 409)

    # Then the refusal names the eggs, and no carrots were taken either
    assert error["error"] == "No longer on sale: Eggs. Remove it from your order."
    assert [(d["productId"], d["name"]) for d in error["details"]] == [(shop.eggs.id, "Eggs")]
    left = expect(
        await client.get(f"/api/farms/{shop.farm.id}/products", headers=shop.farmer.headers), 200
    )
    assert {p["id"]: p["stock"] for p in left} == {shop.carrots.id: 10, shop.eggs.id: 5}
    # And carrots alone still go through
    expect(await place(client, shop.customer, order_body(shop, (shop.carrots, 2))), 201)
