"""PUT /api/orders/{id}/status: every happy path, and every way a change is refused."""

from __future__ import annotations

from datetime import datetime, timedelta

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
    set_status,
    stock,
)

S = OrderStatus
F = FulfillmentType
STAMPS = {
    S.CONFIRMED: "confirmedAt",
    S.PREPARING: "preparingAt",
    S.READY_FOR_PICKUP: "readyAt",
    S.OUT_FOR_DELIVERY: "outForDeliveryAt",
    S.COMPLETED: "completedAt",
    S.CANCELLED: "cancelledAt",
    S.REFUNDED: "refundedAt",
}


def parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


async def move(
    client: httpx.AsyncClient,
    order_id: str,
    who: Party,
    target: OrderStatus,
    reason: str | None = None,
) -> Json:
    """Change the status and check the reply: new status, its timestamp (stamped now, in UTC,
    the others untouched), a newer version."""
    before = await get_order(client, order_id, who)
    order = expect(await set_status(client, order_id, who, target, reason=reason), 200)
    assert order["status"] == target
    assert before[STAMPS[target]] is None
    assert ISO_UTC.match(order[STAMPS[target]])
    assert parse(order[STAMPS[target]]) >= parse(before["updatedAt"])
    assert {k: order[k] for k in STAMPS.values() if k != STAMPS[target]} == {
        k: before[k] for k in STAMPS.values() if k != STAMPS[target]
    }
    assert order["version"] == before["version"] + 1
    return order


async def prepare_all(client: httpx.AsyncClient, order_id: str, who: Party) -> None:
    for item in (await get_order(client, order_id, who))["items"]:
        response = await client.patch(
            f"/api/orders/{order_id}/items/{item['id']}",
            json={"prepared": True},
            headers=who.headers,
        )
        expect(response, 200)


def steps(rows: list[Json]) -> list[tuple[str | None, str, str | None, str | None]]:
    return [(r["fromStatus"], r["toStatus"], r["changedBy"], r["reason"]) for r in rows[1:]]


async def test_pickup_order_goes_from_pending_to_completed(
    client: httpx.AsyncClient, factory: Factory, shop: Shop
) -> None:
    # Given a new pickup order
    order = await make_order(factory, shop)
    farmer, customer = shop.farmer, shop.customer

    # When the farm confirms, prepares, marks everything ready and the customer collects it
    await move(client, order.id, farmer, S.CONFIRMED, reason="See you Saturday")
    await move(client, order.id, farmer, S.PREPARING)
    await prepare_all(client, order.id, farmer)
    await move(client, order.id, farmer, S.READY_FOR_PICKUP)
    done = await move(client, order.id, customer, S.COMPLETED)

    # Then every step is stamped and recorded with who did it and why
    assert all(done[field] is not None for field in ("confirmedAt", "preparingAt", "readyAt"))
    assert done["cancelledAt"] is None and done["outForDeliveryAt"] is None
    rows = await history(client, order.id, customer)
    assert steps(rows) == [
        ("PENDING", "CONFIRMED", farmer.id, "See you Saturday"),
        ("CONFIRMED", "PREPARING", farmer.id, None),
        ("PREPARING", "READY_FOR_PICKUP", farmer.id, None),
        ("READY_FOR_PICKUP", "COMPLETED", customer.id, None),
    ]
    assert rows[-1]["actor"] == {
        "id": customer.id,
        "name": customer.user.name,
        "role": "CUSTOMER",
    }
    assert replayed(rows) == S.COMPLETED


async def test_delivered_order_goes_out_for_delivery_then_completes(
    client: httpx.AsyncClient, factory: Factory, shop: Shop, admin: Party
) -> None:
    for fulfillment in (F.DELIVERY, F.SHIPPING):
        # Given an order being prepared, its items ready (for shipping, a tracking number)
        order = await make_order(factory, shop, S.PREPARING, fulfillment=fulfillment)
        await prepare_all(client, order.id, shop.farmer)
        if fulfillment is F.SHIPPING:
            patch = {"trackingNumber": "1Z999AA10123456784", "carrier": "UPS"}
            response = await client.patch(
                f"/api/orders/{order.id}", json=patch, headers=shop.farmer.headers
            )
            expect(response, 200)

        # When the farm sends it and an admin marks it delivered
        await move(client, order.id, shop.farmer, S.OUT_FOR_DELIVERY)
        done = await move(client, order.id, admin, S.COMPLETED, reason="Signed for")

        # Then it never was ready for pickup, and the history names both actors
        assert done["readyAt"] is None
        rows = await history(client, order.id, shop.customer)
        assert steps(rows)[-2:] == [
            ("PREPARING", "OUT_FOR_DELIVERY", shop.farmer.id, None),
            ("OUT_FOR_DELIVERY", "COMPLETED", admin.id, "Signed for"),
        ]
        assert replayed(rows) == S.COMPLETED


async def test_farmer_cancels_with_a_reason_from_any_open_status(
    client: httpx.AsyncClient, factory: Factory, shop: Shop
) -> None:
    for source in (S.PENDING, S.CONFIRMED, S.PREPARING, S.READY_FOR_PICKUP):
        order = await make_order(factory, shop, source)

        await move(client, order.id, shop.farmer, S.CANCELLED, reason="  Hail ruined the crop  ")

        rows = await history(client, order.id, shop.customer)
        assert steps(rows)[-1] == (source, "CANCELLED", shop.farmer.id, "Hail ruined the crop")


async def test_staff_refund_a_cancelled_or_completed_order(
    client: httpx.AsyncClient, factory: Factory, shop: Shop, admin: Party
) -> None:
    for source, who in ((S.CANCELLED, admin), (S.COMPLETED, shop.farmer)):
        order = await make_order(factory, shop, source)

        refunded = await move(client, order.id, who, S.REFUNDED, reason="Goodwill refund")

        assert refunded["allowedStatuses"] == []
        rows = await history(client, order.id, shop.customer)
        assert steps(rows)[-1] == (source, "REFUNDED", who.id, "Goodwill refund")
        assert replayed(rows) == S.REFUNDED


async def test_transition_not_allowed_from_the_current_status_conflicts(
    client: httpx.AsyncClient, factory: Factory, shop: Shop
) -> None:
    cases = [
        (S.PENDING, F.PICKUP, S.READY_FOR_PICKUP, [S.CONFIRMED, S.CANCELLED]),
        (S.PREPARING, F.DELIVERY, S.READY_FOR_PICKUP, [S.OUT_FOR_DELIVERY, S.CANCELLED]),
        (S.COMPLETED, F.PICKUP, S.CANCELLED, [S.REFUNDED]),
        (S.REFUNDED, F.PICKUP, S.PENDING, []),
    ]
    for source, fulfillment, target, allowed in cases:
        order = await make_order(factory, shop, source, fulfillment=fulfillment)

        response = await set_status(client, order.id, shop.farmer, target, reason="because")

        error = expect(response, 409, (source, target))
        assert error["details"]["currentStatus"] == source
        assert error["details"]["allowedStatuses"] == allowed
        unchanged = await get_order(client, order.id, shop.farmer)
        assert (unchanged["status"], unchanged["version"]) == (source, order.version)


async def test_customer_cannot_confirm_their_own_order(
    client: httpx.AsyncClient, factory: Factory, shop: Shop
) -> None:
    order = await make_order(factory, shop)

    expect(await set_status(client, order.id, shop.customer, S.CONFIRMED), 403)

    assert (await get_order(client, order.id, shop.customer))["status"] == S.PENDING
    assert len(await history(client, order.id, shop.customer)) == 1

    # Nor, once the farm confirmed it, cancel it (only the farm may, from then on)
    expect(await set_status(client, order.id, shop.farmer, S.CONFIRMED), 200)
    expect(await set_status(client, order.id, shop.customer, S.CANCELLED), 403)
    assert (await get_order(client, order.id, shop.customer))["status"] == S.CONFIRMED


async def test_farmer_must_give_a_reason_to_cancel(
    client: httpx.AsyncClient, factory: Factory, shop: Shop
) -> None:
    order = await make_order(factory, shop, S.CONFIRMED)

    for reason in (None, "", "   "):
        response = await set_status(client, order.id, shop.farmer, S.CANCELLED, reason=reason)

        expect(response, 422, repr(reason))
    assert (await get_order(client, order.id, shop.farmer))["status"] == S.CONFIRMED


async def test_malformed_status_change_is_refused(
    client: httpx.AsyncClient, factory: Factory, shop: Shop
) -> None:
    order = await make_order(factory, shop)
    bodies: list[Json] = [
        {},
        {"status": "SHIPPED"},
        {"status": None},
        {"status": "CONFIRMED", "expectedVersion": 0},
        {"status": "CONFIRMED", "expectedVersion": "soon"},
        {"status": "CONFIRMED", "note": "typo of reason"},
        {"status": "CANCELLED", "reason": "x" * 1001},
    ]
    for body in bodies:
        response = await client.put(
            f"/api/orders/{order.id}/status", json=body, headers=shop.farmer.headers
        )

        error = expect(response, 422, body)
        assert error["details"], body
    unchanged = await get_order(client, order.id, shop.farmer)
    assert (unchanged["status"], unchanged["version"]) == (S.PENDING, order.version)


async def test_stale_expected_version_conflicts(
    client: httpx.AsyncClient, factory: Factory, shop: Shop
) -> None:
    # Given the farmer saw version 1, then the order changed (an estimate was set)
    order = await make_order(factory, shop)
    seen = order.version
    estimate = {"estimatedReadyAt": (utcnow() + timedelta(hours=2)).isoformat()}
    response = await client.patch(
        f"/api/orders/{order.id}", json=estimate, headers=shop.farmer.headers
    )
    current = expect(response, 200)["version"]
    assert current == seen + 1

    # When they confirm what they saw, Then it conflicts and nothing changes
    stale = await set_status(client, order.id, shop.farmer, S.CONFIRMED, expected_version=seen)
    error = expect(stale, 409)
    assert error["details"] == {"expectedVersion": seen, "currentVersion": current}
    assert (await get_order(client, order.id, shop.farmer))["status"] == S.PENDING

    # And with the current version it goes through
    fresh = await set_status(client, order.id, shop.farmer, S.CONFIRMED, expected_version=current)
    assert expect(fresh, 200)["status"] == S.CONFIRMED


async def test_order_with_unprepared_items_cannot_be_ready(
    client: httpx.AsyncClient, factory: Factory, shop: Shop
) -> None:
    order = await factory.order(
        status=S.PREPARING,
        customer=shop.customer.user,
        farm=shop.farm,
        products=[shop.carrots, shop.eggs],
    )
    carrots = (await get_order(client, order.id, shop.farmer))["items"][0]
    response = await client.patch(
        f"/api/orders/{order.id}/items/{carrots['id']}",
        json={"prepared": True},
        headers=shop.farmer.headers,
    )
    expect(response, 200)

    error = expect(await set_status(client, order.id, shop.farmer, S.READY_FOR_PICKUP), 409)

    assert "prepared" in error["error"]
    assert (await get_order(client, order.id, shop.farmer))["status"] == S.PREPARING


async def test_shipping_order_without_tracking_number_cannot_ship(
    client: httpx.AsyncClient, factory: Factory, shop: Shop
) -> None:
    order = await make_order(factory, shop, S.PREPARING, fulfillment=F.SHIPPING)
    await prepare_all(client, order.id, shop.farmer)

    error = expect(await set_status(client, order.id, shop.farmer, S.OUT_FOR_DELIVERY), 409)

    assert "tracking number" in error["error"]


async def test_customer_cancels_their_pending_order_within_the_window(
    client: httpx.AsyncClient, factory: Factory, shop: Shop
) -> None:
    order = await make_order(factory, shop, placed_at=utcnow() - timedelta(hours=23))

    await move(client, order.id, shop.customer, S.CANCELLED)

    rows = await history(client, order.id, shop.farmer)
    assert steps(rows) == [("PENDING", "CANCELLED", shop.customer.id, None)]


async def test_customer_cannot_cancel_after_the_window(
    client: httpx.AsyncClient, factory: Factory, shop: Shop
) -> None:
    # Given an order placed 25 hours ago (the window is 24 hours)
    order = await make_order(factory, shop, placed_at=utcnow() - timedelta(hours=25))

    # When the customer tries to cancel it
    response = await set_status(client, order.id, shop.customer, S.CANCELLED, reason="Too late?")

    # Then they are told to contact the farm, and the order stands
    error = expect(response, 409)
    assert "24 hours" in error["error"]
    assert (await get_order(client, order.id, shop.customer))["status"] == S.PENDING
    # (the farm may still cancel it)
    await move(client, order.id, shop.farmer, S.CANCELLED, reason="Customer asked by phone")


async def test_cancelling_before_preparation_returns_the_stock(
    client: httpx.AsyncClient, factory: Factory, shop: Shop
) -> None:
    for source, restocked in ((S.PENDING, True), (S.CONFIRMED, True), (S.PREPARING, False)):
        # Given an order of 2 carrots and 2 eggs
        before = await stock(client, shop.farm, shop.farmer)
        order = await factory.order(
            status=source,
            customer=shop.customer.user,
            farm=shop.farm,
            products=[shop.carrots, shop.eggs],
            quantity=2,
        )
        taken = {product_id: left - 2 for product_id, left in before.items()}
        assert await stock(client, shop.farm, shop.farmer) == taken

        # When the farm cancels it
        await move(client, order.id, shop.farmer, S.CANCELLED, reason="Closed this week")

        # Then the goods go back on the shelf only if nothing was prepared yet
        after = await stock(client, shop.farm, shop.farmer)
        assert after == (before if restocked else taken), source

        # And refunding the cancelled order does not put them back a second time
        await move(client, order.id, shop.farmer, S.REFUNDED, reason="Refund as promised")
        assert await stock(client, shop.farm, shop.farmer) == after, source
