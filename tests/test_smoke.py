from farmstand.accounts.roles import Role
from farmstand.orders.states import FulfillmentType, OrderStatus


async def test_farmer_sees_order_in_every_status(factory, client):
    farmer = await factory.user(Role.FARMER)
    farm = await factory.farm(farmer)
    for fulfillment in FulfillmentType:
        for status in OrderStatus:
            if (status is OrderStatus.READY_FOR_PICKUP) != (fulfillment is FulfillmentType.PICKUP) and status in (OrderStatus.READY_FOR_PICKUP, OrderStatus.OUT_FOR_DELIVERY):
                continue
            await factory.order(status=status, fulfillment=fulfillment, farm=farm)
    response = await client.get("/api/orders?limit=100", headers=await factory.headers(farmer))
    assert response.status_code == 200
    assert len(response.json()["data"]["items"]) == 21
