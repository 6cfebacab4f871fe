"""Who may open which stream: authorised exactly like the REST API."""

from __future__ import annotations

import pytest

from farmstand.accounts.roles import Role


async def test_streams_need_a_session(client):
    for url in ("/api/events", "/api/orders/events?farmId=x"):
        response = await client.get(url)
        assert response.status_code == 401
        assert response.json()["success"] is False


@pytest.mark.parametrize("query", ["", "?farmId=a&customerId=b", "?orderId=a&farmId=b"])
async def test_order_events_needs_exactly_one_scope(factory, client, query):
    user = await factory.user(Role.ADMIN)
    response = await client.get(f"/api/orders/events{query}", headers=await factory.headers(user))
    assert response.status_code == 422


async def test_customer_cannot_open_another_customers_stream_or_a_farms(factory, client):
    me, other = await factory.user(), await factory.user()
    farm = await factory.farm()
    headers = await factory.headers(me)

    for query in (f"customerId={other.id}", f"farmId={farm.id}"):
        response = await client.get(f"/api/orders/events?{query}", headers=headers)
        assert response.status_code == 404, query


async def test_farmer_cannot_open_another_farms_stream_or_its_orders(factory, client):
    farmer = await factory.user(Role.FARMER)
    other_farm = await factory.farm()
    order = await factory.order(farm=other_farm)
    headers = await factory.headers(farmer)

    for query in (f"farmId={other_farm.id}", f"orderId={order.id}", "farmId=unknown"):
        response = await client.get(f"/api/orders/events?{query}", headers=headers)
        assert response.status_code == 404, query


async def test_customer_cannot_follow_someone_elses_order(factory, client):
    order = await factory.order()
    stranger = await factory.user()
    response = await client.get(
        f"/api/orders/events?orderId={order.id}", headers=await factory.headers(stranger)
    )
    assert response.status_code == 404


async def test_admin_cannot_open_a_stream_for_an_unknown_customer(factory, client):
    admin = await factory.user(Role.ADMIN)
    farmer = await factory.user(Role.FARMER)
    headers = await factory.headers(admin)
    for customer_id in ("nobody", farmer.id):
        response = await client.get(f"/api/orders/events?customerId={customer_id}", headers=headers)
        assert response.status_code == 404


async def test_a_malformed_last_event_id_is_refused(factory, client):
    user = await factory.user()
    response = await client.get(
        "/api/events", headers={**await factory.headers(user), "Last-Event-ID": "abc"}
    )
    assert response.status_code == 400
    assert "Last-Event-ID" in response.json()["error"]
