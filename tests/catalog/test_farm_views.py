"""The farm's products and settings pages through the app (no browser): who may open them,
CSRF, refusals shown next to their field with nothing written, 303 on success."""

from __future__ import annotations

import html
import re
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from farmstand.accounts.models import User
from farmstand.accounts.roles import Role
from farmstand.catalog.models import Farm, Product
from farmstand.config import Settings
from tests.conftest import make_settings
from tests.factories import Factory
from tests.web.test_pages import sign_in, token_of


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url  # the pages call the catalogue service, tested on both databases


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path)


async def sign_in_as(client: httpx.AsyncClient, user: User) -> None:
    client.cookies.clear()  # whoever was signed in before
    await sign_in(client, user.email)


async def farmer_at_farm(client: httpx.AsyncClient, factory: Factory) -> tuple[User, Farm]:
    farmer = await factory.user(Role.FARMER)
    farm = await factory.farm(farmer, name="Green Acre", pickup_location="Stall 12")
    await sign_in(client, farmer.email)
    return farmer, farm


async def product_now(factory: Factory, product: Product) -> Product:
    async with factory.db.transaction(write=False) as session:
        found = await session.get(Product, product.id)
        assert found is not None
        return found


async def farm_now(factory: Factory, farm: Farm) -> Farm:
    async with factory.db.transaction(write=False) as session:
        found = await session.get(Farm, farm.id)
        assert found is not None
        return found


def error_of(page: httpx.Response, field_id: str) -> str:
    """The message shown next to the field (``aria-describedby`` points at it)."""
    found = re.search(
        rf'<p class="field-error" id="{re.escape(field_id)}-error">([^<]*)</p>', page.text
    )
    assert found, f"no error next to {field_id}"
    assert re.search(rf'id="{re.escape(field_id)}"[^>]*aria-invalid="true"', page.text)
    return html.unescape(found.group(1))


@pytest.mark.parametrize("section", ["products", "settings"])
async def test_only_the_farms_managers_open_its_pages(
    client: httpx.AsyncClient, factory: Factory, section: str
) -> None:
    farm = await factory.farm(name="Green Acre")
    for role in (Role.FARMER, Role.CUSTOMER):
        stranger = await factory.user(role)
        await sign_in_as(client, stranger)
        page = await client.get(f"/manage/{farm.id}/{section}")
        assert page.status_code == 404, role
        assert "Green Acre" not in page.text
    admin = await factory.user(Role.ADMIN)
    await sign_in_as(client, admin)
    assert (await client.get(f"/manage/{farm.id}/{section}")).status_code == 200


async def test_another_farmer_cannot_change_a_product_or_the_settings(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    farm = await factory.farm(name="Green Acre")
    kale = await factory.product(farm, name="Kale", price="3.00", stock=5)
    intruder = await factory.user(Role.FARMER)
    await factory.farm(intruder)
    await sign_in(client, intruder.email)
    token = token_of(await client.get("/farms"))  # a page every role sees

    posts = [
        (f"/manage/{farm.id}/products/{kale.id}", {f"{kale.id}-price": "0.01"}),
        (f"/manage/{farm.id}/products/{kale.id}/sale", {"on_sale": "false"}),
        (f"/manage/{farm.id}/products", {"new-name": "Mine", "new-unit": "lb"}),
        (f"/manage/{farm.id}/settings", {"name": "Taken over"}),
    ]
    for url, data in posts:
        assert (await client.post(url, data={"csrf_token": token, **data})).status_code == 404

    kale_now = await product_now(factory, kale)
    assert (kale_now.price, kale_now.on_sale) == (Decimal("3.00"), True)
    assert (await farm_now(factory, farm)).name == "Green Acre"


async def test_a_form_without_its_token_is_refused(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    _farmer, farm = await farmer_at_farm(client, factory)
    kale = await factory.product(farm, name="Kale")

    for url, data in [
        (f"/manage/{farm.id}/products/{kale.id}/sale", {"on_sale": "false"}),
        (f"/manage/{farm.id}/settings", {"name": "No token"}),
    ]:
        assert (await client.post(url, data=data)).status_code == 403
        forged = {**data, "csrf_token": "forged"}
        assert (await client.post(url, data=forged)).status_code == 403
    assert (await product_now(factory, kale)).on_sale is True
    assert (await farm_now(factory, farm)).name == "Green Acre"


async def test_the_farmer_adds_a_product(client: httpx.AsyncClient, factory: Factory) -> None:
    _farmer, farm = await farmer_at_farm(client, factory)
    page = await client.get(f"/manage/{farm.id}/products")
    assert "No products yet" in page.text

    reply = await client.post(
        f"/manage/{farm.id}/products",
        data={
            "csrf_token": token_of(page),
            "new-name": " Heirloom tomatoes ",
            "new-unit": "lb",
            "new-price": "4.5",
            "new-stock": "12",
        },
    )

    assert reply.status_code == 303
    assert reply.headers["location"].startswith(f"/manage/{farm.id}/products?notice=added")
    shown = await client.get(reply.headers["location"])
    assert "Heirloom tomatoes is added and on sale." in shown.text
    assert "$4.50 / lb · 12 lb in stock" in shown.text


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("price", "0", "Enter a price above 0 with at most 2 decimals"),
        ("price", "3.505", "Enter a price above 0 with at most 2 decimals"),
        ("price", "three", "Enter a price above 0 with at most 2 decimals"),
        ("price", "-1", "Enter a price above 0 with at most 2 decimals"),
        ("stock", "1.5", "a whole number, 0 or more"),
        ("stock", "-2", "a whole number, 0 or more"),
        ("stock", "", "a whole number, 0 or more"),
        ("name", "", "Enter the product's name"),
        ("unit", "", "Enter the unit it is sold by"),
    ],
)
async def test_a_bad_new_product_is_refused_next_to_its_field_and_nothing_is_added(
    client: httpx.AsyncClient, factory: Factory, field: str, value: str, message: str
) -> None:
    _farmer, farm = await farmer_at_farm(client, factory)
    page = await client.get(f"/manage/{farm.id}/products")
    data = {"new-name": "Kale", "new-unit": "bunch", "new-price": "3.00", "new-stock": "5"}

    reply = await client.post(
        f"/manage/{farm.id}/products",
        data={"csrf_token": token_of(page), **data, f"new-{field}": value},
    )

    assert reply.status_code == 422
    assert message in error_of(reply, f"new-{field}")
    assert 'value="bunch"' in reply.text or field == "unit"  # what was typed stays
    assert "No products yet" in reply.text  # nothing was added


async def test_the_farmer_changes_price_and_stock(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    _farmer, farm = await farmer_at_farm(client, factory)
    kale = await factory.product(farm, name="Kale", price="3.00", stock=5)
    page = await client.get(f"/manage/{farm.id}/products")

    reply = await client.post(
        f"/manage/{farm.id}/products/{kale.id}",
        data={
            "csrf_token": token_of(page),
            f"{kale.id}-price": "3.25",
            f"{kale.id}-stock": "9",
            f"{kale.id}-shown-stock": "5",
        },
    )

    assert reply.status_code == 303
    assert "Kale is saved." in (await client.get(reply.headers["location"])).text
    now = await product_now(factory, kale)
    assert (now.price, now.stock) == (Decimal("3.25"), 9)


async def test_a_bad_price_is_refused_next_to_it_and_nothing_changes(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    _farmer, farm = await farmer_at_farm(client, factory)
    kale = await factory.product(farm, name="Kale", price="3.00", stock=5)
    page = await client.get(f"/manage/{farm.id}/products")

    reply = await client.post(
        f"/manage/{farm.id}/products/{kale.id}",
        data={
            "csrf_token": token_of(page),
            f"{kale.id}-price": "0.00",
            f"{kale.id}-stock": "9",
            f"{kale.id}-shown-stock": "5",
        },
    )

    assert reply.status_code == 422
    assert "above 0" in error_of(reply, f"p-{kale.id}-price")
    now = await product_now(factory, kale)
    assert (now.price, now.stock) == (Decimal("3.00"), 5)


async def test_orders_placed_while_the_farmer_edits_are_not_undone(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    _farmer, farm = await farmer_at_farm(client, factory)
    kale = await factory.product(farm, name="Kale", price="3.00", stock=5)
    page = await client.get(f"/manage/{farm.id}/products")  # the farmer sees 5
    await factory.order(farm=farm, products=[kale], quantity=2)  # a customer takes 2
    form = {
        "csrf_token": token_of(page),
        f"{kale.id}-price": "3.00",
        f"{kale.id}-stock": "8",
        f"{kale.id}-shown-stock": "5",
    }

    stale = await client.post(f"/manage/{farm.id}/products/{kale.id}", data=form)

    assert stale.status_code == 409
    assert "Stock changed meanwhile (now 3)." in error_of(stale, f"p-{kale.id}-stock")
    assert (await product_now(factory, kale)).stock == 3
    # The page now holds the stock as it is: saving again is a deliberate choice.
    assert f'name="{kale.id}-shown-stock" value="3"' in stale.text
    again = await client.post(
        f"/manage/{farm.id}/products/{kale.id}", data={**form, f"{kale.id}-shown-stock": "3"}
    )
    assert again.status_code == 303
    assert (await product_now(factory, kale)).stock == 8


async def test_a_price_change_leaves_stock_taken_meanwhile_alone(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    _farmer, farm = await farmer_at_farm(client, factory)
    kale = await factory.product(farm, name="Kale", price="3.00", stock=5)
    page = await client.get(f"/manage/{farm.id}/products")
    await factory.order(farm=farm, products=[kale], quantity=2)

    reply = await client.post(
        f"/manage/{farm.id}/products/{kale.id}",
        data={
            "csrf_token": token_of(page),
            f"{kale.id}-price": "3.50",
            f"{kale.id}-stock": "5",  # untouched: as the page showed it
            f"{kale.id}-shown-stock": "5",
        },
    )

    assert reply.status_code == 303
    now = await product_now(factory, kale)
    assert (now.price, now.stock) == (Decimal("3.50"), 3)


async def test_off_sale_hides_the_product_from_the_shop_until_it_is_back(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    _farmer, farm = await farmer_at_farm(client, factory)
    kale = await factory.product(farm, name="Kale")
    await factory.product(farm, name="Eggs")
    page = await client.get(f"/manage/{farm.id}/products")

    off = await client.post(
        f"/manage/{farm.id}/products/{kale.id}/sale",
        data={"csrf_token": token_of(page), "on_sale": "false"},
    )

    assert off.status_code == 303
    managed = await client.get(off.headers["location"])
    assert "Kale is off sale: customers no longer see it." in managed.text
    assert "Off sale" in managed.text and "Put back on sale" in managed.text
    shop = (await client.get(f"/farms/{farm.id}")).text
    assert "Eggs" in shop and "Kale" not in shop
    on = await client.post(
        f"/manage/{farm.id}/products/{kale.id}/sale",
        data={"csrf_token": token_of(managed), "on_sale": "true"},
    )
    assert on.status_code == 303
    assert "Kale" in (await client.get(f"/farms/{farm.id}")).text


async def test_the_settings_show_the_farm_and_its_time_zone_selected(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    farmer = await factory.user(Role.FARMER)
    farm = await factory.farm(farmer, timezone="Europe/Paris", max_open_orders=4)
    await sign_in(client, farmer.email)

    page = await client.get(f"/manage/{farm.id}/settings")

    assert page.status_code == 200
    assert "<option selected>Europe/Paris</option>" in page.text
    assert page.text.count("<option") > 300  # every IANA zone
    assert re.search(r'name="maxOpenOrders"[^>]*value="4"', page.text)


async def test_the_farmer_saves_the_settings(client: httpx.AsyncClient, factory: Factory) -> None:
    _farmer, farm = await farmer_at_farm(client, factory)
    page = await client.get(f"/manage/{farm.id}/settings")

    reply = await client.post(
        f"/manage/{farm.id}/settings",
        data={
            "csrf_token": token_of(page),
            "name": "Green Acre Farm",
            "pickupLocation": "Barn door, 12 Mill Lane",
            "pickupInstructions": "",
            "timezone": "America/Chicago",
            "maxOpenOrders": "5",
            "maxItemQuantity": "12",
        },
    )

    assert reply.status_code == 303
    assert reply.headers["location"] == f"/manage/{farm.id}/settings?notice=saved"
    assert "Saved." in (await client.get(reply.headers["location"])).text
    now = await farm_now(factory, farm)
    assert (now.name, now.pickup_location, now.pickup_instructions, now.timezone) == (
        "Green Acre Farm",
        "Barn door, 12 Mill Lane",
        None,
        "America/Chicago",
    )
    assert (now.max_open_orders, now.max_item_quantity) == (5, 12)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "  ", "Enter the farm's name"),
        ("timezone", "Mars/Olympus", "Choose the farm's time zone"),
        ("maxOpenOrders", "0", "from 1 to 1,000"),
        ("maxItemQuantity", "lots", "from 1 to 10,000"),
        ("pickupLocation", "x" * 501, "under 500 characters"),
    ],
)
async def test_bad_settings_are_refused_next_to_their_field_and_nothing_is_saved(
    client: httpx.AsyncClient, factory: Factory, field: str, value: str, message: str
) -> None:
    _farmer, farm = await farmer_at_farm(client, factory)
    page = await client.get(f"/manage/{farm.id}/settings")
    data = {
        "name": "Renamed",
        "pickupLocation": "Elsewhere",
        "timezone": "Europe/Paris",
        "maxOpenOrders": "5",
        "maxItemQuantity": "12",
    }

    reply = await client.post(
        f"/manage/{farm.id}/settings",
        data={"csrf_token": token_of(page), **data, field: value},
    )

    assert reply.status_code == 422
    assert message in error_of(reply, f"f-{field}")
    now = await farm_now(factory, farm)
    assert (now.name, now.pickup_location, now.timezone) == ("Green Acre", "Stall 12", "UTC")
