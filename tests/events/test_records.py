"""Every change writes its event in the same transaction, with the data subscribers need."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from farmstand.accounts.roles import Role
from farmstand.events.models import EventType, OrderEvent
from farmstand.orders.states import FulfillmentType, OrderStatus
from tests.factories import Factory


async def events_of(factory: Factory, order_id: str) -> list[OrderEvent]:
    async with factory.db.transaction(write=False) as session:
        # Order events only: in-app notifications about the order travel as events too.
        rows = await session.scalars(
            select(OrderEvent)
            .where(OrderEvent.order_id == order_id, OrderEvent.type != EventType.NOTIFICATION)
            .order_by(OrderEvent.id)
        )
        return list(rows)


async def test_placing_an_order_writes_a_new_order_event_a_card_can_render(factory, client):
    customer = await factory.user(Role.CUSTOMER, name="Carol Baker")
    farm = await factory.farm(name="Green Acre")
    tomatoes = await factory.product(farm, price="4.50", name="Tomatoes")

    response = await client.post(
        "/api/orders",
        json={"farmId": farm.id, "items": [{"productId": tomatoes.id, "quantity": 3}]},
        headers=await factory.headers(customer),
    )
    assert response.status_code == 201
    order = response.json()["data"]

    [event] = await events_of(factory, order["id"])
    assert event.type == EventType.NEW_ORDER
    assert (event.farm_id, event.customer_id) == (farm.id, customer.id)
    card = event.data["order"]
    assert card["orderNumber"] == order["orderNumber"]
    assert card["status"] == "PENDING"
    assert card["totalAmount"] == "13.50"
    assert card["customer"] == {"id": customer.id, "name": "Carol Baker"}
    assert card["farm"]["name"] == "Green Acre"
    assert card["itemCount"] == 3
    assert card["items"][0]["productName"] == "Tomatoes"


async def test_status_change_event_carries_the_real_previous_status(factory, client):
    farmer = await factory.user(Role.FARMER, name="Rosa Green")
    order = await factory.order(farm=await factory.farm(farmer))

    response = await client.put(
        f"/api/orders/{order.id}/status",
        json={"status": "CONFIRMED"},
        headers=await factory.headers(farmer),
    )
    assert response.status_code == 200

    event = (await events_of(factory, order.id))[-1]
    assert event.type == EventType.STATUS_CHANGE
    data: dict[str, Any] = event.data
    assert data["previousStatus"] == "PENDING"
    assert data["status"] == "CONFIRMED"
    assert data["orderNumber"] == order.order_number
    assert data["changedBy"] == {"id": farmer.id, "name": "Rosa Green", "role": "FARMER"}
    assert data["timestamps"]["confirmedAt"] == response.json()["data"]["confirmedAt"]
    assert data["version"] == response.json()["data"]["version"]


async def test_every_step_of_a_delivery_is_an_event_with_its_previous_status(factory):
    order = await factory.order(status=OrderStatus.COMPLETED, fulfillment=FulfillmentType.SHIPPING)
    changes = [
        (e.data["previousStatus"], e.data["status"])
        for e in await events_of(factory, order.id)
        if e.type == EventType.STATUS_CHANGE
    ]
    assert changes == [
        ("PENDING", "CONFIRMED"),
        ("CONFIRMED", "PREPARING"),
        ("PREPARING", "OUT_FOR_DELIVERY"),
        ("OUT_FOR_DELIVERY", "COMPLETED"),
    ]


async def test_item_and_detail_updates_are_order_update_events(factory, client):
    farmer = await factory.user(Role.FARMER)
    order = await factory.order(
        farm=await factory.farm(farmer),
        status=OrderStatus.PREPARING,
        fulfillment=FulfillmentType.SHIPPING,
    )
    headers = await factory.headers(farmer)
    item_id = order.items[0].id

    await client.patch(
        f"/api/orders/{order.id}/items/{item_id}", json={"prepared": True}, headers=headers
    )
    await client.patch(
        f"/api/orders/{order.id}",
        json={
            "estimatedReadyAt": "2030-01-02T10:00:00Z",
            "trackingNumber": "1Z42",
            "carrier": "UPS",
        },
        headers=headers,
    )

    updates = [
        e.data for e in await events_of(factory, order.id) if e.type == EventType.ORDER_UPDATE
    ]
    assert updates[-2]["changes"]["items"][0]["id"] == item_id
    assert updates[-2]["changes"]["items"][0]["prepared"] is True
    assert updates[-1]["changes"] == {
        "estimatedReadyAt": "2030-01-02T10:00:00Z",
        "trackingNumber": "1Z42",
        "carrier": "UPS",
    }


async def test_a_refused_change_writes_no_event(factory, client):
    farmer = await factory.user(Role.FARMER)
    order = await factory.order(farm=await factory.farm(farmer))
    before = len(await events_of(factory, order.id))

    response = await client.put(
        f"/api/orders/{order.id}/status",
        json={"status": "COMPLETED"},
        headers=await factory.headers(farmer),
    )

    assert response.status_code == 409
    assert len(await events_of(factory, order.id)) == before


async def test_bulk_change_writes_one_event_per_changed_order_only(factory, client):
    admin = await factory.user(Role.ADMIN)
    pending = await factory.order()
    confirmed = await factory.order(status=OrderStatus.CONFIRMED)

    response = await client.post(
        "/api/orders/bulk-status",
        json={"orderIds": [pending.id, confirmed.id], "status": "CONFIRMED"},
        headers=await factory.headers(admin),
    )

    assert response.json()["data"]["succeeded"] == 1
    last = (await events_of(factory, pending.id))[-1]
    assert (last.data["previousStatus"], last.data["status"]) == ("PENDING", "CONFIRMED")
    assert [e.data.get("status") for e in await events_of(factory, confirmed.id)][-1] == (
        "CONFIRMED"
    )
    assert len(await events_of(factory, confirmed.id)) == 2  # NEW_ORDER + its own confirm
