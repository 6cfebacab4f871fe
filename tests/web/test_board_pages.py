"""The farm's board, its fragments and actions, the CSV export and the admin's list, through
the app (no browser): authorisation, CSRF, stale versions, the no-JavaScript flows."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest

from farmstand.accounts.models import User
from farmstand.accounts.roles import Role
from farmstand.config import Settings
from farmstand.orders.states import FulfillmentType, OrderStatus
from tests.conftest import make_settings
from tests.factories import Factory
from tests.web.test_pages import sign_in, token_of


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url  # the board's queries are covered on both databases in tests/orders


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path)


def version_in(html: str, status: str | None = None) -> str:
    """The version a form of the page carries (of the form for ``status``, if given)."""
    before = f'name="status" value="{status}"><input type="hidden" ' if status else ""
    found = re.search(before + r'name="version" value="(\d+)"', html)
    assert found, html[:500]
    return found.group(1)


async def farm_with_orders(factory: Factory, farmer: User | None = None):
    farmer = farmer or await factory.user(Role.FARMER, name="Rosa Farmer")
    farm = await factory.farm(farmer, name="Green Acre")
    eggs = await factory.product(farm, name="Eggs", price="6.00")
    return farmer, farm, eggs


async def test_the_board_shows_the_farms_orders_by_tab(client, factory: Factory):
    farmer, farm, eggs = await farm_with_orders(factory)
    customer = await factory.user(Role.CUSTOMER, name="Carol Customer")
    pending = await factory.order(farm=farm, customer=customer, products=[eggs], quantity=2)
    confirmed = await factory.order(farm=farm, products=[eggs], status=OrderStatus.CONFIRMED)
    await sign_in(client, farmer.email)

    page = await client.get(f"/manage/{farm.id}")
    assert page.status_code == 200, page.text
    assert pending.order_number in page.text and confirmed.order_number in page.text
    assert "Carol Customer" in page.text and "$12.00" in page.text
    assert "Confirm order" in page.text and "Start preparing" in page.text

    pending_tab = await client.get(f"/manage/{farm.id}?tab=pending")
    assert pending.order_number in pending_tab.text
    assert confirmed.order_number not in pending_tab.text


async def test_another_farm_and_a_customer_find_nothing_on_the_farm_side(client, factory: Factory):
    farmer, farm, eggs = await farm_with_orders(factory)
    customer = await factory.user(Role.CUSTOMER)
    order = await factory.order(farm=farm, customer=customer, products=[eggs])
    item = order.items[0].id
    base = f"/manage/{farm.id}"
    order_base = f"{base}/orders/{order.id}"
    for intruder in (await factory.user(Role.FARMER), customer):
        client.cookies.clear()
        await sign_in(client, intruder.email)
        for path in (
            base,
            f"{base}/counts",
            f"{base}/list",
            f"{order_base}/card",
            f"{base}/orders.csv",
        ):
            reply = await client.get(path)
            assert reply.status_code == 404, (intruder.role, path)
        token = token_of(await client.get("/farms"))
        for path, data in (
            (f"{order_base}/status", {"status": "CANCELLED", "reason": "mine", "version": "1"}),
            (f"{order_base}/items/{item}", {"prepared": "true"}),
            (f"{order_base}/estimates", {"estimated_ready_at": "2026-12-05T10:00"}),
        ):
            reply = await client.post(path, data={"csrf_token": token, **data})
            assert reply.status_code == 404, (intruder.role, path)
        assert (await client.get("/admin/orders")).status_code == 404
    # Nothing changed.
    client.cookies.clear()
    await sign_in(client, farmer.email)
    assert "Awaiting confirmation" in (await client.get(f"{order_base}/card")).text


async def test_an_order_of_another_farm_is_not_found_under_this_farm(client, factory: Factory):
    farmer, farm, _ = await farm_with_orders(factory)
    second = await factory.farm(farmer, name="Second field")
    order = await factory.order(farm=second)
    await sign_in(client, farmer.email)
    assert (await client.get(f"/manage/{farm.id}/orders/{order.id}/card")).status_code == 404
    assert (await client.get(f"/manage/{second.id}/orders/{order.id}/card")).status_code == 200


async def test_an_action_without_a_valid_form_token_is_refused(client, factory: Factory):
    farmer, farm, eggs = await farm_with_orders(factory)
    order = await factory.order(farm=farm, products=[eggs])
    await sign_in(client, farmer.email)
    reply = await client.post(
        f"/manage/{farm.id}/orders/{order.id}/status",
        data={"csrf_token": "forged", "status": "CONFIRMED", "version": str(order.version)},
    )
    assert reply.status_code == 403
    assert "Awaiting confirmation" in (await client.get(f"/manage/{farm.id}")).text


async def test_without_javascript_confirming_comes_back_to_the_same_tab_and_search(
    client, factory: Factory
):
    farmer, farm, eggs = await farm_with_orders(factory)
    order = await factory.order(farm=farm, products=[eggs])
    await sign_in(client, farmer.email)
    page = await client.get(f"/manage/{farm.id}?tab=pending&q={order.order_number}")
    reply = await client.post(
        f"/manage/{farm.id}/orders/{order.id}/status",
        data={
            "csrf_token": token_of(page),
            "status": "CONFIRMED",
            "version": str(order.version),
            "view": "board",
            "tab": "pending",
            "q": order.order_number,
        },
    )
    assert reply.status_code == 303
    assert reply.headers["location"] == (
        f"/manage/{farm.id}?tab=pending&q={order.order_number}#order-{order.id}"
    )
    confirmed = await client.get(f"/manage/{farm.id}?tab=confirmed")
    assert order.order_number in confirmed.text and "Start preparing" in confirmed.text


async def test_a_stale_board_gets_a_409_next_to_the_card_and_nothing_changes(
    client, factory: Factory
):
    farmer, farm, eggs = await farm_with_orders(factory)
    order = await factory.order(farm=farm, products=[eggs])
    await sign_in(client, farmer.email)
    page = await client.get(f"/manage/{farm.id}")
    stale = {"csrf_token": token_of(page), "status": "CONFIRMED", "version": str(order.version)}
    # Meanwhile, someone confirms it elsewhere.
    first = await client.post(f"/manage/{farm.id}/orders/{order.id}/status", data=stale)
    assert first.status_code == 303
    again = {**stale, "status": "PREPARING"}  # the old card's version, a later step

    plain = await client.post(f"/manage/{farm.id}/orders/{order.id}/status", data=again)
    assert plain.status_code == 409
    assert "This order changed meanwhile" in plain.text and 'role="alert"' in plain.text
    assert "<h1>Orders</h1>" in plain.text  # the whole board, the error by its card

    fragment = await client.post(
        f"/manage/{farm.id}/orders/{order.id}/status", data=again, headers={"HX-Request": "true"}
    )
    assert fragment.status_code == 409
    assert fragment.headers["x-farmstand-card"] == "1"
    assert (
        fragment.text.lstrip().startswith("<li") and "This order changed meanwhile" in fragment.text
    )
    assert "Confirmed" in fragment.text and "<h1>" not in fragment.text
    assert "Start preparing" in (await client.get(f"/manage/{farm.id}")).text  # not prepared


async def test_with_htmx_an_action_answers_with_the_card_alone(client, factory: Factory):
    farmer, farm, eggs = await farm_with_orders(factory)
    order = await factory.order(farm=farm, products=[eggs], status=OrderStatus.CONFIRMED)
    await sign_in(client, farmer.email)
    token = token_of(await client.get(f"/manage/{farm.id}"))
    htmx = {"HX-Request": "true"}
    base = f"/manage/{farm.id}/orders/{order.id}"
    reply = await client.post(
        f"{base}/status",
        data={"csrf_token": token, "status": "PREPARING", "version": str(order.version)},
        headers=htmx,
    )
    assert reply.status_code == 200 and reply.text.lstrip().startswith("<li")
    assert "Mark ready" in reply.text and "Tick every item as prepared first." in reply.text
    assert re.search(r"<button[^>]*disabled[^>]*><span class=\"when-idle\">Mark ready", reply.text)

    item = order.items[0].id
    ticked = await client.post(
        f"{base}/items/{item}",
        data={"csrf_token": token, "prepared": ["false", "true"]},
        headers=htmx,
    )
    assert ticked.status_code == 200
    assert f'id="prepared-{item}" checked' in ticked.text
    assert "Tick every item" not in ticked.text  # Mark ready is possible now
    unticked = await client.post(
        f"{base}/items/{item}", data={"csrf_token": token, "prepared": "false"}, headers=htmx
    )
    assert f'id="prepared-{item}" checked' not in unticked.text
    # A click on Mark ready from a page that still showed it enabled: the guard refuses.
    version = version_in(unticked.text)
    refused = await client.post(
        f"{base}/status",
        data={"csrf_token": token, "status": "READY_FOR_PICKUP", "version": version},
        headers=htmx,
    )
    assert refused.status_code == 409 and "Mark every item as prepared first." in refused.text


async def test_without_javascript_ticking_an_item_comes_back_to_the_board(client, factory: Factory):
    farmer, farm, eggs = await farm_with_orders(factory)
    order = await factory.order(farm=farm, products=[eggs], status=OrderStatus.PREPARING)
    await sign_in(client, farmer.email)
    token = token_of(await client.get(f"/manage/{farm.id}?tab=preparing"))
    item = order.items[0].id
    reply = await client.post(
        f"/manage/{farm.id}/orders/{order.id}/items/{item}",
        data={"csrf_token": token, "prepared": ["false", "true"], "tab": "preparing"},
    )
    assert reply.status_code == 303
    assert reply.headers["location"] == f"/manage/{farm.id}?tab=preparing#order-{order.id}"
    board = await client.get(reply.headers["location"])
    assert f'id="prepared-{item}" checked' in board.text and "Tick every item" not in board.text


async def test_the_csv_lists_the_filtered_orders_with_formulas_defused(client, factory: Factory):
    farmer = await factory.user(Role.FARMER)
    farm = await factory.farm(farmer, name="Green Acre Farm", timezone="Europe/Paris")
    eggs = await factory.product(farm, name="Eggs (dozen)", price="6.00")
    honey = await factory.product(farm, name="=HYPERLINK(1)", price="9.50")
    sneaky = await factory.user(Role.CUSTOMER, name="@SUM(A1) Smith")
    order = await factory.order(farm=farm, customer=sneaky, products=[eggs, honey], quantity=2)
    await factory.order(farm=farm, products=[eggs], status=OrderStatus.CONFIRMED)
    await sign_in(client, farmer.email)

    reply = await client.get(f"/manage/{farm.id}/orders.csv?tab=pending")

    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/csv")
    disposition = reply.headers["content-disposition"]
    assert re.fullmatch(
        r'attachment; filename="orders-green-acre-farm-pending-\d{4}-\d\d-\d\d\.csv"', disposition
    )
    rows = list(csv.reader(io.StringIO(reply.text)))
    assert rows[0] == [
        "Order number",
        "Placed",
        "Customer",
        "Status",
        "Fulfilment",
        "Items",
        "Total",
        "Estimated ready",
        "Tracking number",
    ]
    assert len(rows) == 2  # the pending one only
    row = rows[1]
    assert row[0] == order.order_number
    assert row[1].endswith("+01:00")  # placed, on the farm's clock (Paris in winter)
    assert row[2] == "'@SUM(A1) Smith"
    assert row[3:5] == ["PENDING", "PICKUP"]
    # A formula only at the start of a cell counts.
    assert row[5] == "2 \u00d7 Eggs (dozen); 2 \u00d7 =HYPERLINK(1)"
    assert row[6] == "31.00"


def test_a_cell_that_starts_like_a_formula_is_quoted():
    from farmstand.orders.board_csv import csv_cell

    for text in ("=1+1", "+1", "-1", "@x", "\t=1"):
        assert csv_cell(text) == "'" + text
    assert csv_cell("FS-ABC234") == "FS-ABC234"


async def test_estimates_on_the_farms_clock_and_a_later_one_tells_the_customer(
    client, factory: Factory
):
    farmer = await factory.user(Role.FARMER)
    farm = await factory.farm(farmer, timezone="America/New_York")
    order = await factory.order(farm=farm, status=OrderStatus.CONFIRMED)
    await sign_in(client, farmer.email)
    page = await client.get(f"/orders/{order.id}")
    assert "On the farm&#39;s clock (America/New_York)" in page.text
    token = token_of(page)
    url = f"/manage/{farm.id}/orders/{order.id}/estimates"

    reply = await client.post(
        url, data={"csrf_token": token, "estimated_ready_at": "2026-12-05T10:00"}
    )
    assert reply.status_code == 303 and reply.headers["location"].endswith("?notice=estimates")
    page = await client.get(reply.headers["location"])
    assert "The estimated times are saved." in page.text
    assert 'value="2026-12-05T10:00"' in page.text  # shown back on the farm's clock
    api = await client.get(f"/api/orders/{order.id}")
    assert api.json()["data"]["estimatedReadyAt"] == "2026-12-05T15:00:00Z"

    later = await client.post(
        url, data={"csrf_token": token, "estimated_ready_at": "2026-12-05T12:30"}
    )
    assert later.status_code == 303
    log = await client.get(f"/orders/{order.id}")
    assert "Order delayed" in log.text  # the delivery log shows the delay notification

    bad = await client.post(
        url,
        data={
            "csrf_token": token,
            "estimated_ready_at": "2026-12-05T12:30",
            "estimated_pickup_at": "soon",
        },
    )
    assert bad.status_code == 422
    assert 'id="f-estimated_pickup_at-error"' in bad.text and 'aria-invalid="true"' in bad.text
    before = await client.post(
        url,
        data={
            "csrf_token": token,
            "estimated_ready_at": "2026-12-05T12:30",
            "estimated_pickup_at": "2026-12-05T09:00",
        },
    )
    assert before.status_code == 422 and 'id="f-estimated_pickup_at-error"' in before.text


async def test_tracking_is_entered_then_the_shipping_order_is_sent_out(client, factory: Factory):
    farmer, farm, eggs = await farm_with_orders(factory)
    order = await factory.order(
        farm=farm,
        products=[eggs],
        status=OrderStatus.PREPARING,
        fulfillment=FulfillmentType.SHIPPING,
    )
    await sign_in(client, farmer.email)
    page = await client.get(f"/orders/{order.id}")
    token = token_of(page)
    base = f"/manage/{farm.id}/orders/{order.id}"
    await client.post(
        f"{base}/items/{order.items[0].id}",
        data={"csrf_token": token, "prepared": "true", "view": "order"},
    )
    page = await client.get(f"/orders/{order.id}")
    assert "Add the tracking number before the order ships." in page.text
    reply = await client.post(
        f"{base}/tracking",
        data={"csrf_token": token, "tracking_number": "1Z999AA1", "carrier": "UPS"},
    )
    assert reply.status_code == 303
    page = await client.get(f"/orders/{order.id}")
    version = version_in(page.text)
    sent = await client.post(
        f"{base}/status",
        data={
            "csrf_token": token,
            "status": "OUT_FOR_DELIVERY",
            "version": version,
            "view": "order",
        },
    )
    assert (
        sent.status_code == 303 and sent.headers["location"] == f"/orders/{order.id}?notice=updated"
    )
    page = await client.get(sent.headers["location"])
    assert "Shipped" in page.text and "1Z999AA1" in page.text


async def test_cancelling_needs_a_reason_then_a_refund_follows(client, factory: Factory):
    farmer, farm, eggs = await farm_with_orders(factory)
    order = await factory.order(farm=farm, products=[eggs], status=OrderStatus.CONFIRMED)
    await sign_in(client, farmer.email)
    page = await client.get(f"/orders/{order.id}")
    assert "Cancel this order" in page.text and "Refund this order" not in page.text
    token = token_of(page)
    url = f"/manage/{farm.id}/orders/{order.id}/status"
    cancel = {
        "csrf_token": token,
        "status": "CANCELLED",
        "version": str(order.version),
        "view": "order",
    }

    no_reason = await client.post(url, data={**cancel, "reason": "  "})
    assert no_reason.status_code == 422
    assert 'id="cancel-reason-error"' in no_reason.text and "Give a reason" in no_reason.text

    done = await client.post(url, data={**cancel, "reason": "Hail took the crop"})
    assert done.status_code == 303
    page = await client.get(f"/orders/{order.id}")
    assert "Hail took the crop" in page.text and "Refund this order" in page.text
    version = version_in(page.text, "REFUNDED")
    refund = {"csrf_token": token, "status": "REFUNDED", "version": version, "view": "order"}
    refused = await client.post(url, data=refund)
    assert refused.status_code == 422 and 'id="refund-reason-error"' in refused.text
    refunded = await client.post(url, data={**refund, "reason": "Refunded in full"})
    assert refunded.status_code == 303
    page = await client.get(f"/orders/{order.id}")
    assert "Refunded" in page.text and "Refund this order" not in page.text
    assert "Cancelled → Refunded" in page.text  # the history: who, when, why


async def test_the_admin_lists_every_farm_with_a_farm_filter_and_a_bulk_form(
    client, factory: Factory
):
    _, first, _ = await farm_with_orders(factory)
    second = await factory.farm(name="Hill Farm")
    one = await factory.order(farm=first)
    two = await factory.order(farm=second, status=OrderStatus.CONFIRMED)
    admin = await factory.user(Role.ADMIN)
    await sign_in(client, admin.email)
    assert (await client.get("/orders")).headers["location"] == "/admin/orders"

    page = await client.get("/admin/orders")
    assert page.status_code == 200
    assert one.order_number in page.text and two.order_number in page.text
    assert 'action="/admin/orders/bulk/preview"' in page.text
    assert (
        'name="csrf_token"' in page.text and '<select id="bulk-status" name="status">' in page.text
    )
    assert f'name="order_id" value="{one.id}" form="bulk-form"' in page.text
    filtered = await client.get(f"/admin/orders?farm={second.id}&tab=confirmed")
    assert two.order_number in filtered.text and one.order_number not in filtered.text
    assert f'<option value="{second.id}" selected>' in filtered.text
    # The admin may act on any farm's card; without JavaScript it comes back to the list.
    reply = await client.post(
        f"/manage/{first.id}/orders/{one.id}/status",
        data={
            "csrf_token": token_of(page),
            "status": "CONFIRMED",
            "version": str(one.version),
            "view": "admin",
            "farm": first.id,
        },
    )
    assert reply.status_code == 303
    assert reply.headers["location"] == f"/admin/orders?farm={first.id}#order-{one.id}"
