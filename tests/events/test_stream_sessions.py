"""Open streams follow the session that opened them: whatever ends the session ends its streams
(with a final SESSION_ENDED frame), and what the user may see is recomputed while they stay open."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import update

from farmstand.accounts import service as accounts
from farmstand.accounts.models import AuthSession
from farmstand.accounts.roles import Role
from farmstand.catalog.models import Farm
from farmstand.db import utcnow
from farmstand.events.hub import CloseReason
from tests.events.conftest import Live
from tests.factories import PASSWORD
from tests.live import SseStream, open_stream


async def confirm(live: Live, order_id: str, headers: dict[str, str]) -> None:
    response = await live.http.put(
        f"/api/orders/{order_id}/status", json={"status": "CONFIRMED"}, headers=headers
    )
    assert response.status_code == 200, response.text


async def ends_with_session_ended(stream: SseStream, timeout: float = 10) -> dict[str, object]:
    """The stream's next frame is SESSION_ENDED, and then the response ends."""
    final = await stream.next(timeout)
    assert final.event == "SESSION_ENDED", (final.event, final.data)
    with pytest.raises(EOFError):
        await stream.next(timeout)
    data = final.json()
    assert isinstance(data, dict)
    return data


async def test_signing_out_ends_the_open_stream_and_nothing_more_arrives(live: Live):
    # Given a customer with an order and their stream open, and the farmer's stream open too,
    f = live.factory
    customer = await f.user()
    farmer = await f.user(Role.FARMER)
    farm = await f.farm(farmer)
    order = await f.order(customer=customer, farm=farm)
    customer_headers = await f.headers(customer)
    farmer_headers = await f.headers(farmer)
    await live.settle()
    async with (
        open_stream(live.http, "/api/events", customer_headers) as mine,
        open_stream(live.http, f"/api/orders/events?farmId={farm.id}", farmer_headers) as farms,
    ):
        assert (await mine.next()).event == "CONNECTED"
        assert (await farms.next()).event == "CONNECTED"

        # when the customer signs out,
        response = await live.http.post("/api/auth/logout", headers=customer_headers)
        assert response.status_code == 200
        assert (await live.http.get("/api/auth/me", headers=customer_headers)).status_code == 401

        # then their stream says so and ends,
        data = await ends_with_session_ended(mine)
        assert data["reason"] == "signed out"
        # while the farmer's stream carries on: a later change to the order reaches only it.
        await confirm(live, order.id, farmer_headers)
        assert (await farms.next()).event == "STATUS_CHANGE"
    assert live.runtime.hub.closed[CloseReason.SESSION] == 1


async def test_a_stream_opened_with_the_cookie_ends_when_the_cookie_session_signs_out(live: Live):
    customer = await live.factory.user()
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as browser:
        signed_in = await browser.post(
            "/api/auth/login", json={"email": customer.email, "password": PASSWORD}
        )
        assert signed_in.status_code == 200
        assert browser.cookies.get("farmstand_session")
        async with open_stream(browser, "/api/events") as stream:
            assert (await stream.next()).event == "CONNECTED"
            # The browser signs out with its cookie (from another tab: same session).
            assert (await browser.post("/api/auth/logout")).status_code == 200
            await ends_with_session_ended(stream)


async def test_revoking_every_session_of_a_user_ends_all_their_streams(live: Live):
    # Given a customer signed in twice, a stream open on each session,
    customer = await live.factory.user()
    first, second = await live.factory.headers(customer), await live.factory.headers(customer)
    async with (
        open_stream(live.http, "/api/events", first) as one,
        open_stream(live.http, f"/api/orders/events?customerId={customer.id}", second) as two,
    ):
        assert (await one.next()).event == "CONNECTED"
        assert (await two.next()).event == "CONNECTED"
        # when all their sessions are revoked at once (as a password change or disabling does),
        async with live.runtime.db.transaction() as session:
            await session.execute(
                update(AuthSession)
                .where(AuthSession.user_id == customer.id)
                .values(revoked_at=utcnow())
            )
            accounts.account_changed(session, customer.id, reason="password changed")
        # then both streams end.
        for stream in (one, two):
            assert (await ends_with_session_ended(stream))["reason"] == "password changed"


async def test_a_change_that_leaves_the_session_valid_keeps_the_stream(live: Live):
    # Given a customer's open stream,
    f = live.factory
    customer = await f.user()
    farmer = await f.user(Role.FARMER)
    order = await f.order(customer=customer, farm=await f.farm(farmer))
    headers = await f.headers(customer)
    await live.settle()
    async with open_stream(live.http, "/api/events", headers) as stream:
        assert (await stream.next()).event == "CONNECTED"
        # when they change their profile (the session stays valid),
        response = await live.http.patch("/api/me", json={"name": "Renamed"}, headers=headers)
        assert response.status_code == 200
        # then the stream stays open and goes on carrying their orders.
        await confirm(live, order.id, await f.headers(farmer))
        changed = await stream.until(lambda e: e.event == "STATUS_CHANGE")
        assert changed.json()["orderId"] == order.id
    assert live.runtime.hub.closed[CloseReason.SESSION] == 0


@pytest.mark.parametrize("live_overrides", [{"session_ttl_hours": 3 / 3600}])
async def test_a_stream_ends_when_its_session_expires(live: Live):
    customer = await live.factory.user()
    headers = await live.factory.headers(customer)  # a session of 3 seconds
    async with open_stream(live.http, "/api/events", headers) as stream:
        assert (await stream.next()).event == "CONNECTED"
        data = await ends_with_session_ended(stream, timeout=10)
        assert data["reason"] == "session expired"
    assert (await live.http.get("/api/auth/me", headers=headers)).status_code == 401


async def test_a_farmer_who_creates_a_farm_gets_its_orders_without_reconnecting(live: Live):
    # Given a farmer with their stream open and no farm yet,
    f = live.factory
    farmer = await f.user(Role.FARMER)
    headers = await f.headers(farmer)
    async with open_stream(live.http, "/api/events", headers) as stream:
        assert (await stream.next()).event == "CONNECTED"
        # when they create a farm and a customer orders from it,
        created = await live.http.post(
            "/api/farms", json={"name": "New Acre", "pickupLocation": "Stall 9"}, headers=headers
        )
        assert created.status_code == 201, created.text
        async with live.runtime.db.transaction() as session:
            farm = await session.get(Farm, created.json()["data"]["id"])
        assert farm is not None
        order = await f.order(farm=farm)
        # then the open stream carries the new order.
        new_order = await stream.until(lambda e: e.event == "NEW_ORDER")
        assert new_order.json()["orderId"] == order.id


async def test_a_farm_stream_ends_when_its_farm_is_no_longer_the_farmers(live: Live):
    # Given a farmer's stream of one farm,
    f = live.factory
    farmer, other = await f.user(Role.FARMER), await f.user(Role.FARMER)
    farm = await f.farm(farmer)
    headers = await f.headers(farmer)
    async with open_stream(live.http, f"/api/orders/events?farmId={farm.id}", headers) as stream:
        assert (await stream.next()).event == "CONNECTED"
        # when the farm passes to another farmer (what any change of owner must announce),
        async with live.runtime.db.transaction() as session:
            await session.execute(update(Farm).where(Farm.id == farm.id).values(owner_id=other.id))
            accounts.account_changed(session, farmer.id, reason="farms changed")
        # then the stream tells the farmer they may no longer see it, and ends.
        final = await stream.next()
        assert final.event == "ACCESS_ENDED"
        with pytest.raises(EOFError):
            await stream.next()
    assert live.runtime.hub.closed[CloseReason.ACCESS] == 1


HUGE = "9" * 32
STREAMS = [
    "/api/events",
    "/api/orders/events?farmId={farm}",
    "/api/orders/events?customerId={customer}",
    "/api/orders/events?orderId={order}",
]


async def last_event_id_reply(factory, client, path: str, how: str, value: str) -> httpx.Response:
    """The reply to an admin opening ``path`` with ``value`` as its Last-Event-ID."""
    admin, customer = await factory.user(Role.ADMIN), await factory.user()
    order = await factory.order(customer=customer)
    headers: dict[str, str | bytes] = {**await factory.headers(admin)}
    url = path.format(farm=order.farm_id, customer=customer.id, order=order.id)
    if how == "header":
        headers["Last-Event-ID"] = value.encode()  # as sent: UTF-8 bytes
    else:
        url += ("&" if "?" in url else "?") + f"lastEventId={value}"
    # Bounded: a stream that opened instead (the in-process client waits for its end) fails.
    return await asyncio.wait_for(client.get(url, headers=headers), 10)


def assert_clear_400(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["success"] is False
    assert "Last-Event-ID" in body["error"]
    assert body["details"][0]["field"] == "lastEventId"


@pytest.mark.parametrize("path", STREAMS)
@pytest.mark.parametrize("how", ["header", "query"])
async def test_a_last_event_id_out_of_range_is_a_clear_400_on_every_stream(
    factory, client, path: str, how: str
):
    assert_clear_400(await last_event_id_reply(factory, client, path, how, HUGE))


@pytest.mark.parametrize("value", ["abc", "-1", "1e3", "+5", "\u0663", "9223372036854775808"])
async def test_a_malformed_last_event_id_is_a_clear_400(factory, client, value: str):
    assert_clear_400(await last_event_id_reply(factory, client, "/api/events", "header", value))


async def test_the_largest_event_id_is_accepted(live: Live):
    customer = await live.factory.user()
    headers = {**await live.factory.headers(customer), "Last-Event-ID": str(2**63 - 1)}
    async with open_stream(live.http, "/api/events", headers) as stream:
        # Nothing after it to replay: the stream is open and carries on.
        await live.http.patch("/api/me", json={"name": "Still here"}, headers=headers)
        assert stream.response.status_code == 200


async def test_streams_opened_while_a_sign_out_is_processed_still_end(live: Live):
    """A session checked just before its sign-out is delivered, and subscribed just after."""
    customer = await live.factory.user()
    headers = await live.factory.headers(customer)
    hub = live.runtime.hub
    streams = []
    async with asyncio.TaskGroup() as group:
        logout = group.create_task(live.http.post("/api/auth/logout", headers=headers))
        for _ in range(5):
            streams.append(group.create_task(live.http.get("/api/events", headers=headers)))
            await asyncio.sleep(0.01)
    assert (await logout).status_code == 200
    # Whichever opened, none is left open for long.
    for _ in range(250):
        if hub.open_streams == 0:
            break
        await asyncio.sleep(0.02)
    assert hub.open_streams == 0
    for task in streams:
        assert task.result().status_code in (200, 401)
