"""Preferences, quiet hours, unsubscribe, the in-app centre, push subscriptions, delivery
logs, resends and the admin view, through HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from farmstand.accounts.roles import Role
from farmstand.notifications.models import PushSubscription
from farmstand.orders.states import OrderStatus
from tests.notifications.helpers import by_channel, rows_of

PUSH = {
    "endpoint": "https://fcm.googleapis.com/fcm/send/abc123def456",
    "keys": {
        "p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-"
        "Ts1XbjhazAkj7I99e8QcYP7DkM",
        "auth": "tBHItJI5svbpez7KI4CCXg",
    },
}


async def test_preferences_show_the_defaults_and_changes_take_effect(factory, client):
    customer = await factory.user(phone="+14155550123")
    headers = await factory.headers(customer)

    prefs = (await client.get("/api/me/notification-preferences", headers=headers)).json()
    ready = prefs["data"]["channels"]["ORDER_READY"]
    assert ready == {"EMAIL": True, "SMS": True, "PUSH": True, "IN_APP": True}
    assert prefs["data"]["channels"]["ORDER_PREPARING"]["EMAIL"] is False

    response = await client.put(
        "/api/me/notification-preferences",
        json={"channels": {"ORDER_READY": {"SMS": False}, "ORDER_CONFIRMED": {"SMS": True}}},
        headers=headers,
    )
    assert response.status_code == 200
    assert response.json()["data"]["channels"]["ORDER_READY"]["SMS"] is False

    order = await factory.order(status=OrderStatus.READY_FOR_PICKUP, customer=customer)
    assert "SMS" not in by_channel(await rows_of(factory, order.id, type="ORDER_READY"))
    assert "SMS" in by_channel(await rows_of(factory, order.id, type="ORDER_CONFIRMED"))


@pytest.mark.parametrize(
    "body",
    [
        {"channels": {"ORDER_READY": {"FAX": True}}},
        {"channels": {"NOT_A_TYPE": {"SMS": True}}},
        {"quietHours": {"start": "25:00", "end": "07:00"}},
        {"quietHours": {"start": "22:00", "end": "22:00"}},
        {"unknown": 1},
    ],
)
async def test_bad_preferences_are_refused_with_422(factory, client, body):
    headers = await factory.headers(await factory.user())
    response = await client.put("/api/me/notification-preferences", json=body, headers=headers)
    assert response.status_code == 422
    assert response.json()["success"] is False


async def test_quiet_hours_hold_sms_and_push_until_they_end(factory, client):
    customer = await factory.user(phone="+14155550123")
    headers = await factory.headers(customer)
    # Quiet from two hours ago until two hours from now (UTC, the user's zone; the window may
    # span midnight): whenever the test runs, we're inside them.
    now = datetime.now(UTC)
    start = f"{now - timedelta(hours=2):%H:%M}"
    end = f"{now + timedelta(hours=2):%H:%M}"
    response = await client.put(
        "/api/me/notification-preferences",
        json={"quietHours": {"start": start, "end": end}},
        headers=headers,
    )
    assert response.json()["data"]["quietHours"] == {"start": start, "end": end}

    order = await factory.order(status=OrderStatus.READY_FOR_PICKUP, customer=customer)
    rows = by_channel(await rows_of(factory, order.id, type="ORDER_READY"))
    # Waits for the end of quiet hours (HH:MM, so within the minute of now + 2 h).
    held = rows["SMS"].next_attempt_at - now
    assert timedelta(hours=1, minutes=58) < held <= timedelta(hours=2)
    assert rows["SMS"].meta["quietHoursUntil"]
    assert rows["EMAIL"].next_attempt_at <= datetime.now(UTC)  # email is not held

    response = await client.put(
        "/api/me/notification-preferences", json={"quietHours": None}, headers=headers
    )
    assert response.json()["data"]["quietHours"] is None


async def test_one_click_unsubscribe_stops_order_emails(factory, client):
    customer = await factory.user()
    order = await factory.order(status=OrderStatus.CONFIRMED, customer=customer)
    email = by_channel(await rows_of(factory, order.id, type="ORDER_CONFIRMED"))["EMAIL"]
    url = email.meta["unsubscribeUrl"]
    path = url.split("://", 1)[1].split("/", 1)[1]

    page = await client.get(f"/{path}")  # the link in the footer: a page with a button
    assert page.status_code == 200 and "<form" in page.text
    done = await client.post(
        f"/{path}",
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert done.status_code == 200 and "Unsubscribed" in done.text

    prefs = await client.get(
        "/api/me/notification-preferences", headers=await factory.headers(customer)
    )
    assert prefs.json()["data"]["emailUnsubscribed"] is True
    later = await factory.order(status=OrderStatus.CONFIRMED, customer=customer)
    email = by_channel(await rows_of(factory, later.id, type="ORDER_CONFIRMED"))["EMAIL"]
    assert str(email.status) == "SKIPPED" and "Unsubscribed" in email.last_error


async def test_a_forged_unsubscribe_link_is_refused(client):
    assert (await client.get("/api/notifications/unsubscribe?token=forged")).status_code == 404
    assert (await client.post("/api/notifications/unsubscribe?token=forged")).status_code == 404


async def test_in_app_centre_lists_reads_and_counts(factory, client):
    customer = await factory.user()
    headers = await factory.headers(customer)
    await factory.order(status=OrderStatus.PREPARING, customer=customer)  # 2 in-app messages

    listing = (await client.get("/api/notifications?unread=true", headers=headers)).json()["data"]
    assert listing["unreadCount"] == 2
    assert [n["type"] for n in listing["items"]] == ["ORDER_PREPARING", "ORDER_CONFIRMED"]

    first = listing["items"][0]["id"]
    read = await client.post(f"/api/notifications/{first}/read", headers=headers)
    assert read.json()["data"]["readAt"] is not None
    count = await client.get("/api/notifications/unread-count", headers=headers)
    assert count.json()["data"]["unreadCount"] == 1

    page = (await client.get("/api/notifications?limit=1", headers=headers)).json()["data"]
    assert len(page["items"]) == 1 and page["nextCursor"]
    rest = await client.get(
        f"/api/notifications?limit=1&cursor={page['nextCursor']}", headers=headers
    )
    assert rest.json()["data"]["items"][0]["id"] != page["items"][0]["id"]

    done = await client.post("/api/notifications/read-all", headers=headers)
    assert done.json()["data"] == {"marked": 1, "unreadCount": 0}


async def test_nobody_reads_someone_elses_notification(factory, client):
    customer, stranger = await factory.user(), await factory.user()
    await factory.order(status=OrderStatus.CONFIRMED, customer=customer)
    mine = (await client.get("/api/notifications", headers=await factory.headers(customer))).json()[
        "data"
    ]["items"]
    response = await client.post(
        f"/api/notifications/{mine[0]['id']}/read", headers=await factory.headers(stranger)
    )
    assert response.status_code == 404


async def test_push_subscription_is_saved_moved_and_removed(factory, client):
    first, second = await factory.user(), await factory.user()
    key = await client.get("/api/push/vapid-public-key")
    assert len(key.json()["data"]["publicKey"]) > 80

    created = await client.post(
        "/api/push/subscriptions", json=PUSH, headers=await factory.headers(first)
    )
    assert created.status_code == 201
    # The same browser, signed in as someone else: the subscription follows the new user.
    again = await client.post(
        "/api/push/subscriptions", json=PUSH, headers=await factory.headers(second)
    )
    assert again.json()["data"]["id"] == created.json()["data"]["id"]
    async with factory.db.transaction(write=False) as session:
        owner = await session.scalar(select(PushSubscription.user_id))
    assert owner == second.id

    sub_id = created.json()["data"]["id"]
    refused = await client.delete(
        f"/api/push/subscriptions/{sub_id}", headers=await factory.headers(first)
    )
    assert refused.status_code == 404
    removed = await client.delete(
        f"/api/push/subscriptions/{sub_id}", headers=await factory.headers(second)
    )
    assert removed.status_code == 200


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://fcm.googleapis.com/fcm/send/x",  # not https
        "https://169.254.169.254/latest/meta-data",  # not a push service
        "https://evil.example/fcm.googleapis.com",
    ],
)
async def test_push_endpoints_must_be_a_known_push_service(factory, client, endpoint):
    response = await client.post(
        "/api/push/subscriptions",
        json={**PUSH, "endpoint": endpoint},
        headers=await factory.headers(await factory.user()),
    )
    assert response.status_code == 422


async def test_profile_phone_is_validated_as_e164(factory, client):
    headers = await factory.headers(await factory.user())
    bad = await client.patch("/api/me", json={"phone": "call me maybe"}, headers=headers)
    assert bad.status_code == 422
    good = await client.patch(
        "/api/me", json={"phone": "+44 20 7946 0958", "timezone": "Europe/London"}, headers=headers
    )
    assert good.json()["data"]["phone"] == "+442079460958"
    assert good.json()["data"]["timezone"] == "Europe/London"


async def test_farm_and_admin_see_the_delivery_log_customers_do_not(factory, client):
    farmer = await factory.user(Role.FARMER)
    customer = await factory.user()
    order = await factory.order(
        farm=await factory.farm(farmer), customer=customer, status=OrderStatus.READY_FOR_PICKUP
    )
    log = await client.get(
        f"/api/orders/{order.id}/notifications", headers=await factory.headers(farmer)
    )
    assert log.status_code == 200
    lines = log.json()["data"]
    ready = [line for line in lines if line["type"] == "ORDER_READY"]
    assert {line["channel"] for line in ready} == {"EMAIL", "SMS", "PUSH", "IN_APP"}
    assert all("html" not in line["metadata"] for line in lines)

    admin = await factory.user(Role.ADMIN)
    assert (
        await client.get(
            f"/api/orders/{order.id}/notifications", headers=await factory.headers(admin)
        )
    ).status_code == 200
    assert (
        await client.get(
            f"/api/orders/{order.id}/notifications", headers=await factory.headers(customer)
        )
    ).status_code == 403
    other = await factory.user(Role.FARMER)
    assert (
        await client.get(
            f"/api/orders/{order.id}/notifications", headers=await factory.headers(other)
        )
    ).status_code == 404


async def test_farm_can_resend_the_latest_notification_but_not_too_often(factory, client):
    farmer = await factory.user(Role.FARMER)
    order = await factory.order(farm=await factory.farm(farmer), status=OrderStatus.CONFIRMED)
    headers = await factory.headers(farmer)

    first = await client.post(f"/api/orders/{order.id}/notifications/resend", headers=headers)
    assert first.status_code == 202
    assert first.json()["data"]["type"] == "ORDER_CONFIRMED"
    resent = first.json()["data"]["notifications"]
    assert {n["channel"] for n in resent} == {"EMAIL", "IN_APP"}
    assert all(n["metadata"]["requestedBy"] == farmer.id for n in resent)

    second = await client.post(f"/api/orders/{order.id}/notifications/resend", headers=headers)
    assert second.status_code == 429
    assert int(second.headers["Retry-After"]) > 0


async def test_admin_lists_and_retries_failed_notifications(factory, client):
    admin = await factory.user(Role.ADMIN)
    order = await factory.order(status=OrderStatus.CONFIRMED)
    email = by_channel(await rows_of(factory, order.id, type="ORDER_CONFIRMED"))["EMAIL"]
    async with factory.db.transaction() as session:
        row = await session.get(type(email), email.id)
        row.status, row.last_error, row.attempts = "FAILED", "550 mailbox unavailable", 6
    headers = await factory.headers(admin)

    failed = await client.get("/api/admin/notifications?status=FAILED", headers=headers)
    assert [n["id"] for n in failed.json()["data"]["items"]] == [email.id]
    assert failed.json()["data"]["items"][0]["lastError"] == "550 mailbox unavailable"

    retried = await client.post(f"/api/admin/notifications/{email.id}/retry", headers=headers)
    assert retried.json()["data"]["status"] == "QUEUED"
    assert retried.json()["data"]["attempts"] == 0
    again = await client.post(f"/api/admin/notifications/{email.id}/retry", headers=headers)
    assert again.status_code == 409

    stats = await client.get("/api/admin/notifications/stats", headers=headers)
    # The retried one, and the farmer's new-order email still waiting for a dispatcher.
    assert stats.json()["data"]["counts"]["EMAIL"]["QUEUED"] == 2

    farmer_headers = await factory.headers(await factory.user(Role.FARMER))
    assert (await client.get("/api/admin/notifications", headers=farmer_headers)).status_code == 403
    assert (
        await client.get("/api/admin/notifications?status=NOPE", headers=headers)
    ).status_code == 422
