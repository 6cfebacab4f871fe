"""The admin console in a real browser: the overview and its metrics for seeded orders, a
bulk change previewed then applied, a failed notification retried, a mailbox email read."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import pytest
from playwright.async_api import expect

from farmstand.accounts.roles import Role
from farmstand.notifications.channels.mailbox import timestamped_name
from farmstand.notifications.models import (
    NotificationChannel,
    NotificationStatus,
    NotificationType,
    OrderNotification,
)
from farmstand.orders.states import OrderStatus
from tests.web.conftest import Site, Watched, check_page, sign_in

pytestmark = pytest.mark.slow


async def test_an_admin_reads_the_metrics_and_changes_orders_in_bulk(
    site: Site, browsing: Watched, screenshots: Path
):
    farmer = await site.seed.user(Role.FARMER)
    farm = await site.seed.farm(farmer, name="Metric Meadow")
    await site.seed.order(farm=farm, status=OrderStatus.COMPLETED)
    await site.seed.order(farm=farm, status=OrderStatus.CANCELLED)
    await site.seed.order(farm=farm, status=OrderStatus.CONFIRMED)
    pending = await site.seed.order(farm=farm)
    completed = await site.seed.order(farm=farm, status=OrderStatus.COMPLETED)
    admin = await site.seed.user(Role.ADMIN, name="Ada Admin")
    page = await browsing.new_page()
    await sign_in(page, site, admin)

    # The overview, from the site's nav: the farm's row matches what was seeded.
    await page.get_by_role("link", name="Admin", exact=True).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Admin overview")
    row = page.locator('tr[data-farm="Metric Meadow"]')
    cells = row.locator("td")
    await expect(cells.nth(0)).to_have_text("5")  # placed
    await expect(cells.nth(1)).to_have_text("2")  # still open
    await expect(cells.nth(2)).to_have_text("66.7%")  # completed: 2 of 3 finished
    await expect(cells.nth(3)).to_have_text("33.3%")  # cancelled: 1 of 3
    await expect(cells.nth(4)).to_have_text("0.0%")  # both ready pickups were collected
    await check_page(page, "admin-overview", screenshots)

    # A period that ends before it starts is refused next to its field.
    await page.get_by_label("From").fill("2026-03-05")
    await page.get_by_label("To (included)").fill("2026-03-01")
    await page.get_by_role("button", name="Show").click()
    await expect(page.locator("#f-to-error")).to_have_text("The end must not be before the start.")
    await check_page(page, "admin-overview-refused", screenshots)

    # All orders: tick two, preview confirming them. One would be confirmed, the completed
    # one is refused with why.
    await page.get_by_role("link", name="All orders", exact=True).first.click()
    await page.get_by_label(f"Select order {pending.order_number}").check()
    await page.get_by_label(f"Select order {completed.order_number}").check()
    await page.get_by_label("Change the selected orders to").select_option("CONFIRMED")
    await page.get_by_role("button", name="Preview the change").click()
    await page.wait_for_url("**/admin/orders/bulk/preview")
    ok = page.locator(f'[data-order="{pending.order_number}"]')
    refused = page.locator(f'[data-order="{completed.order_number}"]')
    await expect(ok).to_contain_text("Would move to Confirmed")
    await expect(refused).to_contain_text("cannot go from COMPLETED to CONFIRMED")
    await check_page(page, "admin-bulk-preview", screenshots)

    # Confirmed: the per-order result.
    await page.get_by_label("Reason (optional)").fill("Confirmed for the market")
    await page.get_by_role("button", name="Confirm: change 1 order").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Orders changed")
    await expect(page.locator(f'[data-order="{pending.order_number}"]')).to_contain_text(
        "Changed to Confirmed"
    )
    await check_page(page, "admin-bulk-result", screenshots)


async def test_an_admin_retries_a_failed_notification_and_reads_the_mailbox(
    site: Site, browsing: Watched, screenshots: Path
):
    order = await site.seed.order()
    async with site.seed.db.transaction() as session:
        row = OrderNotification(
            order_id=order.id,
            type=NotificationType.ORDER_CONFIRMED,
            channel=NotificationChannel.SMS,
            title="t",
            message="m",
            meta={},
            status=NotificationStatus.FAILED,
            attempts=5,
            last_error="21211 invalid phone number",
        )
        session.add(row)
    mailbox = Path(site.server.env["FARMSTAND_DATA_DIR"]) / "mailbox"
    mailbox.mkdir(exist_ok=True)
    message = EmailMessage()
    message["To"] = "Carol <carol@example.test>"
    message["From"] = "farmstand@example.test"
    message["Subject"] = "Your order is ready for pickup"
    message["Date"] = "Tue, 03 Mar 2026 10:00:00 +0000"
    message.set_content("Your order is ready.\nCollect it at stall 12.")
    message.add_alternative("<p>Your order is <b>ready</b></p>", subtype="html")
    (mailbox / timestamped_name("browser-1", ".eml")).write_bytes(message.as_bytes())
    admin = await site.seed.user(Role.ADMIN)
    page = await browsing.new_page()
    await sign_in(page, site, admin)

    await page.goto(site.url + "/admin")
    await (
        page.get_by_role("navigation", name="Admin console")
        .get_by_role("link", name="Failed notifications")
        .click()
    )
    card = page.locator(f'[data-id="{row.id}"]')
    await expect(card).to_contain_text(f"Order {order.order_number}")
    await expect(card).to_contain_text("21211 invalid phone number")
    await check_page(page, "admin-notifications", screenshots)
    await card.get_by_role("button", name="Retry").click()
    await expect(page.get_by_role("status")).to_contain_text("queued again")
    await expect(page.locator(f'[data-id="{row.id}"]')).to_have_count(0)

    await page.get_by_role("link", name="Mailbox").click()
    await check_page(page, "admin-mailbox", screenshots)
    await page.get_by_role("link", name="Your order is ready for pickup").click()
    await expect(page.locator(".mail-text").first).to_contain_text("Collect it at stall 12.")
    await page.get_by_text("HTML part").click()
    await expect(page.locator("main")).to_contain_text("<b>ready</b>")  # as text, not markup
    await check_page(page, "admin-mail", screenshots)
