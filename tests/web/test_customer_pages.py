"""The customer's pages in a real browser: signing in and out, ordering from a farm's shop,
the order page updating live, and cancelling with JavaScript off."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import expect

from farmstand.accounts.roles import Role
from farmstand.orders.states import FulfillmentType, OrderStatus
from tests.web.conftest import Site, Watched, check_page, sign_in

pytestmark = pytest.mark.slow


async def test_a_customer_signs_in_and_out(site: Site, browsing: Watched, screenshots: Path):
    customer = await site.seed.user(Role.CUSTOMER, name="Carol Sign-In")
    page = await browsing.new_page()

    # Signed out, the front door is the sign-in page.
    await page.goto(site.url + "/")
    await expect(page).to_have_url(site.url + "/login")
    await check_page(page, "login", screenshots)

    # A wrong password is refused in place, the email kept.
    await page.get_by_label("Email").fill(customer.email)
    await page.get_by_label("Password").fill("not my password at all")
    await page.locator("main").get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("password")
    await expect(page.get_by_label("Email")).to_have_value(customer.email)
    await check_page(page, "login-refused", screenshots)

    # The right one opens My orders (empty, saying what to do).
    await page.get_by_label("Password").fill("correct horse battery")
    await page.locator("main").get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(site.url + "/orders")
    await expect(page.get_by_role("heading", level=1)).to_have_text("My orders")
    await expect(page.locator("main")).to_contain_text("You have no orders yet.")
    await check_page(page, "my-orders-empty", screenshots)

    # Signing out ends the session: pages send us to sign in, and back after it.
    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(site.url + "/login?signed_out=1")
    await expect(page.get_by_role("status")).to_have_text("You are signed out.")
    await page.goto(site.url + "/orders")
    await expect(page).to_have_url(site.url + "/login?next=/orders")
    await sign_in(page, site, customer, start="/login?next=/orders")
    await expect(page).to_have_url(site.url + "/orders")


async def test_a_customer_orders_from_a_shop_and_sees_stock_run_out_in_place(
    site: Site, browsing: Watched, screenshots: Path
):
    farmer = await site.seed.user(Role.FARMER)
    farm = await site.seed.farm(
        farmer, name="Green Acre Shop", pickup_location="Saturday Market, stall 12"
    )
    await site.seed.product(farm, name="Carrots", price="2.50", stock=5)
    eggs = await site.seed.product(farm, name="Eggs", price="6.00", stock=1)
    customer = await site.seed.user(Role.CUSTOMER)
    page = await browsing.new_page()
    await sign_in(page, site, customer)

    # From the list of farms to the farm's shop.
    await page.get_by_role("link", name="Farms", exact=True).click()
    await check_page(page, "farms", screenshots)
    await page.get_by_role("link", name="Green Acre Shop").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Green Acre Shop")
    await expect(page.locator("main")).to_contain_text("Pickup at Saturday Market, stall 12")
    await expect(page.locator("main")).to_contain_text("$2.50 / lb")
    await check_page(page, "shop", screenshots)

    # Delivery without an address: each missing part is pointed out next to its field.
    await page.get_by_label("Carrots").fill("2")
    await page.get_by_label("Delivery to my address").check()
    await page.get_by_role("button", name="Place order").click()
    await expect(page.locator("#f-line1-error")).to_have_text(
        "Enter the street address for the delivery."
    )
    await expect(page.get_by_label("Carrots")).to_have_value("2")

    # Pickup: placed, and on the order's page.
    await page.get_by_label("Pickup at Saturday Market, stall 12").check()
    await page.get_by_role("button", name="Place order").click()
    await expect(page).to_have_url(re.compile(r"notice=placed"))
    await expect(page.get_by_role("status").first).to_contain_text("Thank you!")
    await expect(page.locator(".status-now .badge")).to_have_text("Awaiting confirmation")
    await expect(page.locator("table.items")).to_contain_text("Carrots")
    await expect(page.locator("table.items")).to_contain_text("$5.00")

    # Someone else buys the last eggs while we choose: the refusal is shown by the eggs.
    await page.goto(f"{site.url}/farms/{farm.id}")
    await page.get_by_label("Eggs").fill("1")
    await site.seed.order(farm=farm, products=[eggs])
    await page.get_by_role("button", name="Place order").click()
    await expect(page.locator(f"#qty-{eggs.id}-error")).to_have_text(
        "Not enough in stock: sold out."
    )
    await expect(page.get_by_role("alert")).to_contain_text("ran out")
    await expect(page.locator(f"#qty-{eggs.id}-stock")).to_have_text("Sold out")
    await check_page(page, "shop-out-of-stock", screenshots)


async def test_the_open_order_page_updates_live_when_the_farm_confirms(
    site: Site, browsing: Watched, screenshots: Path
):
    farmer = await site.seed.user(Role.FARMER)
    farm = await site.seed.farm(farmer, pickup_location="Market stall 3")
    customer = await site.seed.user(Role.CUSTOMER)
    order = await site.seed.order(customer=customer, farm=farm)
    page = await browsing.new_page()
    await sign_in(page, site, customer)

    # The page is open and its stream connected (the fresh stream refreshes the timeline).
    async with page.expect_response(lambda r: r.url.endswith(f"/orders/{order.id}/live")):
        await page.goto(f"{site.url}/orders/{order.id}")
    await expect(page.locator(".status-now .badge")).to_have_text("Awaiting confirmation")
    await expect(page.locator(".step-current .step-label")).to_contain_text("Order placed")
    await check_page(page, "order-pending", screenshots)
    await page.evaluate("window.notReloaded = true")

    # The farmer confirms (through the API).
    reply = await site.api(
        farmer, "PUT", f"/api/orders/{order.id}/status", json={"status": "CONFIRMED"}
    )
    assert reply.status_code == 200, reply.text

    # Without a reload: the new timeline, and the change said in the live region.
    announcer = page.locator("#live-announcer")
    await expect(announcer).to_have_attribute("aria-live", "polite")
    await expect(announcer).to_contain_text(f"Order {order.order_number} is now Confirmed.")
    await expect(page.locator(".status-now .badge")).to_have_text("Confirmed")
    await expect(page.locator(".step-current .step-label")).to_contain_text("Confirmed")
    await expect(page.locator(".step-done .step-label")).to_contain_text("Order placed")
    await expect(page.locator("details.cancel")).to_have_count(0)  # too late to cancel here
    assert await page.evaluate("window.notReloaded === true")
    await check_page(page, "order-confirmed-live", screenshots)


async def test_a_customer_without_javascript_cancels_an_order(
    site: Site, browsing_without_js: Watched, screenshots: Path
):
    farm = await site.seed.farm(pickup_location="Market stall 4")
    customer = await site.seed.user(Role.CUSTOMER)
    order = await site.seed.order(customer=customer, farm=farm)
    page = await browsing_without_js.new_page()
    await sign_in(page, site, customer)
    await page.goto(f"{site.url}/orders/{order.id}")

    # Asked for the reason first: its absence is pointed out next to the field.
    await page.get_by_text("Cancel this order").click()
    await page.get_by_role("button", name="Cancel order").click()
    await expect(page.locator("#cancel-reason-error")).to_have_text(
        "Tell the farm why you are cancelling."
    )

    await page.get_by_label("Why are you cancelling?").fill("Plans changed")
    await page.get_by_role("button", name="Cancel order").click()
    await expect(page).to_have_url(re.compile(r"notice=cancelled"))
    await expect(page.locator(".status-now .badge")).to_have_text("Cancelled")
    stop = page.locator(".step-stop")
    await expect(stop).to_contain_text("Cancelled")
    await expect(stop).to_contain_text("Reason: Plans changed")
    await expect(stop).to_contain_text("Refund pending")
    await expect(page.locator(".step-skipped")).to_have_count(4)
    await check_page(page, "order-cancelled-without-js", screenshots, axe=False)


async def test_every_other_page_reads_well_on_a_phone_and_a_desktop(
    site: Site, browsing: Watched, screenshots: Path
):
    """The pages the tests above do not visit: sign-up, orders in each state, the farm side's
    order page, and an error page."""
    page = await browsing.new_page()
    await page.goto(site.url + "/register")
    await check_page(page, "register", screenshots)
    await page.get_by_role("button", name="Email me the link").click()
    await expect(page.locator("#f-email-error")).to_be_visible()
    await check_page(page, "register-refused", screenshots)
    await page.get_by_label("Your name").fill("Nina New")
    await page.get_by_label("Email").fill("nina.new@example.com")
    await page.get_by_label("Password").fill("a long and quiet meadow")
    await page.get_by_role("button", name="Email me the link").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")
    await check_page(page, "register-sent", screenshots)

    farmer = await site.seed.user(Role.FARMER, name="Rosa Farmer")
    farm = await site.seed.farm(farmer, name="Tour Farm", pickup_location="Stall 9")
    customer = await site.seed.user(Role.CUSTOMER)
    ready = await site.seed.order(customer=customer, farm=farm, status=OrderStatus.READY_FOR_PICKUP)
    await site.seed.order(customer=customer, farm=farm, status=OrderStatus.COMPLETED)
    refunded = await site.seed.order(customer=customer, farm=farm, status=OrderStatus.REFUNDED)
    shipped = await site.seed.order(
        customer=customer,
        farm=farm,
        status=OrderStatus.OUT_FOR_DELIVERY,
        fulfillment=FulfillmentType.SHIPPING,
    )
    await sign_in(page, site, customer)
    await check_page(page, "my-orders", screenshots)
    await expect(page.get_by_role("heading", name="Current")).to_be_visible()
    await page.goto(f"{site.url}/orders/{shipped.id}")
    await expect(page.locator(".step-current .step-label")).to_contain_text("Shipped")
    await expect(page.locator(".step-current")).to_contain_text("tracking number 1Z999")
    await check_page(page, "order-shipped", screenshots)

    await page.goto(f"{site.url}/orders/{refunded.id}")
    await expect(page.locator(".step-stop")).to_contain_text("Cancelled and refunded")
    await expect(page.locator(".step-stop")).to_contain_text("Your payment has been refunded.")
    await check_page(page, "order-refunded", screenshots)

    # A ready pickup order: the customer says they collected it.
    await page.goto(f"{site.url}/orders/{ready.id}")
    await check_page(page, "order-ready", screenshots)
    await page.get_by_role("button", name="I've collected it").click()
    await expect(page.locator(".status-now .badge")).to_have_text("Completed")
    await check_page(page, "order-completed", screenshots)

    await page.goto(f"{site.url}/orders/no-such-order")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    await check_page(page, "not-found", screenshots)

    await page.get_by_role("button", name="Sign out").click()
    await sign_in(page, site, farmer)
    # The farmer lands on the farm's board (tests/web/test_farmer_board.py covers it).
    await expect(page).to_have_url(f"{site.url}/manage/{farm.id}")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Orders")
    await page.get_by_role("link", name=f"Order {ready.order_number}").click()
    await expect(page.locator("main")).to_contain_text(f"for {customer.name}")
    await expect(page.get_by_role("heading", name="Actions")).to_have_count(0)
    await check_page(page, "farm-order-completed", screenshots)
