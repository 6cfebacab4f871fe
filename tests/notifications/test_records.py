"""Who gets what, written in the transaction of the change."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from farmstand.accounts.roles import Role
from farmstand.events.models import EventType, OrderEvent
from farmstand.orders.states import FulfillmentType, OrderStatus
from tests.notifications.helpers import by_channel, rows_of, sent_rows_of

EXPECTED = {
    # status reached: (type, {channel: status for a customer with a phone and no push})
    OrderStatus.CONFIRMED: ("ORDER_CONFIRMED", {"EMAIL": "QUEUED", "IN_APP": "SENT"}),
    OrderStatus.PREPARING: ("ORDER_PREPARING", {"IN_APP": "SENT"}),
    OrderStatus.READY_FOR_PICKUP: (
        "ORDER_READY",
        {"EMAIL": "QUEUED", "SMS": "QUEUED", "PUSH": "SKIPPED", "IN_APP": "SENT"},
    ),
    OrderStatus.COMPLETED: ("ORDER_COMPLETED", {"EMAIL": "QUEUED", "IN_APP": "SENT"}),
    OrderStatus.CANCELLED: ("ORDER_CANCELLED", {"EMAIL": "QUEUED", "IN_APP": "SENT"}),
    OrderStatus.REFUNDED: ("ORDER_REFUNDED", {"EMAIL": "QUEUED", "IN_APP": "SENT"}),
}


@pytest.mark.parametrize("status", list(EXPECTED), ids=str)
async def test_each_status_notifies_the_customer_on_its_default_channels(factory, status):
    customer = await factory.user(phone="+14155550123")
    order = await factory.order(status=status, customer=customer)

    type, channels = EXPECTED[status]
    rows = await rows_of(factory, order.id, type=type)

    assert {str(r.channel): str(r.status) for r in rows} == channels
    assert all(r.user_id == customer.id for r in rows)


async def test_out_for_delivery_texts_and_pushes_with_the_tracking_number(factory):
    customer = await factory.user(phone="+14155550123")
    order = await factory.order(
        status=OrderStatus.OUT_FOR_DELIVERY, fulfillment=FulfillmentType.SHIPPING, customer=customer
    )
    rows = by_channel(await sent_rows_of(factory, order.id, type="ORDER_OUT_FOR_DELIVERY"))
    assert set(rows) == {"SMS", "PUSH", "IN_APP"}
    assert "1Z999" in rows["SMS"].message


async def test_ready_message_names_the_pickup_place_and_instructions(factory):
    farm = await factory.farm(
        pickup_location="Barn 3, Elm Road", pickup_instructions="Ring the bell twice"
    )
    order = await factory.order(status=OrderStatus.READY_FOR_PICKUP, farm=farm)
    rows = by_channel(await sent_rows_of(factory, order.id, type="ORDER_READY"))
    for channel in ("EMAIL", "IN_APP"):
        assert "Barn 3, Elm Road" in rows[channel].message
        assert "Ring the bell twice" in rows[channel].message


async def test_a_customer_without_a_phone_gets_a_skipped_sms_row_not_an_error(factory):
    order = await factory.order(status=OrderStatus.READY_FOR_PICKUP)  # customer has no phone
    sms = by_channel(await rows_of(factory, order.id, type="ORDER_READY"))["SMS"]
    assert str(sms.status) == "SKIPPED"
    assert "phone" in (sms.last_error or "")


async def test_a_new_order_notifies_the_farmer(factory):
    farmer = await factory.user(Role.FARMER)
    order = await factory.order(farm=await factory.farm(farmer))
    rows = await rows_of(factory, order.id, type="NEW_ORDER")
    assert {str(r.channel): str(r.status) for r in rows} == {
        "EMAIL": "QUEUED",
        "PUSH": "SKIPPED",
        "IN_APP": "SENT",
    }
    assert all(r.user_id == farmer.id for r in rows)


async def test_in_app_notification_goes_out_as_a_private_event(factory):
    customer = await factory.user()
    order = await factory.order(status=OrderStatus.CONFIRMED, customer=customer)
    [in_app] = [
        r
        for r in await rows_of(factory, order.id, type="ORDER_CONFIRMED")
        if str(r.channel) == "IN_APP"
    ]
    async with factory.db.transaction(write=False) as session:
        events = list(
            await session.scalars(
                select(OrderEvent).where(
                    OrderEvent.type == EventType.NOTIFICATION, OrderEvent.user_id == customer.id
                )
            )
        )
    assert [e.data["id"] for e in events] == [in_app.id]
    assert events[0].data["title"] == in_app.title


async def test_a_correction_with_notify_customer_false_sends_nothing_and_is_recorded(
    factory, client
):
    farmer = await factory.user(Role.FARMER)
    order = await factory.order(farm=await factory.farm(farmer))
    response = await client.put(
        f"/api/orders/{order.id}/status",
        json={"status": "CONFIRMED", "notifyCustomer": False},
        headers=await factory.headers(farmer),
    )
    assert response.status_code == 200
    assert await rows_of(factory, order.id, type="ORDER_CONFIRMED") == []
    history = await client.get(
        f"/api/orders/{order.id}/status", headers=await factory.headers(farmer)
    )
    assert history.json()["data"][-1]["metadata"]["notifyCustomer"] is False


async def test_a_refused_change_writes_no_notification(factory, client):
    farmer = await factory.user(Role.FARMER)
    order = await factory.order(farm=await factory.farm(farmer))
    before = len(await rows_of(factory, order.id))
    response = await client.put(
        f"/api/orders/{order.id}/status",
        json={"status": "READY_FOR_PICKUP"},
        headers=await factory.headers(farmer),
    )
    assert response.status_code == 409
    assert len(await rows_of(factory, order.id)) == before


async def test_cancellation_gives_the_reason_and_the_refund_delay(factory):
    order = await factory.order(status=OrderStatus.CANCELLED)  # factory reason: "test reason"
    email = by_channel(await sent_rows_of(factory, order.id, type="ORDER_CANCELLED"))["EMAIL"]
    assert "test reason" in email.message
    assert "3" in email.message and "5 business days" in email.message


async def test_moving_the_estimate_later_tells_the_customer_the_new_time(factory, client):
    farmer = await factory.user(Role.FARMER)
    customer = await factory.user()
    order = await factory.order(
        farm=await factory.farm(farmer), customer=customer, status=OrderStatus.CONFIRMED
    )
    headers = await factory.headers(farmer)
    response = await client.patch(
        f"/api/orders/{order.id}",
        json={"estimatedReadyAt": "2030-05-01T15:00:00Z"},
        headers=headers,
    )
    # (the change was made: "no notification" below is not a refused request)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["estimatedReadyAt"] == "2030-05-01T15:00:00Z"
    assert await rows_of(factory, order.id, type="ORDER_DELAYED") == []  # first estimate

    response = await client.patch(
        f"/api/orders/{order.id}",
        json={"estimatedReadyAt": "2030-05-01T17:30:00Z"},
        headers=headers,
    )
    # (the change was made: "no notification" below is not a refused request)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["estimatedReadyAt"] == "2030-05-01T17:30:00Z"
    rows = by_channel(await rows_of(factory, order.id, type="ORDER_DELAYED"))
    assert set(rows) == {"EMAIL", "PUSH", "IN_APP"}
    assert "5:30" in rows["IN_APP"].message  # the new time, in the customer's zone (UTC)

    response = await client.patch(
        f"/api/orders/{order.id}",
        json={"estimatedReadyAt": "2030-05-01T16:00:00Z"},
        headers=headers,
    )
    # (the change was made: "no notification" below is not a refused request)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["estimatedReadyAt"] == "2030-05-01T16:00:00Z"
    assert len(await rows_of(factory, order.id, type="ORDER_DELAYED")) == 3  # earlier: nothing
