"""Notifications, preferences, this device and the account in a real browser: the bell and
My orders follow the farm's changes live, preferences round-trip, the service worker
registers and a subscription is kept, and signing out ends the live updates of every page."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.async_api import Locator, Page, expect
from sqlalchemy import select

from farmstand.accounts.roles import Role
from farmstand.notifications.models import PushSubscription
from tests.notifications.test_api import PUSH
from tests.web.conftest import Site, Watched, check_page, sign_in

pytestmark = pytest.mark.slow


def bell(page: Page) -> Locator:
    return page.locator("header a.bell")


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_the_farm_confirms_and_the_customers_pages_and_bell_update_without_a_reload(
    site: Site, browsing: Watched, screenshots: Path
):
    farmer = await site.seed.user(Role.FARMER)
    farm = await site.seed.farm(farmer, name="Bell Farm", pickup_location="Market stall 5")
    customer = await site.seed.user(Role.CUSTOMER)
    order = await site.seed.order(customer=customer, farm=farm)
    order_page = await browsing.new_page()
    await sign_in(order_page, site, customer)

    # Two pages open: the order (its own stream) and My orders (the customer's stream).
    async with order_page.expect_response(lambda r: r.url.endswith(f"/orders/{order.id}/live")):
        await order_page.goto(f"{site.url}/orders/{order.id}")
    await expect(bell(order_page)).to_have_attribute("aria-label", "Notifications")
    orders_page = await browsing.new_page()
    streams: list[str] = []
    orders_page.on("request", lambda r: streams.append(r.url) if "/api/" in r.url else None)
    await orders_page.goto(f"{site.url}/orders")
    row = orders_page.locator(f"#order-{order.id}")
    await expect(row.locator(".badge")).to_have_text("Awaiting confirmation")
    await until(lambda: len(streams) == 1)
    for page in (order_page, orders_page):
        await page.evaluate("window.notReloaded = true")

    reply = await site.api(
        farmer, "PUT", f"/api/orders/{order.id}/status", json={"status": "CONFIRMED"}
    )
    assert reply.status_code == 200, reply.text

    # The order page: its timeline and its bell, from its one stream.
    await expect(order_page.locator(".status-now .badge")).to_have_text("Confirmed")
    await expect(bell(order_page)).to_have_attribute("aria-label", "Notifications, 1 unread")
    await expect(bell(order_page).locator(".bell-count")).to_have_text("1")
    # My orders: the row's badge and next step, and the bell.
    await expect(row.locator(".badge")).to_have_text("Confirmed")
    await expect(row.locator(".next-step")).not_to_contain_text("confirm")
    await expect(bell(orders_page)).to_have_attribute("aria-label", "Notifications, 1 unread")
    for page in (order_page, orders_page):
        assert await page.evaluate("window.notReloaded === true")
    assert streams == [f"{site.url}/api/events"]  # one stream for the page, never two
    await check_page(orders_page, "my-orders-live", screenshots)

    # The list: the unread one opens its order and is read from then on.
    await bell(orders_page).click()
    await expect(orders_page.get_by_role("heading", level=1)).to_have_text("Notifications")
    item = orders_page.locator(".notification.unread")
    await expect(item).to_have_count(1)
    await check_page(orders_page, "notifications", screenshots)
    await item.get_by_role("button").click()
    await expect(orders_page).to_have_url(f"{site.url}/orders/{order.id}")
    await expect(bell(orders_page)).to_have_attribute("aria-label", "Notifications")
    await orders_page.goto(f"{site.url}/notifications")
    await expect(orders_page.locator(".notification.unread")).to_have_count(0)
    await expect(orders_page.get_by_role("button", name="Mark all read")).to_have_count(0)


async def test_preferences_this_device_and_the_account(
    site: Site, browsing: Watched, screenshots: Path
):
    customer = await site.seed.user(Role.CUSTOMER, name="Pia Prefs")
    page = await browsing.new_page()
    await sign_in(page, site, customer)
    await page.goto(f"{site.url}/notifications")
    await expect(page.locator(".empty")).to_contain_text("No notifications yet.")
    await check_page(page, "notifications-empty", screenshots)

    # Preferences: a refusal next to its field, then quiet hours saved and shown again.
    await page.get_by_role("link", name="Notification preferences").click()
    await page.locator("#ch-ORDER_PREPARING-EMAIL").check()
    await page.get_by_label("From").fill("21:30")
    await page.get_by_role("button", name="Save preferences").click()
    await expect(page.locator("#f-quiet_end-error")).to_contain_text("Give both")
    await expect(page.locator("#ch-ORDER_PREPARING-EMAIL")).to_be_checked()
    await page.get_by_label("Until").fill("07:00")
    await page.get_by_label("Time zone").select_option("Europe/Paris")
    await page.get_by_role("button", name="Save preferences").click()
    await expect(page.get_by_role("status").first).to_have_text("Saved.")
    await expect(page.get_by_label("From")).to_have_value("21:30")
    await expect(page.get_by_label("Until")).to_have_value("07:00")
    await expect(page.get_by_label("Time zone")).to_have_value("Europe/Paris")
    await expect(page.locator("#ch-ORDER_PREPARING-EMAIL")).to_be_checked()

    # This device: the service worker registers for the whole site, and the page offers push.
    await expect(page.locator("#push-status")).to_have_text(
        "Notifications are off for this device."
    )
    await expect(
        page.get_by_role("button", name="Enable notifications on this device")
    ).to_be_visible()
    await expect(page.get_by_role("button", name="Stop on this device")).to_be_hidden()
    scope = await page.evaluate(
        "navigator.serviceWorker.getRegistration('/').then(r => r && r.active && r.scope)"
    )
    assert scope == f"{site.url}/"
    await check_page(page, "notification-preferences", screenshots)
    # Headless Chromium reaches no push service: the subscription a browser would make goes
    # through the page's own route, with its CSRF token, as push.js sends it (CSP: 'self').
    status = await page.evaluate(
        """async (subscription) => {
            const csrf = document.getElementById("push").dataset.csrf;
            const reply = await fetch("/settings/notifications/push", {
                method: "POST", credentials: "same-origin",
                headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
                body: JSON.stringify(subscription)});
            return reply.status;
        }""",
        PUSH,
    )
    assert status == 201
    async with site.seed.db.transaction(write=False) as session:
        stored = await session.scalar(
            select(PushSubscription).where(PushSubscription.user_id == customer.id)
        )
    assert stored is not None and stored.endpoint == PUSH["endpoint"]

    # The account: a refusal next to its field, then the name changed everywhere.
    await page.get_by_role("link", name="Pia Prefs").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Your account")
    await check_page(page, "account", screenshots)
    await page.get_by_label("Current password").fill("not it at all")
    await page.get_by_label("New password", exact=True).fill("a quiet barn at dawn")
    await page.get_by_label("New password again").fill("a quiet barn at dawn")
    await page.get_by_role("button", name="Change password").click()
    await expect(page.locator("#f-current_password-error")).to_have_text(
        "The current password is not right."
    )
    await check_page(page, "account-refused", screenshots)
    await page.get_by_label("Your name").fill("Pia Renamed")
    await page.get_by_role("button", name="Save details").click()
    await expect(page.get_by_role("status").first).to_have_text("Your details are saved.")
    await expect(page.locator("header .who")).to_have_text("Pia Renamed")


async def test_signing_out_ends_the_live_updates_of_every_open_page(
    site: Site, browsing: Watched, screenshots: Path
):
    customer = await site.seed.user(Role.CUSTOMER)
    order = await site.seed.order(customer=customer)
    first = await browsing.new_page()
    await sign_in(first, site, customer)
    stream_requests: list[str] = []

    def watch(page: Page) -> None:
        page.on(
            "request",
            lambda r: stream_requests.append(r.url) if r.resource_type == "eventsource" else None,
        )

    # The order page's stream is open once its CONNECTED frame has refreshed the timeline;
    # watching from then on (not from sign-in, whose My orders page may still be starting its
    # own stream when the test moves on) counts exactly the requests that follow.
    async with first.expect_response(lambda r: r.url.endswith(f"/orders/{order.id}/live")):
        await first.goto(f"{site.url}/orders/{order.id}")
    watch(first)
    second = await browsing.new_page()
    watch(second)
    await second.goto(f"{site.url}/notifications")
    await until(lambda: len(stream_requests) == 1)

    # Signed out in a third page.
    third = await browsing.new_page()
    await third.goto(f"{site.url}/orders")
    await third.get_by_role("button", name="Sign out").click()
    await expect(third).to_have_url(re.compile(r"/login\?signed_out=1"))

    # Both open pages say so, with a way back to where they were, and stop their streams.
    for page, path in ((first, f"/orders/{order.id}"), (second, "/notifications")):
        banner = page.locator("#live-ended")
        await expect(banner).to_be_visible()
        await expect(banner).to_contain_text("You were signed out")
        link = banner.get_by_role("link", name="Sign in again")
        await expect(link).to_have_attribute("href", "/login?next=" + path.replace("/", "%2F"))
    await check_page(second, "signed-out-live-ended", screenshots)
    seen = len(stream_requests)
    await first.wait_for_timeout(4500)  # longer than the stream's retry hint (3 s)
    assert len(stream_requests) == seen == 1  # the second page's, before signing out

    # Signed out, the verification email can be asked for again: the same answer for anyone.
    await third.goto(f"{site.url}/register/resend")
    await check_page(third, "register-resend", screenshots)
    await third.get_by_label("Email").fill("someone@example.com")
    await third.get_by_role("button", name="Send the link again").click()
    await expect(third.get_by_role("status")).to_contain_text(
        "If a registration for this email is waiting"
    )
