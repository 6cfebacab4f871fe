"""The farmer's board in a real browser, the customer's order page open beside it: a new
order arrives live, every step of a pickup and a delivery order, cancelling and refunding,
another farm's board refused, and confirming with JavaScript off."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from farmstand.accounts.models import User
from farmstand.accounts.roles import Role
from farmstand.orders.states import FulfillmentType, OrderStatus
from tests.web.conftest import Site, Watched, _watched, check_page, sign_in

pytestmark = pytest.mark.slow


@pytest.fixture
async def farm_side(browser: Browser) -> AsyncIterator[Watched]:
    """A second browser, the farmer's, beside the customer's (``browsing``)."""
    async for watched in _watched(browser):
        yield watched


async def open_board(page: Page, url: str) -> None:
    """Open the board and wait until its live stream is connected (the list reloaded)."""
    await page.goto(url)
    await expect(page.locator("#board")).to_have_attribute("data-live", "on")


def card(page: Page, number: str):
    return page.locator(".order-card", has_text=f"Order {number}")


async def step(board: Page, customer: Page, number: str, action: str, badge: str) -> None:
    """The farmer takes ``action`` on the card; the card and the customer's open order page
    both show ``badge`` without a reload."""
    button = card(board, number).get_by_role("button", name=action)
    await button.click()
    await expect(card(board, number).locator(".badge")).to_have_text(badge)
    await expect(customer.locator(".status-now .badge")).to_have_text(badge)


async def tick_all(board: Page, number: str) -> None:
    boxes = card(board, number).get_by_role("checkbox")
    for index in range(await boxes.count()):
        await boxes.nth(index).check()
        await expect(boxes.nth(index)).to_be_checked()


async def test_a_new_order_arrives_live_and_goes_through_every_step_with_both_pages_open(
    site: Site, browsing: Watched, farm_side: Watched, screenshots: Path
):
    farmer = await site.seed.user(Role.FARMER, name="Rosa Greenacre")
    farm = await site.seed.farm(farmer, name="Green Acre", pickup_location="Market stall 7")
    await site.seed.product(farm, name="Carrots", price="2.50", stock=50)
    await site.seed.product(farm, name="Eggs", price="6.00", stock=50)
    earlier = await site.seed.order(farm=farm, status=OrderStatus.CONFIRMED)
    customer = await site.seed.user(Role.CUSTOMER, name="Carol Buyer")

    board = await farm_side.new_page()
    await sign_in(board, site, farmer)
    await open_board(board, f"{site.url}/manage/{farm.id}")
    pending_tab = board.locator('#board-tabs a[data-tab="pending"] .count')
    await expect(pending_tab).to_have_text("0")
    await expect(card(board, earlier.order_number)).to_be_visible()
    await check_page(board, "farm-board", screenshots)

    # The customer orders from the shop: pickup.
    shop = await browsing.new_page()
    await sign_in(shop, site, customer)
    await shop.goto(f"{site.url}/farms/{farm.id}")
    await shop.get_by_label("Carrots").fill("2")
    await shop.get_by_label("Eggs").fill("1")
    await shop.get_by_role("button", name="Place order").click()
    await expect(shop).to_have_url(re.compile(r"notice=placed"))
    number = (await shop.get_by_role("heading", level=1).text_content() or "").split()[-1]

    # It appears at the top of the open board, highlighted, and Pending counts it.
    first = board.locator("#board-cards > .order-card").first
    await expect(first).to_contain_text(f"Order {number}")
    await expect(first).to_have_class(re.compile(r"\bcard-new\b"))
    await expect(first).to_contain_text("Carol Buyer")
    await expect(first).to_contain_text("$11.00")
    await expect(pending_tab).to_have_text("1")
    await expect(board.locator("#board-announcer")).to_contain_text(f"New order {number}")
    await board.evaluate("window.notReloaded = true")

    # Every step, the customer's page following live.
    await step(board, shop, number, "Confirm order", "Confirmed")
    await expect(pending_tab).to_have_text("0")
    await step(board, shop, number, "Start preparing", "Preparing")
    ready = card(board, number).get_by_role("button", name="Mark ready")
    await expect(ready).to_be_disabled()
    await expect(card(board, number)).to_contain_text("Tick every item as prepared first.")
    await tick_all(board, number)
    await check_page(board, "farm-board-preparing", screenshots)
    await step(board, shop, number, "Mark ready", "Ready for pickup")
    await step(board, shop, number, "Complete order", "Completed")
    await expect(board.locator('#board-tabs a[data-tab="completed-today"] .count')).to_have_text(
        "1"
    )
    assert await board.evaluate("window.notReloaded === true")

    # A delivery order, through its own path.
    delivery = await site.seed.order(
        farm=farm, customer=customer, fulfillment=FulfillmentType.DELIVERY
    )
    await open_board(board, f"{site.url}/manage/{farm.id}?tab=all")
    await shop.goto(f"{site.url}/orders/{delivery.id}")
    number = delivery.order_number
    await step(board, shop, number, "Confirm order", "Confirmed")
    await step(board, shop, number, "Start preparing", "Preparing")
    await tick_all(board, number)
    await step(board, shop, number, "Send out", "Out for delivery")
    await step(board, shop, number, "Complete order", "Completed")

    # The search finds it by part of its number, and the CSV link keeps the search.
    await board.get_by_label("Search by order number or customer").fill(number[3:6].lower())
    await board.get_by_role("button", name="Search").click()
    await expect(board.locator(".order-card")).to_have_count(1)
    csv_link = board.get_by_role("link", name="Export CSV")
    await expect(csv_link).to_have_attribute("href", re.compile(r"orders\.csv\?q="))


async def test_the_farm_cancels_with_a_reason_and_refunds_seen_by_the_customer(
    site: Site, browsing: Watched, farm_side: Watched, screenshots: Path
):
    farmer = await site.seed.user(Role.FARMER)
    farm = await site.seed.farm(farmer, name="Hill Farm", timezone="Europe/Paris")
    customer = await site.seed.user(Role.CUSTOMER)
    order = await site.seed.order(farm=farm, customer=customer, status=OrderStatus.CONFIRMED)

    mine = await browsing.new_page()
    await sign_in(mine, site, customer)
    async with mine.expect_response(lambda r: r.url.endswith(f"/orders/{order.id}/live")):
        await mine.goto(f"{site.url}/orders/{order.id}")

    page = await farm_side.new_page()
    await sign_in(page, site, farmer)
    await page.goto(f"{site.url}/orders/{order.id}")
    await expect(page.get_by_role("heading", name="For the farm")).to_be_visible()
    await check_page(page, "farm-order", screenshots)

    # No reason: refused next to the field.
    await page.get_by_text("Cancel this order").click()
    reason = page.get_by_label("Why is the farm cancelling?")
    await reason.evaluate("field => field.removeAttribute('required')")
    await page.get_by_role("button", name="Cancel order").click()
    await expect(page.locator("#cancel-reason-error")).to_contain_text("Give a reason")
    await expect(page.get_by_label("Why is the farm cancelling?")).to_have_attribute(
        "aria-invalid", "true"
    )

    await page.get_by_label("Why is the farm cancelling?").fill("Hail flattened the field")
    await page.get_by_role("button", name="Cancel order").click()
    await expect(page.locator(".status-now .badge")).to_have_text("Cancelled")
    await expect(mine.locator(".status-now .badge")).to_have_text("Cancelled")
    await expect(mine.locator(".step-stop")).to_contain_text("Hail flattened the field")

    await page.get_by_text("Refund this order").click()
    await page.get_by_label("Reason for the refund").fill("Refunded in full")
    await page.get_by_role("button", name="Refund order").click()
    await expect(page.locator(".status-now .badge")).to_have_text("Refunded")
    await expect(page.locator("table.history")).to_contain_text("Refunded in full")
    await expect(page.locator("table.delivery-log")).to_contain_text("Order cancelled")
    await expect(mine.locator(".status-now .badge")).to_have_text("Refunded")
    await expect(mine.locator(".refund-done")).to_be_visible()
    await check_page(page, "farm-order-refunded", screenshots)


async def test_the_customer_cancels_and_the_open_board_shows_it_then_the_refund_reaches_them(
    site: Site, browsing: Watched, farm_side: Watched
):
    farmer = await site.seed.user(Role.FARMER)
    farm = await site.seed.farm(farmer, name="Brook Farm")
    customer = await site.seed.user(Role.CUSTOMER)
    order = await site.seed.order(farm=farm, customer=customer)  # pending: theirs to cancel

    board = await farm_side.new_page()
    await sign_in(board, site, farmer)
    await open_board(board, f"{site.url}/manage/{farm.id}")
    cancelled_tab = board.locator('#board-tabs [data-tab="cancelled"] .count')
    await expect(cancelled_tab).to_have_text("0")

    mine = await browsing.new_page()
    await sign_in(mine, site, customer)
    await mine.goto(f"{site.url}/orders/{order.id}")
    await mine.get_by_text("Cancel this order").click()
    await mine.get_by_label("Why are you cancelling?").fill("Away that weekend")
    await mine.get_by_role("button", name="Cancel order").click()
    await expect(mine.locator(".status-now .badge")).to_have_text("Cancelled")

    # The farmer's open board: the card and the counts change without a reload.
    await expect(card(board, order.order_number).locator(".badge")).to_have_text("Cancelled")
    await expect(cancelled_tab).to_have_text("1")

    # The farm refunds it from the order's page; the customer's open page shows it.
    await card(board, order.order_number).get_by_role("link").first.click()
    await board.get_by_text("Refund this order").click()
    await board.get_by_label("Reason for the refund").fill("Refunded in full")
    await board.get_by_role("button", name="Refund order").click()
    await expect(board.locator("table.history")).to_contain_text("Away that weekend")
    await expect(mine.locator(".status-now .badge")).to_have_text("Refunded")
    await expect(mine.locator(".refund-done")).to_be_visible()


async def test_a_farmer_cannot_open_another_farms_board(
    site: Site, farm_side: Watched, screenshots: Path
):
    farmer = await site.seed.user(Role.FARMER)
    await site.seed.farm(farmer)
    other = await site.seed.farm(name="Not Yours Farm")
    page = await farm_side.new_page()
    await sign_in(page, site, farmer)
    reply = await page.goto(f"{site.url}/manage/{other.id}")
    assert reply is not None and reply.status == 404
    await expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    await expect(page.locator("main")).not_to_contain_text("Not Yours Farm")


async def test_a_farmer_without_javascript_confirms_an_order(
    site: Site, browsing_without_js: Watched, screenshots: Path
):
    farmer = await site.seed.user(Role.FARMER)
    farm = await site.seed.farm(farmer)
    order = await site.seed.order(farm=farm)
    page = await browsing_without_js.new_page()
    await sign_in(page, site, farmer)
    await page.goto(f"{site.url}/manage/{farm.id}?tab=pending")
    await card(page, order.order_number).get_by_role("button", name="Confirm order").click()
    await expect(page).to_have_url(re.compile(rf"/manage/{farm.id}\?tab=pending#order-"))
    await expect(page.locator(".order-card")).to_have_count(0)  # no longer pending
    await page.get_by_role("link", name=re.compile("^Confirmed")).click()
    await expect(card(page, order.order_number).locator(".badge")).to_have_text("Confirmed")
    # Ticking an item works with its own Save button.
    await card(page, order.order_number).get_by_role("button", name="Start preparing").click()
    await page.goto(f"{site.url}/manage/{farm.id}?tab=preparing")
    await card(page, order.order_number).get_by_role("checkbox").check()
    await card(page, order.order_number).get_by_role("button", name=re.compile("^Save")).click()
    await expect(card(page, order.order_number).get_by_role("checkbox")).to_be_checked()
    await expect(
        card(page, order.order_number).get_by_role("button", name="Mark ready")
    ).to_be_enabled()
    await check_page(page, "farm-board-no-js", screenshots, axe=False)


async def test_the_admin_sees_every_farms_orders(site: Site, farm_side: Watched, screenshots: Path):
    await site.seed.order(farm=await site.seed.farm(name="East Farm"))
    await site.seed.order(farm=await site.seed.farm(name="West Farm"), status=OrderStatus.PREPARING)
    admin: User = await site.seed.user(Role.ADMIN)
    page = await farm_side.new_page()
    await sign_in(page, site, admin)
    await page.goto(f"{site.url}/admin/orders")
    await expect(page.get_by_role("heading", level=1)).to_have_text("All orders")
    await expect(page.locator(".order-card")).not_to_have_count(0)
    await check_page(page, "admin-orders", screenshots)
