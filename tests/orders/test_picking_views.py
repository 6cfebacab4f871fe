"""The pick list and packing slips pages through the app (no browser): who may open them,
what they show, and what they cost the database."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from farmstand.accounts.roles import Role
from farmstand.config import Settings
from farmstand.orders.states import FulfillmentType, OrderStatus
from tests.catalog.test_farm_views import sign_in_as
from tests.conftest import make_settings
from tests.factories import Factory
from tests.orders.test_statements import counting


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url  # the queries are tested on both databases in test_picking


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path)


def cells(page: httpx.Response) -> list[list[str]]:
    """The pick list's rows, as text."""
    body = page.text.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", body, re.DOTALL)
    return [
        [
            re.sub(r"<[^>]+>", "", cell).strip()
            for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row)
        ]
        for row in rows
    ]


@pytest.mark.parametrize("section", ["pick-list", "packing-slips"])
async def test_only_the_farms_managers_open_them(
    client: httpx.AsyncClient, factory: Factory, section: str
) -> None:
    farm = await factory.farm(name="Green Acre")
    order = await factory.order(farm=farm, status=OrderStatus.CONFIRMED)
    for role in (Role.FARMER, Role.CUSTOMER):
        await sign_in_as(client, await factory.user(role))
        page = await client.get(f"/manage/{farm.id}/{section}?order_id={order.id}")
        assert page.status_code == 404, role
        assert order.order_number not in page.text and "Green Acre" not in page.text
    await sign_in_as(client, await factory.user(Role.ADMIN))
    assert (await client.get(f"/manage/{farm.id}/{section}")).status_code == 200


async def test_the_pick_list_page_shows_the_sums_in_one_statement(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    farmer = await factory.user(Role.FARMER)
    farm = await factory.farm(farmer)
    kale = await factory.product(farm, name="Kale")
    eggs = await factory.product(farm, name="Eggs")
    for products, quantity in (([kale], 2), ([kale, eggs], 3)):
        await factory.order(
            farm=farm, products=products, quantity=quantity, status=OrderStatus.CONFIRMED
        )
    await factory.order(farm=farm, products=[kale], quantity=5)  # pending: not yet
    await sign_in_as(client, farmer)
    await client.get(f"/manage/{farm.id}/pick-list")  # warm: the session is cached

    with counting(factory) as trips:
        page = await client.get(f"/manage/{farm.id}/pick-list")

    assert page.status_code == 200
    assert cells(page) == [
        ["Eggs", "3 lb", "0", "3 lb", "1"],
        ["Kale", "5 lb", "0", "5 lb", "2"],
    ]
    assert "whatever day it was placed" in page.text
    assert "data-print" in page.text and "<noscript>" in page.text
    # The bell's unread count, the farm and the farms to switch to, then the grouped sums.
    assert trips.statements == ["SELECT", "SELECT", "SELECT"]


async def test_an_empty_pick_list_says_so(client: httpx.AsyncClient, factory: Factory) -> None:
    farmer = await factory.user(Role.FARMER)
    farm = await factory.farm(farmer)
    await factory.order(farm=farm, status=OrderStatus.CONFIRMED)  # not estimated for today
    await sign_in_as(client, farmer)

    page = await client.get(f"/manage/{farm.id}/pick-list?when=today")

    assert "Nothing estimated ready today" in page.text
    assert "<tbody>" not in page.text


async def test_packing_slips_show_each_order_in_one_statement(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    farmer = await factory.user(Role.FARMER)
    farm = await factory.farm(farmer, name="Green Acre", pickup_location="Stall 12")
    kale = await factory.product(farm, name="Kale", price="3.00")
    pickup = await factory.order(
        farm=farm, products=[kale], quantity=2, status=OrderStatus.CONFIRMED
    )
    delivery = await factory.order(
        farm=farm,
        products=[kale],
        quantity=1,
        status=OrderStatus.PREPARING,
        fulfillment=FulfillmentType.DELIVERY,
    )
    pending = await factory.order(farm=farm, products=[kale])
    await sign_in_as(client, farmer)
    await client.get(f"/manage/{farm.id}/packing-slips")

    with counting(factory) as trips:
        page = await client.get(f"/manage/{farm.id}/packing-slips")

    assert page.status_code == 200
    assert page.text.count('<article class="slip"') == 2
    assert pickup.order_number in page.text and delivery.order_number in page.text
    assert pending.order_number not in page.text
    assert "Stall 12" in page.text and "1 Main St" in page.text and "Springfield" in page.text
    assert "2 lb" in page.text and "$6.00" in page.text
    # The bell's unread count, the farm frame, then the orders with their items.
    assert trips.statements == ["SELECT", "SELECT", "SELECT"]

    chosen = await client.get(
        f"/manage/{farm.id}/packing-slips?order_id={pending.id}&order_id={pickup.id}"
    )
    assert chosen.text.count('<article class="slip"') == 2
    assert delivery.order_number not in chosen.text

    by_status = await client.get(f"/manage/{farm.id}/packing-slips?status=PENDING")
    assert by_status.text.count('<article class="slip"') == 1
    assert pending.order_number in by_status.text


async def test_an_unknown_status_is_refused(client: httpx.AsyncClient, factory: Factory) -> None:
    farmer = await factory.user(Role.FARMER)
    farm = await factory.farm(farmer)
    await sign_in_as(client, farmer)

    page = await client.get(f"/manage/{farm.id}/packing-slips?status=CONFIRMED,LOST")

    assert page.status_code == 422
    assert "Unknown order status" in page.text


async def test_no_slips_says_so(client: httpx.AsyncClient, factory: Factory) -> None:
    farmer = await factory.user(Role.FARMER)
    farm = await factory.farm(farmer)
    await sign_in_as(client, farmer)

    page = await client.get(f"/manage/{farm.id}/packing-slips")

    assert "No orders to pack" in page.text
