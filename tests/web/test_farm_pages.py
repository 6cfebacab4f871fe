"""The farm side's products, settings, pick list and packing slips in a real browser, with a
customer's shop open beside the farmer's pages where the change is theirs to see."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from farmstand.accounts.roles import Role
from farmstand.orders.states import FulfillmentType, OrderStatus
from tests.web.conftest import Site, Watched, _watched, check_page, sign_in

pytestmark = pytest.mark.slow


@pytest.fixture
async def customer_browsing(browser: Browser) -> AsyncIterator[Watched]:
    """A second browser context: the customer's, beside the farmer's."""
    async for watched in _watched(browser):
        yield watched


async def test_the_farmer_adds_a_product_reprices_it_and_takes_it_off_sale(
    site: Site, browsing: Watched, customer_browsing: Watched, screenshots: Path
):
    farmer = await site.seed.user(Role.FARMER)
    farm = await site.seed.farm(farmer, name="Hillside Produce", pickup_location="Stall 7")
    await site.seed.product(farm, name="Eggs", price="6.00", stock=12)
    customer = await site.seed.user(Role.CUSTOMER)
    page = await browsing.new_page()
    await sign_in(page, site, farmer)
    shop = await customer_browsing.new_page()
    await sign_in(shop, site, customer)

    # From the farm's frame to its products.
    await page.goto(f"{site.url}/manage/{farm.id}/products")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Products")
    await expect(page.locator(".farm-nav [aria-current=page]")).to_have_text("Products")

    # A price of 0 is refused next to the price; nothing is added.
    await page.get_by_label("Name", exact=True).fill("Heirloom tomatoes")
    await page.get_by_label("Unit", exact=True).fill("lb")
    await page.get_by_label("Price ($ per unit)").fill("0")
    await page.get_by_label("Stock", exact=True).fill("12")
    await page.get_by_role("button", name="Add product").click()
    await expect(page.locator("#new-price-error")).to_contain_text("above 0")
    await expect(page.get_by_label("Price ($ per unit)")).to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_label("Name", exact=True)).to_have_value("Heirloom tomatoes")
    await check_page(page, "farm-products-refused", screenshots)

    await page.get_by_label("Price ($ per unit)").fill("4.50")
    await page.get_by_role("button", name="Add product").click()
    await expect(page.get_by_role("status")).to_have_text("Heirloom tomatoes is added and on sale.")
    await shop.goto(f"{site.url}/farms/{farm.id}")
    await expect(shop.locator("main")).to_contain_text("$4.50 / lb")

    # New price and stock: saved, and the shop shows them.
    await page.get_by_label("Price of Heirloom tomatoes ($ per lb)").fill("5.25")
    await page.get_by_label("Stock of Heirloom tomatoes (lb)").fill("20")
    await page.get_by_role("button", name="Save Heirloom tomatoes").click()
    await expect(page.get_by_role("status")).to_have_text("Heirloom tomatoes is saved.")
    card = page.locator(".product-card", has_text="Heirloom tomatoes")
    await expect(card).to_contain_text("$5.25 / lb · 20 lb in stock")
    await shop.reload()
    await expect(shop.locator("main")).to_contain_text("$5.25 / lb")
    await expect(shop.get_by_label("Heirloom tomatoes")).to_be_visible()

    # The customer chooses some while the farmer takes them off sale: the order is refused,
    # naming them, and the shop no longer shows them.
    await shop.get_by_label("Heirloom tomatoes").fill("2")
    await page.get_by_role("button", name="Take off sale Heirloom tomatoes").click()
    await expect(page.get_by_role("status")).to_have_text(
        "Heirloom tomatoes is off sale: customers no longer see it."
    )
    await expect(card.locator(".badge")).to_have_text("Off sale")
    await check_page(page, "farm-products", screenshots)
    await shop.get_by_role("button", name="Place order").click()
    await expect(shop.get_by_role("alert")).to_contain_text("No longer on sale: Heirloom tomatoes.")
    await expect(shop.locator("main")).not_to_contain_text("$5.25")
    await expect(shop.get_by_label("Eggs")).to_be_visible()

    # Back on sale: back in the shop.
    await page.get_by_role("button", name="Put back on sale Heirloom tomatoes").click()
    await expect(card.locator(".badge")).to_have_text("On sale")
    await shop.goto(f"{site.url}/farms/{farm.id}")
    await expect(shop.get_by_label("Heirloom tomatoes")).to_be_visible()


async def test_the_farmer_changes_the_pickup_place_and_time_zone(
    site: Site, browsing: Watched, customer_browsing: Watched, screenshots: Path
):
    farmer = await site.seed.user(Role.FARMER)
    farm = await site.seed.farm(farmer, name="Valley Greens", pickup_location="Stall 2")
    await site.seed.product(farm, name="Kale")
    page = await browsing.new_page()
    await sign_in(page, site, farmer)

    await page.goto(f"{site.url}/manage/{farm.id}/settings")
    await expect(page.get_by_label("Time zone")).to_have_value("UTC")
    await page.get_by_label("Pickup place").fill("Barn door, 12 Mill Lane")
    await page.get_by_label("Time zone").select_option("America/Chicago")
    await page.get_by_label("Open orders per customer").fill("0")
    await page.get_by_role("button", name="Save settings").click()

    # Refused next to the limit; the rest as typed, nothing saved.
    await expect(page.locator("#f-maxOpenOrders-error")).to_have_text(
        "Enter a whole number from 1 to 1,000."
    )
    await expect(page.get_by_label("Pickup place")).to_have_value("Barn door, 12 Mill Lane")
    await expect(page.get_by_label("Time zone")).to_have_value("America/Chicago")
    await check_page(page, "farm-settings-refused", screenshots)

    await page.get_by_label("Open orders per customer").fill("4")
    await page.get_by_role("button", name="Save settings").click()
    await expect(page).to_have_url(re.compile(r"notice=saved"))
    await expect(page.get_by_role("status")).to_have_text("Saved.")
    await expect(page.get_by_label("Time zone")).to_have_value("America/Chicago")
    await check_page(page, "farm-settings", screenshots)

    customer = await site.seed.user(Role.CUSTOMER)
    shop = await customer_browsing.new_page()
    await sign_in(shop, site, customer)
    await shop.goto(f"{site.url}/farms/{farm.id}")
    await expect(shop.locator("main")).to_contain_text("Pickup at Barn door, 12 Mill Lane")


async def test_the_pick_list_sums_the_orders_and_the_slips_print_one_per_order(
    site: Site, browsing: Watched, screenshots: Path
):
    farmer = await site.seed.user(Role.FARMER)
    farm = await site.seed.farm(farmer, name="Orchard Row", pickup_location="Stall 5")
    apples = await site.seed.product(farm, name="Apples", price="3.00")
    honey = await site.seed.product(farm, name="Honey", price="9.50")
    alice = await site.seed.user(Role.CUSTOMER, name="Alice Picker")
    bob = await site.seed.user(Role.CUSTOMER, name="Bob Packer")
    first = await site.seed.order(
        farm=farm, customer=alice, products=[apples], quantity=3, status=OrderStatus.CONFIRMED
    )
    second = await site.seed.order(
        farm=farm,
        customer=bob,
        products=[apples, honey],
        quantity=2,
        status=OrderStatus.PREPARING,
        fulfillment=FulfillmentType.DELIVERY,
    )
    waiting = await site.seed.order(farm=farm, products=[apples], quantity=9)  # pending
    page = await browsing.new_page()
    await sign_in(page, site, farmer)

    # 3 + 2 apples over two orders, 2 jars of honey in one; the pending order is not counted.
    await page.goto(f"{site.url}/manage/{farm.id}/pick-list")
    rows = page.locator("table.pick-list tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(0)).to_have_text(re.compile(r"Apples\s*5 lb\s*0\s*5 lb\s*2"))
    await expect(rows.nth(1)).to_have_text(re.compile(r"Honey\s*2 lb\s*0\s*2 lb\s*1"))
    await expect(page.get_by_role("button", name="Print")).to_be_visible()
    await check_page(page, "pick-list", screenshots)

    # Printed, only the list: no site header, farm navigation or buttons.
    await page.emulate_media(media="print")
    await expect(page.locator(".site-header")).to_be_hidden()
    await expect(page.locator(".farm-nav")).to_be_hidden()
    await expect(page.get_by_role("button", name="Print")).to_be_hidden()
    await expect(rows.nth(0)).to_be_visible()
    await page.emulate_media(media="screen")

    # None is estimated ready today: the filter says so.
    await page.get_by_role("link", name="Estimated ready today").click()
    await expect(page.locator(".empty")).to_contain_text("Nothing estimated ready today")

    # A slip per order to pack, with its customer, where it goes and its items.
    await page.get_by_role("link", name="Packing slips").first.click()
    slips = page.locator("article.slip")
    await expect(slips).to_have_count(2)
    await expect(slips.nth(0)).to_contain_text(f"Order {first.order_number}")
    await expect(slips.nth(0)).to_contain_text("Alice Picker")
    await expect(slips.nth(0)).to_contain_text("Stall 5")
    await expect(slips.nth(0)).to_contain_text("$9.00")
    await expect(slips.nth(1)).to_contain_text(f"Order {second.order_number}")
    await expect(slips.nth(1)).to_contain_text("Bob Packer")
    await expect(slips.nth(1)).to_contain_text("1 Main St")
    await expect(slips.nth(1)).to_contain_text("Honey")
    await expect(page.locator("main")).not_to_contain_text(waiting.order_number)
    await check_page(page, "packing-slips", screenshots)
