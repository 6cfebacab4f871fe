"""The notification pages through the app (no browser): the bell and list, marking read (only
one's own), preferences with quiet hours, the push subscription page routes, and /sw.js."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from farmstand.accounts.models import User
from farmstand.accounts.roles import Role
from farmstand.config import Settings
from farmstand.notifications.models import PushSubscription
from farmstand.orders.states import OrderStatus
from tests.conftest import make_settings
from tests.factories import Factory
from tests.notifications.test_api import PUSH
from tests.web.test_pages import sign_in, token_of


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url  # the services under these pages are tested on both databases


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path)


async def customer_with_news(factory: Factory, client: httpx.AsyncClient) -> User:
    """A signed-in customer with two unread notifications (confirmed, then preparing)."""
    customer = await factory.user()
    await factory.order(status=OrderStatus.PREPARING, customer=customer)
    await sign_in(client, customer.email)
    return customer


def bell_label(page: httpx.Response) -> str:
    found = re.search(r'class="bell"[^>]*aria-label="([^"]+)"', page.text, re.DOTALL)
    assert found, page.text[:1000]
    return found.group(1)


def open_forms(page: httpx.Response) -> list[str]:
    return re.findall(r'action="/notifications/([0-9a-f-]+)/read"', page.text)


async def test_the_bell_counts_unread_notifications_on_every_page(client, factory: Factory):
    await customer_with_news(factory, client)
    for path in ("/orders", "/farms", "/account", "/notifications"):
        assert bell_label(await client.get(path)) == "Notifications, 2 unread", path
    fragment = await client.get("/notifications/bell", headers={"HX-Request": "true"})
    assert 'aria-label="Notifications, 2 unread"' in fragment.text
    assert ">2</span>" in fragment.text


async def test_notifications_list_newest_first_and_opening_one_marks_it_read(
    client, factory: Factory
):
    await customer_with_news(factory, client)
    page = await client.get("/notifications")
    assert page.status_code == 200
    first, second = open_forms(page)
    assert page.text.count("badge-new") == 2

    opened = await client.post(f"/notifications/{first}/read", data={"csrf_token": token_of(page)})
    assert opened.status_code == 303
    assert opened.headers["location"].startswith("/orders/")
    page = await client.get("/notifications")
    assert open_forms(page) == [second]
    assert bell_label(page) == "Notifications, 1 unread"

    done = await client.post("/notifications/read-all", data={"csrf_token": token_of(page)})
    assert done.headers["location"] == "/notifications?notice=read"
    page = await client.get(done.headers["location"])
    assert "All your notifications are marked read." in page.text
    assert open_forms(page) == [] and bell_label(page) == "Notifications"
    assert "Mark all read" not in page.text


async def test_nobody_marks_someone_elses_notification(client, factory: Factory):
    owner = await customer_with_news(factory, client)
    theirs = open_forms(await client.get("/notifications"))[0]
    client.cookies.clear()
    await sign_in(client, (await factory.user()).email)
    page = await client.get("/notifications")
    assert "No notifications yet." in page.text
    refused = await client.post(
        f"/notifications/{theirs}/read", data={"csrf_token": token_of(page)}
    )
    assert refused.status_code == 404
    client.cookies.clear()
    await sign_in(client, owner.email)
    assert bell_label(await client.get("/orders")) == "Notifications, 2 unread"


async def test_marking_read_needs_the_csrf_token(client, factory: Factory):
    await customer_with_news(factory, client)
    first = open_forms(await client.get("/notifications"))[0]
    assert (await client.post(f"/notifications/{first}/read", data={})).status_code == 403
    assert (await client.post("/notifications/read-all", data={})).status_code == 403
    assert bell_label(await client.get("/orders")) == "Notifications, 2 unread"


async def test_signed_out_visitors_are_sent_to_sign_in(client):
    for path in ("/notifications", "/settings/notifications", "/account"):
        reply = await client.get(path)
        assert reply.status_code == 303 and reply.headers["location"] == f"/login?next={path}"
    assert (await client.get("/session")).status_code == 401


def checkbox(page: httpx.Response, name: str) -> bool:
    found = re.search(
        rf'<input type="checkbox" id="[^"]+" name="{re.escape(name)}"( checked)?>', page.text
    )
    assert found, name
    return found.group(1) is not None


async def test_preferences_round_trip_with_quiet_hours(client, factory: Factory):
    await customer_with_news(factory, client)
    page = await client.get("/settings/notifications")
    assert checkbox(page, "ch.ORDER_READY.SMS") and not checkbox(page, "ch.ORDER_PREPARING.EMAIL")
    assert "ch.NEW_ORDER.EMAIL" not in page.text  # a farm's notification, not a customer's
    form = {
        "csrf_token": token_of(page),
        "ch.ORDER_READY.IN_APP": "on",
        "ch.ORDER_READY.PUSH": "on",
        "ch.ORDER_PREPARING.EMAIL": "on",
        "quiet_start": "21:30",
        "quiet_end": "07:00",
        "timezone": "Europe/Paris",
    }
    saved = await client.post("/settings/notifications", data=form)
    assert saved.status_code == 303
    page = await client.get(saved.headers["location"])
    assert "Saved." in page.text
    assert checkbox(page, "ch.ORDER_PREPARING.EMAIL")
    assert not checkbox(page, "ch.ORDER_READY.SMS") and checkbox(page, "ch.ORDER_READY.PUSH")
    assert 'value="21:30"' in page.text and 'value="07:00"' in page.text
    assert '<option value="Europe/Paris" selected>' in page.text
    api = await client.get("/api/me/notification-preferences")
    data = api.json()["data"]
    assert data["quietHours"] == {"start": "21:30", "end": "07:00"}
    assert data["timezone"] == "Europe/Paris"
    assert data["channels"]["ORDER_READY"]["SMS"] is False

    # Both times left empty: quiet hours off.
    off = await client.post(
        "/settings/notifications",
        data={**form, "csrf_token": token_of(page), "quiet_start": "", "quiet_end": ""},
    )
    assert off.status_code == 303
    api = await client.get("/api/me/notification-preferences")
    assert api.json()["data"]["quietHours"] is None


@pytest.mark.parametrize(
    ("start", "end", "zone", "field", "message"),
    [
        ("21:30", "", "UTC", "quiet_end", "Give both the start and the end"),
        ("25:00", "07:00", "UTC", "quiet_start", "24-hour time"),
        ("07:00", "07:00", "UTC", "quiet_end", "end at another time"),
        ("", "", "Mars/Olympus", "timezone", ""),
    ],
)
async def test_refused_preferences_say_why_next_to_the_field_and_change_nothing(
    client, factory: Factory, start: str, end: str, zone: str, field: str, message: str
):
    await customer_with_news(factory, client)
    page = await client.get("/settings/notifications")
    form = {
        "csrf_token": token_of(page),
        "ch.ORDER_PREPARING.EMAIL": "on",
        "quiet_start": start,
        "quiet_end": end,
        "timezone": zone,
    }
    refused = await client.post("/settings/notifications", data=form)
    assert refused.status_code == 422
    error = re.search(rf'<p class="field-error" id="f-{field}-error">([^<]+)</p>', refused.text)
    assert error and message in error.group(1), refused.text
    assert f'aria-describedby="f-{field}-error"' in refused.text or (
        f'aria-describedby="f-{field}-hint f-{field}-error"' in refused.text
    )
    assert checkbox(refused, "ch.ORDER_PREPARING.EMAIL")  # kept as ticked
    api = await client.get("/api/me/notification-preferences")
    assert api.json()["data"]["channels"]["ORDER_PREPARING"]["EMAIL"] is False


async def test_a_farmer_sees_the_farms_kinds_of_notification(client, factory: Factory):
    farmer = await factory.user(Role.FARMER)
    await sign_in(client, farmer.email)
    page = await client.get("/settings/notifications")
    assert checkbox(page, "ch.NEW_ORDER.EMAIL")
    assert "ch.ORDER_READY.SMS" not in page.text


async def push_count(factory: Factory) -> int:
    async with factory.db.transaction(write=False) as session:
        return int(await session.scalar(select(func.count()).select_from(PushSubscription)) or 0)


async def test_this_device_is_subscribed_and_unsubscribed_by_the_pages_routes(
    client, factory: Factory
):
    await customer_with_news(factory, client)
    page = await client.get("/settings/notifications")
    assert re.search(r'data-vapid-key="[A-Za-z0-9_-]{80,}"', page.text)
    headers = {"X-CSRF-Token": token_of(page), "Content-Type": "application/json"}

    without_token = await client.post("/settings/notifications/push", json=PUSH)
    assert without_token.status_code == 403
    stored = await client.post("/settings/notifications/push", json=PUSH, headers=headers)
    assert stored.status_code == 201, stored.text
    assert stored.json()["message"] == "Notifications are on for this device."
    assert await push_count(factory) == 1

    removed = await client.post("/settings/notifications/push/remove", json=PUSH, headers=headers)
    assert removed.status_code == 200
    assert await push_count(factory) == 0


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"endpoint": "https://fcm.googleapis.com/fcm/send/x"}',
        b'{"endpoint": "https://evil.example/push/123456", "keys": '
        b'{"p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4", "auth": "tBHItJI5svbpez7K"}}',
    ],
)
async def test_a_subscription_that_is_not_a_push_services_is_refused(
    client, factory: Factory, body: bytes
):
    await customer_with_news(factory, client)
    page = await client.get("/settings/notifications")
    headers = {"X-CSRF-Token": token_of(page), "Content-Type": "application/json"}
    refused = await client.post("/settings/notifications/push", content=body, headers=headers)
    assert refused.status_code == 422
    assert refused.json()["message"]
    assert await push_count(factory) == 0


async def test_the_service_worker_is_served_from_the_root_uncached(client):
    worker = await client.get("/sw.js")
    assert worker.status_code == 200
    assert worker.headers["content-type"].startswith("text/javascript")
    assert worker.headers["cache-control"] == "no-cache"
    assert worker.headers["service-worker-allowed"] == "/"
    assert "default-src 'self'" in worker.headers["content-security-policy"]
    assert "notificationclick" in worker.text
