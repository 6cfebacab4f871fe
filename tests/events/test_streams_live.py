"""Live SSE streams on a real socket: delivery, scoping, frames, heartbeat, resume."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from farmstand.accounts.roles import Role
from farmstand.app import create_app
from tests.events.conftest import Live, live_settings
from tests.factories import Factory
from tests.live import SseEvent, SseStream, open_stream, serve_in_process


async def confirm(live: Live, order_id: str, headers: dict[str, str]) -> None:
    response = await live.http.put(
        f"/api/orders/{order_id}/status", json={"status": "CONFIRMED"}, headers=headers
    )
    assert response.status_code == 200, response.text


async def next_shared(stream: SseStream, personal: list[SseEvent]) -> SseEvent:
    """The next frame that is not one of the user's own notifications (kept in ``personal``)."""
    while (event := await stream.next()).event == "NOTIFICATION":
        personal.append(event)
    return event


async def test_farmer_sees_new_orders_and_status_changes_of_their_farm_live(live: Live):
    farmer = await live.factory.user(Role.FARMER)
    farm = await live.factory.farm(farmer)
    product = await live.factory.product(farm)
    customer = await live.factory.user()
    farmer_headers = await live.factory.headers(farmer)

    async with open_stream(
        live.http, f"/api/orders/events?farmId={farm.id}", farmer_headers
    ) as stream:
        connected = await stream.next()
        assert connected.event == "CONNECTED"

        placed = await live.http.post(
            "/api/orders",
            json={"farmId": farm.id, "items": [{"productId": product.id, "quantity": 1}]},
            headers=await live.factory.headers(customer),
        )
        order_id = placed.json()["data"]["id"]
        personal: list[SseEvent] = []  # the farmer's own notifications ride every stream
        new_order = await next_shared(stream, personal)
        await confirm(live, order_id, farmer_headers)
        changed = await next_shared(stream, personal)
        if not personal:
            personal.append(await stream.next())

    assert personal[0].event == "NOTIFICATION"
    assert personal[0].json()["userId"] == farmer.id
    assert personal[0].json()["data"]["type"] == "NEW_ORDER"
    assert new_order.event == "NEW_ORDER"
    assert new_order.json()["orderId"] == order_id
    assert new_order.json()["data"]["order"]["customer"]["id"] == customer.id
    assert changed.event == "STATUS_CHANGE"
    assert changed.json()["data"]["previousStatus"] == "PENDING"
    # Frames carry the event id, and ids grow (the farmer's own notifications, on other
    # streams, take positions in between).
    assert changed.id is not None and new_order.id is not None
    assert int(changed.id) > int(new_order.id)
    assert int(changed.id) == changed.json()["eventId"]


async def test_streams_carry_only_what_their_owner_may_see(live: Live):
    f = live.factory
    farmer_a, farmer_b = await f.user(Role.FARMER), await f.user(Role.FARMER)
    farm_a, farm_b = await f.farm(farmer_a), await f.farm(farmer_b)
    alice, bob = await f.user(), await f.user()
    order_a = await f.order(farm=farm_a, customer=alice)
    order_b = await f.order(farm=farm_b, customer=bob)
    admin = await f.user(Role.ADMIN)
    headers = {u.id: await f.headers(u) for u in (farmer_a, farmer_b, alice, bob, admin)}
    await live.settle()

    async with (
        open_stream(live.http, "/api/events", headers[farmer_a.id]) as farmer_stream,
        open_stream(live.http, "/api/events", headers[alice.id]) as alice_stream,
        open_stream(
            live.http, f"/api/orders/events?orderId={order_a.id}", headers[alice.id]
        ) as order_stream,
        open_stream(
            live.http, f"/api/orders/events?customerId={alice.id}", headers[admin.id]
        ) as admin_customer_stream,
        open_stream(live.http, "/api/events", headers[admin.id]) as admin_stream,
    ):
        for stream in (
            farmer_stream,
            alice_stream,
            order_stream,
            admin_customer_stream,
            admin_stream,
        ):
            assert (await stream.next()).event == "CONNECTED"
        # Given a change on farm B first, then one on farm A:
        await confirm(live, order_b.id, headers[farmer_b.id])
        await confirm(live, order_a.id, headers[farmer_a.id])

        # Then streams scoped to A see only A's change: the first thing they receive.
        for stream in (farmer_stream, alice_stream, order_stream, admin_customer_stream):
            event = await stream.next()
            assert event.json()["orderId"] == order_a.id
        # And the admin's everything-stream sees both, in commit order.
        seen = [(await admin_stream.next()).json()["orderId"] for _ in range(2)]
        assert seen == [order_b.id, order_a.id]


@pytest.fixture
def live_overrides() -> dict[str, object]:
    return {"sse_heartbeat_seconds": 0.3, "sse_retry_ms": 1500}


async def test_stream_sends_retry_hint_and_heartbeats(live: Live):
    user = await live.factory.user()
    async with live.http.stream(
        "GET", "/api/events", headers=await live.factory.headers(user)
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines: list[str] = []

        async def read() -> None:
            async for line in response.aiter_lines():
                lines.append(line)
                if sum(1 for item in lines if item.startswith(":")) >= 2:
                    return

        await asyncio.wait_for(read(), timeout=10)
    assert "retry: 1500" in lines
    assert sum(1 for line in lines if line.startswith(":")) >= 2


async def read_until_id(stream, event_id: int) -> list[SseEvent]:
    events = []
    while True:
        event = await stream.next()
        events.append(event)
        if event.id is not None and int(event.id) >= event_id:
            return events


@pytest.mark.parametrize("how", ["header", "query"])
async def test_reconnecting_client_misses_nothing_and_sees_nothing_twice(live: Live, how: str):
    f = live.factory
    farmer = await f.user(Role.FARMER)
    farm = await f.farm(farmer)
    orders = [await f.order(farm=farm) for _ in range(4)]
    headers = await f.headers(farmer)
    url = f"/api/orders/events?farmId={farm.id}"
    await live.settle()  # the orders' own NEW_ORDER events are out before we connect

    # Given a client that saw the first change, then dropped off,
    async with open_stream(live.http, url, headers) as stream:
        await stream.next()  # CONNECTED
        await confirm(live, orders[0].id, headers)
        last_seen = (await stream.next()).id
    # while two more changes were committed,
    await confirm(live, orders[1].id, headers)
    await confirm(live, orders[2].id, headers)

    # when it reconnects with the last id it saw, and a third change happens live,
    if how == "header":
        resume_url, resume_headers = url, {**headers, "Last-Event-ID": str(last_seen)}
    else:
        resume_url, resume_headers = f"{url}&lastEventId={last_seen}", headers
    async with open_stream(live.http, resume_url, resume_headers) as stream:
        missed = [await stream.next(), await stream.next()]
        await confirm(live, orders[3].id, headers)
        fresh = await stream.next()

    # then it gets the missed ones from the table, then the live one: in order, once each.
    got = [e.json()["orderId"] for e in (*missed, fresh)]
    assert got == [orders[1].id, orders[2].id, orders[3].id]
    ids = [int(e.id) for e in (*missed, fresh) if e.id is not None]
    assert last_seen is not None and len(ids) == 3
    assert ids == sorted(set(ids)) and ids[0] > int(last_seen)


async def test_connected_frame_gives_a_resume_point_even_before_any_event(live: Live):
    f = live.factory
    farmer = await f.user(Role.FARMER)
    farm = await f.farm(farmer)
    order = await f.order(farm=farm)
    headers = await f.headers(farmer)
    url = f"/api/orders/events?farmId={farm.id}"
    await live.settle()

    async with open_stream(live.http, url, headers) as stream:
        connected = await stream.next()
    assert connected.id is not None
    await confirm(live, order.id, headers)  # happens while nobody is connected
    async with open_stream(live.http, url, {**headers, "Last-Event-ID": connected.id}) as stream:
        missed = await stream.next()
    assert missed.event == "STATUS_CHANGE" and missed.json()["orderId"] == order.id


async def test_server_shutdown_ends_open_streams(database_url, tmp_path):
    app = create_app(live_settings(database_url, tmp_path))
    async with httpx.AsyncClient(timeout=30) as http:
        async with serve_in_process(app) as url:
            factory = Factory(app.state.runtime, http)
            user = await factory.user()
            headers = await factory.headers(user)
            cm = open_stream(http, f"{url}/api/events", headers)
            stream = await cm.__aenter__()
            assert (await stream.next()).event == "CONNECTED"
        # The server has stopped (serve_in_process exited): the stream ends, no hang.
        with pytest.raises((EOFError, httpx.HTTPError)):
            await stream.next(timeout=10)
        await cm.__aexit__(None, None, None)
    assert app.state.runtime.hub.subscriptions() == set()


async def test_a_client_that_goes_away_releases_its_subscription(live: Live):
    user = await live.factory.user()
    headers = await live.factory.headers(user)
    for _ in range(3):
        async with open_stream(live.http, "/api/events", headers) as stream:
            await stream.next()  # CONNECTED
            assert live.runtime.hub.subscriptions()
    for _ in range(100):
        if not live.runtime.hub.subscriptions():
            break
        await asyncio.sleep(0.05)
    assert live.runtime.hub.subscriptions() == set()
