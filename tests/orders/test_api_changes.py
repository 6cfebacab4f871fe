"""The farm's edits: items prepared (PATCH …/items/{id}), order details (PATCH /api/orders/{id}),
and the admin's bulk status change (POST /api/orders/bulk-status)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from farmstand.db import utcnow
from farmstand.orders.states import FulfillmentType, OrderStatus
from tests.factories import Factory
from tests.orders.helpers import (
    ISO_UTC,
    Json,
    Party,
    Shop,
    expect,
    get_order,
    history,
    make_order,
    replayed,
    stock,
)

S = OrderStatus
F = FulfillmentType


async def mark(
    client: httpx.AsyncClient, order_id: str, item_id: str, who: Party, prepared: Any = True
) -> httpx.Response:
    return await client.patch(
        f"/api/orders/{order_id}/items/{item_id}", json={"prepared": prepared}, headers=who.headers
    )


async def edit(client: httpx.AsyncClient, order_id: str, who: Party, body: Json) -> httpx.Response:
    return await client.patch(f"/api/orders/{order_id}", json=body, headers=who.headers)


def later(hours: float) -> str:
    return (utcnow() + timedelta(hours=hours)).isoformat()


# Items -----------------------------------------------------------------------------------


async def test_farmer_marks_an_item_prepared_and_back(
    client: httpx.AsyncClient, factory: Factory, shop: Shop
) -> None:
    order = await make_order(factory, shop, S.CONFIRMED)
    item_id = (await get_order(client, order.id, shop.farmer))["items"][0]["id"]

    prepared = expect(await mark(client, order.id, item_id, shop.farmer), 200)
    again = expect(await mark(client, order.id, item_id, shop.farmer), 200)
    undone = expect(await mark(client, order.id, item_id, shop.farmer, prepared=False), 200)

    assert prepared["items"][0]["prepared"] is True
    assert ISO_UTC.match(prepared["items"][0]["preparedAt"])
    assert prepared["version"] == order.version + 1
    assert again["version"] == prepared["version"]  # nothing changed, nothing bumped
    assert undone["items"][0] == {**prepared["items"][0], "prepared": False, "preparedAt": None}
    assert undone["version"] == order.version + 2


async def test_only_the_farm_or_an_admin_marks_items(
    client: httpx.AsyncClient, factory: Factory, shop: Shop, admin: Party
) -> None:
    order = await make_order(factory, shop, S.PREPARING)
    item_id = (await get_order(client, order.id, shop.customer))["items"][0]["id"]

    # A customer may not, even on their own order
    expect(await mark(client, order.id, item_id, shop.customer), 403)
    assert (await get_order(client, order.id, shop.customer))["items"][0]["prepared"] is False

    # An admin may, and then the order can be made ready
    data = expect(await mark(client, order.id, item_id, admin), 200)
    assert data["items"][0]["prepared"] is True
    assert S.READY_FOR_PICKUP in data["allowedStatuses"]


async def test_item_patch_needs_a_known_item_and_a_boolean(
    client: httpx.AsyncClient, factory: Factory, shop: Shop
) -> None:
    order = await make_order(factory, shop, S.CONFIRMED)
    elsewhere = await make_order(factory, shop, S.CONFIRMED)
    item_id = (await get_order(client, order.id, shop.farmer))["items"][0]["id"]
    foreign_item = (await get_order(client, elsewhere.id, shop.farmer))["items"][0]["id"]

    expect(await mark(client, order.id, "no-such-item", shop.farmer), 404)
    expect(await mark(client, order.id, foreign_item, shop.farmer), 404)
    expect(await mark(client, order.id, item_id, shop.farmer, prepared="maybe"), 422)
    response = await client.patch(
        f"/api/orders/{order.id}/items/{item_id}", json={}, headers=shop.farmer.headers
    )
    expect(response, 422)
    assert (await get_order(client, order.id, shop.farmer))["version"] == order.version


async def test_items_are_marked_only_while_confirmed_or_preparing(
    client: httpx.AsyncClient, factory: Factory, shop: Shop
) -> None:
    for status, prepared in [
        (S.PENDING, True),
        (S.READY_FOR_PICKUP, False),
        (S.COMPLETED, False),
        (S.CANCELLED, True),
    ]:
        order = await make_order(factory, shop, status)
        item = (await get_order(client, order.id, shop.farmer))["items"][0]

        expect(await mark(client, order.id, item["id"], shop.farmer, prepared), 409)

        after = await get_order(client, order.id, shop.farmer)
        assert after["items"][0]["prepared"] is item["prepared"], status
        assert after["version"] == order.version, status


# Details ---------------------------------------------------------------------------------


async def test_farmer_sets_estimated_times_in_utc_and_null_clears_them(
    client: httpx.AsyncClient, factory: Factory, shop: Shop
) -> None:
    order = await make_order(factory, shop, S.CONFIRMED)

    # When the farmer gives times in their own offset (and pickup instructions)
    body = {
        "estimatedReadyAt": "2030-06-01T10:00:00+02:00",
        "estimatedPickupAt": later(1e5),
        "pickupInstructions": "Ring the bell",
    }
    data = expect(await edit(client, order.id, shop.farmer, body), 200)

    # Then they come back in UTC, to the farmer and the customer alike
    assert data["estimatedReadyAt"] == "2030-06-01T08:00:00Z"
    assert ISO_UTC.match(data["estimatedPickupAt"])
    assert data["version"] == order.version + 1
    assert await get_order(client, order.id, shop.customer) == {**data, "allowedStatuses": []}

    # And null clears a field, leaving those not sent as they were
    cleared = expect(await edit(client, order.id, shop.farmer, {"estimatedReadyAt": None}), 200)
    assert cleared["estimatedReadyAt"] is None
    assert cleared["estimatedPickupAt"] == data["estimatedPickupAt"]
    assert cleared["pickupInstructions"] == "Ring the bell"


async def test_estimated_times_need_a_timezone_and_pickup_after_ready(
    client: httpx.AsyncClient, factory: Factory, shop: Shop
) -> None:
    order = await make_order(factory, shop)

    for body in (
        {"estimatedReadyAt": "2030-06-01T10:00:00"},
        {"estimatedPickupAt": "2030-06-01T10:00:00"},
        {"estimatedReadyAt": "tomorrow"},
    ):
        error = expect(await edit(client, order.id, shop.farmer, body), 422, body)
        assert error["details"][0]["field"] == next(iter(body)), body

    # Pickup before ready, both in one request
    both = {"estimatedReadyAt": later(5), "estimatedPickupAt": later(4)}
    error = expect(await edit(client, order.id, shop.farmer, both), 422)
    assert error["details"][0]["field"] == "estimatedPickupAt"

    # Or against the ready time already on the order
    expect(await edit(client, order.id, shop.farmer, {"estimatedReadyAt": later(5)}), 200)
    expect(await edit(client, order.id, shop.farmer, {"estimatedPickupAt": later(4)}), 422)
    assert (await get_order(client, order.id, shop.farmer))["estimatedPickupAt"] is None


async def test_details_fit_the_fulfilment_type(
    client: httpx.AsyncClient, factory: Factory, shop: Shop
) -> None:
    pickup_details = {"pickupLocation": "Stall 7", "pickupInstructions": "Ask for Jo"}
    tracking = {"trackingNumber": "1Z999", "carrier": "UPS"}
    accepted = {F.PICKUP: pickup_details, F.DELIVERY: None, F.SHIPPING: tracking}
    for fulfillment, fits in accepted.items():
        order = await make_order(factory, shop, S.CONFIRMED, fulfillment=fulfillment)

        for body in (pickup_details, tracking):
            response = await edit(client, order.id, shop.farmer, body)

            if body is fits:
                data = expect(response, 200, (fulfillment, body))
                assert {key: data[key] for key in body} == body
            else:
                error = expect(response, 422, (fulfillment, body))
                assert {detail["field"] for detail in error["details"]} == set(body)
        # Only the accepted change bumped the version
        bumped = order.version + (1 if fits else 0)
        assert (await get_order(client, order.id, shop.farmer))["version"] == bumped


async def test_shipped_order_keeps_its_tracking_number(
    client: httpx.AsyncClient, factory: Factory, shop: Shop
) -> None:
    order = await make_order(factory, shop, S.OUT_FOR_DELIVERY, fulfillment=F.SHIPPING)

    expect(await edit(client, order.id, shop.farmer, {"trackingNumber": None}), 422)
    changed = expect(await edit(client, order.id, shop.farmer, {"trackingNumber": "1Z000"}), 200)
    assert changed["trackingNumber"] == "1Z000"


async def test_edit_must_change_something_known(
    client: httpx.AsyncClient, factory: Factory, shop: Shop
) -> None:
    order = await make_order(factory, shop)

    for body in ({}, {"expectedVersion": 1}, {"status": "COMPLETED"}):
        expect(await edit(client, order.id, shop.farmer, body), 422, body)


async def test_closed_orders_cannot_be_edited(
    client: httpx.AsyncClient, factory: Factory, shop: Shop
) -> None:
    for status in (S.COMPLETED, S.CANCELLED, S.REFUNDED):
        order = await make_order(factory, shop, status)

        expect(await edit(client, order.id, shop.farmer, {"estimatedReadyAt": later(1)}), 409)


async def test_customer_cannot_edit_order_details(
    client: httpx.AsyncClient, factory: Factory, shop: Shop
) -> None:
    order = await make_order(factory, shop)

    expect(await edit(client, order.id, shop.customer, {"pickupLocation": "My house"}), 403)

    assert (await get_order(client, order.id, shop.customer))["pickupLocation"] != "My house"


async def test_edit_with_stale_expected_version_conflicts(
    client: httpx.AsyncClient, factory: Factory, shop: Shop
) -> None:
    order = await make_order(factory, shop, S.CONFIRMED)  # version 2
    expect(await edit(client, order.id, shop.farmer, {"pickupInstructions": "Gate code 1234"}), 200)

    stale = {"pickupInstructions": "Gate code 9999", "expectedVersion": order.version}
    expect(await edit(client, order.id, shop.farmer, stale), 409)

    assert (await get_order(client, order.id, shop.farmer))["pickupInstructions"] == (
        "Gate code 1234"
    )


# Bulk ------------------------------------------------------------------------------------


async def bulk(
    client: httpx.AsyncClient, who: Party, order_ids: list[str], status: str, **extra: Any
) -> httpx.Response:
    body = {"orderIds": order_ids, "status": status, **extra}
    return await client.post("/api/orders/bulk-status", json=body, headers=who.headers)


async def test_bulk_change_applies_to_the_valid_orders_and_reports_the_rest(
    client: httpx.AsyncClient, factory: Factory, shop: Shop, other_shop: Shop, admin: Party
) -> None:
    # Given two pending orders (of two farms), a completed one, and an id that does not exist
    first, second = await make_order(factory, shop), await make_order(factory, other_shop)
    completed = await make_order(factory, shop, S.COMPLETED)
    ids = [first.id, completed.id, "no-such-order", second.id, first.id]

    # When an admin confirms them all at once
    result = expect(await bulk(client, admin, ids, "CONFIRMED"), 200)

    # Then the valid ones are confirmed, each with its own history row marked as bulk
    assert result["succeeded"] == 2
    assert result["failed"] == 2
    errors = {error["orderId"]: error["error"] for error in result["errors"]}
    assert set(errors) == {completed.id, "no-such-order"}
    assert "COMPLETED" in errors[completed.id]
    assert errors["no-such-order"] == "Order not found."
    for order in (first, second):
        assert (await get_order(client, order.id, admin))["status"] == S.CONFIRMED
        rows = await history(client, order.id, admin)
        assert len(rows) == 2
        assert rows[-1]["changedBy"] == admin.id
        assert rows[-1]["metadata"]["bulk"] is True
        assert replayed(rows) == S.CONFIRMED

    # And the invalid one is untouched
    untouched = await get_order(client, completed.id, admin)
    assert (untouched["status"], untouched["version"]) == (S.COMPLETED, completed.version)
    assert replayed(await history(client, completed.id, admin)) == S.COMPLETED


async def test_bulk_cancel_needs_a_reason(
    client: httpx.AsyncClient, factory: Factory, shop: Shop, admin: Party
) -> None:
    orders = [await make_order(factory, shop, quantity=2) for _ in range(2)]
    ids = [order.id for order in orders]

    # Without a reason nothing is cancelled, and each order says why
    result = expect(await bulk(client, admin, ids, "CANCELLED"), 200)
    assert (result["succeeded"], result["failed"]) == (0, 2)
    assert all("reason" in error["error"] for error in result["errors"])
    assert (await stock(client, shop.farm, admin))[shop.carrots.id] == 6

    # With one, all are cancelled, the reason recorded and the stock returned
    result = expect(await bulk(client, admin, ids, "CANCELLED", reason="Market closed"), 200)
    assert result == {"succeeded": 2, "failed": 0, "errors": []}
    for order_id in ids:
        row = (await history(client, order_id, shop.customer))[-1]
        assert (row["toStatus"], row["reason"]) == ("CANCELLED", "Market closed")
    assert (await stock(client, shop.farm, admin))[shop.carrots.id] == 10


async def test_only_admins_change_status_in_bulk(
    client: httpx.AsyncClient, factory: Factory, shop: Shop
) -> None:
    order = await make_order(factory, shop)

    expect(await bulk(client, shop.farmer, [order.id], "CONFIRMED"), 403)
    expect(await bulk(client, shop.customer, [order.id], "CANCELLED"), 403)

    assert (await get_order(client, order.id, shop.farmer))["status"] == S.PENDING


async def test_bulk_body_is_validated(client: httpx.AsyncClient, admin: Party) -> None:
    expect(await bulk(client, admin, [], "CONFIRMED"), 422)
    expect(await bulk(client, admin, ["x"], "SHIPPED"), 422)
    expect(await bulk(client, admin, ["x" * 65], "CONFIRMED"), 422)
