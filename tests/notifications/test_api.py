"""Preferences, quiet hours, unsubscribe, the in-app centre, push subscriptions, delivery
logs, resends and the admin view, through HTTP."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import itsdangerous.timed
import pytest
from itsdangerous import URLSafeSerializer
from sqlalchemy import select

from farmstand.accounts.roles import Role
from farmstand.notifications.models import PushSubscription
from farmstand.orders.states import OrderStatus
from tests.conftest import TEST_SECRET
from tests.mailbox import read_mailbox
from tests.notifications.helpers import by_channel, rows_of, sent_rows_of

PUSH_KEYS = {
    "p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-"
    "Ts1XbjhazAkj7I99e8QcYP7DkM",
    "auth": "tBHItJI5svbpez7KI4CCXg",
}
PUSH = {"endpoint": "https://fcm.googleapis.com/fcm/send/abc123def456", "keys": PUSH_KEYS}


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


async def test_preferences_read_changed_and_written_back_round_trip(factory, client):
    # Given what GET returns (it carries the time zone and every switch)
    headers = await factory.headers(await factory.user())
    document = (await client.get("/api/me/notification-preferences", headers=headers)).json()
    prefs = document["data"]
    assert prefs["timezone"] == "UTC"

    # When a client changes one switch and sends the whole document back
    prefs["channels"]["ORDER_READY"]["SMS"] = False
    response = await client.put("/api/me/notification-preferences", json=prefs, headers=headers)

    # Then it is accepted and only that switch changed
    assert response.status_code == 200, response.text
    assert response.json()["data"] == prefs

    # And the time zone it carries is the user's zone, applied like PATCH /api/me does
    prefs["timezone"] = "Europe/Paris"
    moved = await client.put("/api/me/notification-preferences", json=prefs, headers=headers)
    assert moved.json()["data"]["timezone"] == "Europe/Paris"
    me = await client.get("/api/auth/me", headers=headers)
    assert me.json()["data"]["timezone"] == "Europe/Paris"


@pytest.mark.parametrize(
    "body",
    [
        {"timezone": "Mars/Olympus_Mons"},
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
    assert rows["SMS"].next_attempt_at is not None
    held = rows["SMS"].next_attempt_at - now
    assert timedelta(hours=1, minutes=58) < held <= timedelta(hours=2)
    assert rows["SMS"].meta["quietHoursUntil"]
    assert rows["EMAIL"].next_attempt_at is not None
    assert rows["EMAIL"].next_attempt_at <= datetime.now(UTC)  # email is not held

    response = await client.put(
        "/api/me/notification-preferences", json={"quietHours": None}, headers=headers
    )
    assert response.json()["data"]["quietHours"] is None


def unsubscribe_path(factory, email_row_id: str) -> str:
    """The path of the one-click link in the email sent for ``email_row_id``."""
    sent = [
        entry
        for entry in read_mailbox(factory.runtime.settings.mailbox_dir)
        if email_row_id in entry.name
    ]
    assert len(sent) == 1, "the email was sent once"
    header = str(sent[0].message()["List-Unsubscribe"])  # <https://…/unsubscribe/<token>>
    url = header.strip("<>")
    assert "?" not in url, "the token is in the path, not a query string"
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


async def test_one_click_unsubscribe_stops_order_emails(factory, client):
    customer = await factory.user()
    order = await factory.order(status=OrderStatus.CONFIRMED, customer=customer)
    email = by_channel(await sent_rows_of(factory, order.id, type="ORDER_CONFIRMED"))["EMAIL"]
    path = unsubscribe_path(factory, email.id)

    page = await client.get(path)  # the link in the footer: a page with a button
    assert page.status_code == 200 and "<form" in page.text
    assert customer.email not in page.text
    assert page.headers["cache-control"] == "no-store"
    done = await client.post(
        path,
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert done.status_code == 200 and "Unsubscribed" in done.text
    assert customer.email not in done.text  # the page names nobody

    prefs = await client.get(
        "/api/me/notification-preferences", headers=await factory.headers(customer)
    )
    assert prefs.json()["data"]["emailUnsubscribed"] is True
    later = await factory.order(status=OrderStatus.CONFIRMED, customer=customer)
    email = by_channel(await rows_of(factory, later.id, type="ORDER_CONFIRMED"))["EMAIL"]
    assert email.last_error is not None
    assert str(email.status) == "SKIPPED" and "Unsubscribed" in email.last_error

    # And the link is spent: used once, it says so
    again = await client.post(path, content="List-Unsubscribe=One-Click")
    assert again.status_code == 404 and "expired or is not valid" in again.text


async def test_no_unsubscribe_token_reaches_the_logs(factory, client, caplog):
    customer = await factory.user()
    token = factory.runtime.notifier.unsubscribe_token(customer)
    with caplog.at_level(logging.DEBUG):
        await client.get(f"/api/notifications/unsubscribe/{token}")
        await client.post(f"/api/notifications/unsubscribe/{token}")
    # (httpx's own lines are the test client's, not the server's)
    lines = [r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert any("/api/notifications/unsubscribe/{token}" in line for line in lines)
    assert not any(token in line or customer.email in line for line in lines)


async def test_changing_preferences_revokes_the_links_sent_so_far(factory, client):
    customer = await factory.user()
    order = await factory.order(status=OrderStatus.CONFIRMED, customer=customer)
    email = by_channel(await sent_rows_of(factory, order.id, type="ORDER_CONFIRMED"))["EMAIL"]
    path = unsubscribe_path(factory, email.id)
    assert (await client.get(path)).status_code == 200

    changed = await client.put(
        "/api/me/notification-preferences",
        json={"channels": {"ORDER_READY": {"SMS": False}}},
        headers=await factory.headers(customer),
    )
    assert changed.status_code == 200

    assert (await client.get(path)).status_code == 404
    refused = await client.post(path, content="List-Unsubscribe=One-Click")
    assert refused.status_code == 404 and "expired or is not valid" in refused.text
    prefs = await client.get(
        "/api/me/notification-preferences", headers=await factory.headers(customer)
    )
    assert prefs.json()["data"]["emailUnsubscribed"] is False


async def test_an_unsubscribe_link_expires(factory, client, monkeypatch):
    customer = await factory.user()
    notifier = factory.runtime.notifier
    path = "/" + notifier.unsubscribe_url(customer).split("/", 3)[3]
    assert (await client.get(path)).status_code == 200

    # When the link's days (the setting, 60 by default) have passed
    days = factory.runtime.settings.unsubscribe_link_days
    later = time.time() + days * 86400 + 5
    monkeypatch.setattr(itsdangerous.timed, "time", SimpleNamespace(time=lambda: later))

    # Then it is refused, with a page saying so, and nothing changes
    expired = await client.post(path, content="List-Unsubscribe=One-Click")
    assert expired.status_code == 404 and "expired" in expired.text
    prefs = await client.get(
        "/api/me/notification-preferences", headers=await factory.headers(customer)
    )
    assert prefs.json()["data"]["emailUnsubscribed"] is False


async def test_a_forged_unsubscribe_link_is_refused(factory, client):
    customer = await factory.user()
    token = factory.runtime.notifier.unsubscribe_token(customer)
    for bad in ("forged", token[:-2] + "xx", "a" * 600, token.replace(".", "..", 1)):
        for method in ("GET", "POST"):
            response = await client.request(method, f"/api/notifications/unsubscribe/{bad}")
            assert response.status_code == 404, (method, bad)
            assert "expired or is not valid" in response.text


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_links_from_emails_sent_before_get_a_clear_page(factory, client, method):
    # Links of the old form (token in the query string, never expiring) are not honoured
    old = URLSafeSerializer(TEST_SECRET, salt="farmstand.unsubscribe").dumps("some-user-id")
    response = await client.request(method, f"/api/notifications/unsubscribe?token={old}")
    assert response.status_code == 410
    assert response.headers["content-type"].startswith("text/html")
    assert "expired or is not valid" in response.text


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


async def test_push_subscription_is_saved_renewed_and_removed(factory, client):
    first, second = await factory.user(), await factory.user()
    key = await client.get("/api/push/vapid-public-key")
    assert len(key.json()["data"]["publicKey"]) > 80

    created = await client.post(
        "/api/push/subscriptions", json=PUSH, headers=await factory.headers(first)
    )
    assert created.status_code == 201
    renewed = {**PUSH, "keys": {**PUSH_KEYS, "auth": "newAuthSecret1234"}}
    again = await client.post(
        "/api/push/subscriptions", json=renewed, headers=await factory.headers(first)
    )
    assert again.json()["data"]["id"] == created.json()["data"]["id"]

    sub_id = created.json()["data"]["id"]
    refused = await client.delete(
        f"/api/push/subscriptions/{sub_id}", headers=await factory.headers(second)
    )
    assert refused.status_code == 404
    removed = await client.delete(
        f"/api/push/subscriptions/{sub_id}", headers=await factory.headers(first)
    )
    assert removed.status_code == 200


async def test_another_accounts_push_endpoint_is_not_taken_over(factory, client):
    # Given a browser subscribed by its owner
    owner, other = await factory.user(), await factory.user()
    created = await client.post(
        "/api/push/subscriptions", json=PUSH, headers=await factory.headers(owner)
    )
    assert created.status_code == 201

    # When someone else posts the same endpoint (with keys of their own)
    hijack = {**PUSH, "keys": {**PUSH_KEYS, "auth": "attackerSecret99"}}
    response = await client.post(
        "/api/push/subscriptions", json=hijack, headers=await factory.headers(other)
    )

    # Then 409, and the owner's subscription is untouched
    assert response.status_code == 409
    assert response.json()["success"] is False
    async with factory.db.transaction(write=False) as session:
        row = await session.scalar(select(PushSubscription))
    assert row is not None
    assert (row.user_id, row.auth) == (owner.id, PUSH_KEYS["auth"])


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://fcm.googleapis.com/fcm/send/x",  # not https
        "https://169.254.169.254/latest/meta-data",  # not a push service
        "https://evil.example/fcm.googleapis.com",
        "https://[::1/x",  # not even a URL
        "https://[::1]/x",
        "https://example.com\uff0fevil.fcm.googleapis.com/x",  # a fullwidth solidus
        "https://fcm.googleapis.com\u3002evil.example/x",  # an ideographic full stop
        "https://fcm.googleapis.co\u1d0d/x",  # a look-alike letter
        "https://evil.example\\@fcm.googleapis.com/x",  # a backslash and user info
        "https://user@fcm.googleapis.com/x",
        "https://fcm.googleapis.com:8443/fcm/send/x",  # only port 443
        "https://fcm.googleapis.com:99999/fcm/send/x",
        "https://fcm.googleapis.com./fcm/send/x",
        "https://fcm%2egoogleapis.com/fcm/send/x",
        "https://xn--fcm-googleapis-abc.fcm.googleapis.com/x",
        "https://fcm.googleapis.com/fcm/send/x y",
        "https://fcm.googleapis.com/fcm/send/x#fragment",
    ],
)
async def test_push_endpoints_must_be_a_known_push_service(factory, client, endpoint):
    response = await client.post(
        "/api/push/subscriptions",
        json={**PUSH, "endpoint": endpoint},
        headers=await factory.headers(await factory.user()),
    )
    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "endpoint"


async def test_an_explicit_port_443_is_accepted(factory, client):
    response = await client.post(
        "/api/push/subscriptions",
        json={**PUSH, "endpoint": "https://fcm.googleapis.com:443/fcm/send/x443"},
        headers=await factory.headers(await factory.user()),
    )
    assert response.status_code == 201


async def test_profile_phone_is_validated_as_e164(factory, client):
    headers = await factory.headers(await factory.user())
    bad = await client.patch("/api/me", json={"phone": "call me maybe"}, headers=headers)
    assert bad.status_code == 422
    good = await client.patch(
        "/api/me", json={"phone": "+44 20 7946 0958", "timezone": "Europe/London"}, headers=headers
    )
    assert good.json()["data"]["phone"] == "+442079460958"
    assert good.json()["data"]["timezone"] == "Europe/London"


FARM_VIEW = {
    "id",
    "orderId",
    "type",
    "channel",
    "status",
    "attempts",
    "resent",
    "nextAttemptAt",
    "sentAt",
    "deliveryStatus",
    "deliveryErrorCode",
    "deliveryUpdatedAt",
    "readAt",
    "createdAt",
}


async def test_farm_and_admin_see_the_delivery_log_customers_do_not(factory, client):
    farmer = await factory.user(Role.FARMER)
    customer = await factory.user()
    order = await factory.order(
        farm=await factory.farm(farmer), customer=customer, status=OrderStatus.READY_FOR_PICKUP
    )
    await sent_rows_of(factory, order.id, type="ORDER_READY")  # the emails went out
    log = await client.get(
        f"/api/orders/{order.id}/notifications", headers=await factory.headers(farmer)
    )
    assert log.status_code == 200
    lines = log.json()["data"]
    ready = [line for line in lines if line["type"] == "ORDER_READY"]
    assert {line["channel"] for line in ready} == {"EMAIL", "SMS", "PUSH", "IN_APP"}
    # The farm sees the allow-listed fields only: no links, addresses, errors or messages
    assert all(set(line) == FARM_VIEW for line in lines)
    assert "unsubscribe" not in log.text and customer.email not in log.text

    admin = await factory.user(Role.ADMIN)
    admin_log = await client.get(
        f"/api/orders/{order.id}/notifications", headers=await factory.headers(admin)
    )
    assert admin_log.status_code == 200
    assert all({"userId", "lastError", "details"} <= set(line) for line in admin_log.json()["data"])
    assert "unsubscribe" not in admin_log.text
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
    assert all(n["resent"] is True and set(n) == FARM_VIEW for n in resent)

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
