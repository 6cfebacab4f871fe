"""Farms and products through the HTTP API."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from farmstand.accounts.models import User
from farmstand.accounts.roles import Role
from farmstand.catalog.models import Farm
from tests.factories import Factory


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is True
    assert set(body) == {"success", "data"}
    return body["data"]


def error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False
    assert set(body) <= {"success", "error", "details"}
    assert body["error"]
    return body


def fields(body: dict[str, Any]) -> set[str]:
    return {detail["field"] for detail in body["details"]}


def product_body(**overrides: Any) -> dict[str, Any]:
    return {"name": "Heirloom tomatoes", "unit": "lb", "price": "12.50", "stock": 40, **overrides}


async def farmer_with_farm(factory: Factory) -> tuple[User, Farm, dict[str, str]]:
    farmer = await factory.user(Role.FARMER)
    farm = await factory.farm(farmer)
    return farmer, farm, await factory.headers(farmer)


# Farms


async def test_farmer_creates_a_farm(client: httpx.AsyncClient, factory: Factory) -> None:
    farmer = await factory.user(Role.FARMER)

    response = await client.post(
        "/api/farms",
        json={
            "name": "  Green Acre Farm ",
            "pickupLocation": "Saturday Market, stall 12",
            "pickupInstructions": "Ask at the green tent.",
            "timezone": "America/Los_Angeles",
        },
        headers=await factory.headers(farmer),
    )

    farm = ok(response, 201)
    assert farm["ownerId"] == farmer.id
    assert farm["name"] == "Green Acre Farm"
    assert farm["pickupLocation"] == "Saturday Market, stall 12"
    assert farm["pickupInstructions"] == "Ask at the green tent."
    assert farm["timezone"] == "America/Los_Angeles"
    assert farm["id"]
    assert farm["createdAt"]


async def test_farm_timezone_defaults_to_utc(client: httpx.AsyncClient, factory: Factory) -> None:
    farmer = await factory.user(Role.FARMER)

    response = await client.post(
        "/api/farms", json={"name": "Plain Farm"}, headers=await factory.headers(farmer)
    )

    farm = ok(response, 201)
    assert farm["timezone"] == "UTC"
    assert farm["pickupLocation"] is None


@pytest.mark.parametrize("role", [Role.CUSTOMER, Role.ADMIN])
async def test_only_a_farmer_can_create_a_farm(
    client: httpx.AsyncClient, factory: Factory, role: Role
) -> None:
    user = await factory.user(role)
    headers = await factory.headers(user)

    response = await client.post("/api/farms", json={"name": "Not mine"}, headers=headers)

    error(response, 403)
    assert ok(await client.get("/api/farms", headers=headers)) == []


@pytest.mark.parametrize(
    ("body", "bad_field"),
    [
        ({"name": "Farm", "timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"name": "Farm", "timezone": "utc+2"}, "timezone"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 201}, "name"),
        ({}, "name"),
        ({"name": "Farm", "owner": "someone-else"}, "owner"),
        ({"name": "Green\u0000Acre"}, "name"),
        ({"name": "Farm", "pickupLocation": "Stall\u00001"}, "pickupLocation"),
    ],
)
async def test_invalid_farm_is_refused_with_field_details(
    client: httpx.AsyncClient, factory: Factory, body: dict[str, Any], bad_field: str
) -> None:
    farmer = await factory.user(Role.FARMER)

    response = await client.post("/api/farms", json=body, headers=await factory.headers(farmer))

    assert bad_field in fields(error(response, 422))


async def test_farm_owner_comes_from_the_session_not_the_body(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    farmer = await factory.user(Role.FARMER)
    other = await factory.user(Role.FARMER)

    response = await client.post(
        "/api/farms",
        json={"name": "Sneaky", "ownerId": other.id},
        headers=await factory.headers(farmer),
    )

    assert "ownerId" in fields(error(response, 422))


async def test_any_signed_in_user_lists_all_farms(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    first = await factory.farm(name="Hillside Orchard")
    second = await factory.farm(name="Apple Valley")
    customer = await factory.user(Role.CUSTOMER)

    farms = ok(await client.get("/api/farms", headers=await factory.headers(customer)))

    assert [farm["id"] for farm in farms] == [second.id, first.id]  # by name


async def test_mine_lists_only_the_farms_the_farmer_owns(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    farmer = await factory.user(Role.FARMER)
    mine = [await factory.farm(farmer), await factory.farm(farmer)]
    await factory.farm()
    headers = await factory.headers(farmer)

    farms = ok(await client.get("/api/farms?mine=true", headers=headers))

    assert {farm["id"] for farm in farms} == {farm.id for farm in mine}
    assert len(ok(await client.get("/api/farms", headers=headers))) == 3


async def test_mine_is_empty_for_a_customer(client: httpx.AsyncClient, factory: Factory) -> None:
    await factory.farm()
    customer = await factory.user(Role.CUSTOMER)

    farms = ok(await client.get("/api/farms?mine=true", headers=await factory.headers(customer)))

    assert farms == []


async def test_get_a_farm(client: httpx.AsyncClient, factory: Factory) -> None:
    farm = await factory.farm(name="Green Acre", timezone="Europe/Paris")
    customer = await factory.user(Role.CUSTOMER)

    data = ok(await client.get(f"/api/farms/{farm.id}", headers=await factory.headers(customer)))

    assert data["id"] == farm.id
    assert data["name"] == "Green Acre"
    assert data["timezone"] == "Europe/Paris"
    assert data["ownerId"] == farm.owner_id


@pytest.mark.parametrize(
    "farm_id", ["00000000-0000-0000-0000-000000000000", "no-such-farm", "x" * 100]
)
async def test_unknown_farm_is_not_found(
    client: httpx.AsyncClient, factory: Factory, farm_id: str
) -> None:
    customer = await factory.user(Role.CUSTOMER)
    headers = await factory.headers(customer)

    body = error(await client.get(f"/api/farms/{farm_id}", headers=headers), 404)
    products = await client.get(f"/api/farms/{farm_id}/products", headers=headers)

    assert body["error"] == "Farm not found."
    error(products, 404)


@pytest.mark.parametrize("path", ["/api/farms/%00", "/api/farms/abc%00def/products"])
async def test_nul_character_in_a_farm_id_is_a_client_error_not_a_crash(
    client: httpx.AsyncClient, factory: Factory, path: str
) -> None:
    customer = await factory.user(Role.CUSTOMER)

    response = await client.get(path, headers=await factory.headers(customer))

    assert response.status_code in (400, 404), response.text
    error(response, response.status_code)


# Products


async def test_owner_adds_a_product_and_the_price_is_a_decimal_string(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    _farmer, farm, headers = await farmer_with_farm(factory)

    response = await client.post(
        f"/api/farms/{farm.id}/products", json=product_body(), headers=headers
    )

    product = ok(response, 201)
    assert product["farmId"] == farm.id
    assert product["name"] == "Heirloom tomatoes"
    assert product["unit"] == "lb"
    assert product["price"] == "12.50"
    assert product["stock"] == 40


@pytest.mark.parametrize(
    ("sent", "shown"),
    [("12.5", "12.50"), (3, "3.00"), ("0.5", "0.50"), ("99999999.99", "99999999.99")],
)
async def test_price_is_always_shown_with_two_decimals(
    client: httpx.AsyncClient, factory: Factory, sent: Any, shown: str
) -> None:
    _farmer, farm, headers = await farmer_with_farm(factory)

    created = ok(
        await client.post(
            f"/api/farms/{farm.id}/products", json=product_body(price=sent), headers=headers
        ),
        201,
    )
    listed = ok(await client.get(f"/api/farms/{farm.id}/products", headers=headers))

    assert created["price"] == shown
    assert listed[0]["price"] == shown


async def test_admin_can_add_a_product_to_any_farm(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    farm = await factory.farm()
    admin = await factory.user(Role.ADMIN)

    response = await client.post(
        f"/api/farms/{farm.id}/products", json=product_body(), headers=await factory.headers(admin)
    )

    assert ok(response, 201)["farmId"] == farm.id


@pytest.mark.parametrize("role", [Role.FARMER, Role.CUSTOMER])
async def test_only_the_owner_or_an_admin_can_add_a_product(
    client: httpx.AsyncClient, factory: Factory, role: Role
) -> None:
    _farmer, farm, owner_headers = await farmer_with_farm(factory)
    intruder = await factory.user(role)

    response = await client.post(
        f"/api/farms/{farm.id}/products",
        json=product_body(),
        headers=await factory.headers(intruder),
    )

    error(response, 403)
    assert ok(await client.get(f"/api/farms/{farm.id}/products", headers=owner_headers)) == []


async def test_adding_a_product_to_an_unknown_farm_is_not_found(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    farmer = await factory.user(Role.FARMER)

    response = await client.post(
        "/api/farms/no-such-farm/products",
        json=product_body(),
        headers=await factory.headers(farmer),
    )

    error(response, 404)


@pytest.mark.parametrize(
    ("overrides", "bad_field"),
    [
        ({"price": "-0.01"}, "price"),
        ({"price": 0}, "price"),  # nothing is given away: a price is more than 0
        ({"price": "0.00"}, "price"),
        ({"price": -5}, "price"),
        ({"price": "12.505"}, "price"),
        ({"price": "100000000.00"}, "price"),
        ({"price": "NaN"}, "price"),
        ({"price": "Infinity"}, "price"),
        ({"price": "twelve"}, "price"),
        ({"stock": -1}, "stock"),
        ({"stock": 1.5}, "stock"),
        ({"stock": 10_000_001}, "stock"),
        ({"name": ""}, "name"),
        ({"unit": ""}, "unit"),
        ({"colour": "red"}, "colour"),
        ({"farmId": "another-farm"}, "farmId"),
        ({"unit": "l\u0000b"}, "unit"),
    ],
)
async def test_invalid_product_is_refused_with_field_details(
    client: httpx.AsyncClient, factory: Factory, overrides: dict[str, Any], bad_field: str
) -> None:
    _farmer, farm, headers = await farmer_with_farm(factory)

    response = await client.post(
        f"/api/farms/{farm.id}/products", json=product_body(**overrides), headers=headers
    )

    assert bad_field in fields(error(response, 422))
    assert ok(await client.get(f"/api/farms/{farm.id}/products", headers=headers)) == []


async def test_product_missing_fields_names_each_of_them(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    _farmer, farm, headers = await farmer_with_farm(factory)

    response = await client.post(f"/api/farms/{farm.id}/products", json={}, headers=headers)

    assert fields(error(response, 422)) >= {"name", "unit", "price", "stock"}


async def test_owner_changes_stock_and_price(client: httpx.AsyncClient, factory: Factory) -> None:
    _farmer, farm, headers = await farmer_with_farm(factory)
    product = await factory.product(farm, price="4.50", stock=10, name="Eggs")

    response = await client.patch(
        f"/api/farms/{farm.id}/products/{product.id}",
        json={"stock": 0, "price": "5"},
        headers=headers,
    )

    changed = ok(response)
    assert changed["stock"] == 0
    assert changed["price"] == "5.00"
    assert changed["name"] == "Eggs"
    listed = ok(await client.get(f"/api/farms/{farm.id}/products", headers=headers))
    assert [(p["id"], p["stock"], p["price"]) for p in listed] == [(product.id, 0, "5.00")]


async def test_empty_patch_changes_nothing(client: httpx.AsyncClient, factory: Factory) -> None:
    _farmer, farm, headers = await farmer_with_farm(factory)
    product = await factory.product(farm, price="4.50", stock=10)

    response = await client.patch(
        f"/api/farms/{farm.id}/products/{product.id}", json={}, headers=headers
    )

    unchanged = ok(response)
    assert (unchanged["stock"], unchanged["price"]) == (10, "4.50")


async def test_admin_can_change_any_product(client: httpx.AsyncClient, factory: Factory) -> None:
    farm = await factory.farm()
    product = await factory.product(farm, stock=10)
    admin = await factory.user(Role.ADMIN)

    response = await client.patch(
        f"/api/farms/{farm.id}/products/{product.id}",
        json={"stock": 3},
        headers=await factory.headers(admin),
    )

    assert ok(response)["stock"] == 3


@pytest.mark.parametrize("field", ["stock", "price", "name", "unit"])
async def test_clearing_a_product_field_is_refused(
    client: httpx.AsyncClient, factory: Factory, field: str
) -> None:
    _farmer, farm, headers = await farmer_with_farm(factory)
    product = await factory.product(farm, stock=10)

    response = await client.patch(
        f"/api/farms/{farm.id}/products/{product.id}", json={field: None}, headers=headers
    )

    assert field in fields(error(response, 422))
    listed = ok(await client.get(f"/api/farms/{farm.id}/products", headers=headers))
    assert listed[0]["stock"] == 10


@pytest.mark.parametrize(
    ("patch", "bad_field"),
    [
        ({"stock": -3}, "stock"),
        ({"price": "-1"}, "price"),
        ({"price": "0"}, "price"),
        ({"onSale": "maybe"}, "onSale"),
        ({"reserved": 2}, "reserved"),
    ],
)
async def test_invalid_product_change_is_refused(
    client: httpx.AsyncClient, factory: Factory, patch: dict[str, Any], bad_field: str
) -> None:
    _farmer, farm, headers = await farmer_with_farm(factory)
    product = await factory.product(farm, stock=10)

    response = await client.patch(
        f"/api/farms/{farm.id}/products/{product.id}", json=patch, headers=headers
    )

    assert bad_field in fields(error(response, 422))


async def test_another_farmer_cannot_change_a_product(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    _farmer, farm, headers = await farmer_with_farm(factory)
    product = await factory.product(farm, stock=10)
    intruder = await factory.user(Role.FARMER)

    response = await client.patch(
        f"/api/farms/{farm.id}/products/{product.id}",
        json={"stock": 0},
        headers=await factory.headers(intruder),
    )

    error(response, 403)
    listed = ok(await client.get(f"/api/farms/{farm.id}/products", headers=headers))
    assert listed[0]["stock"] == 10


async def test_product_of_another_farm_is_not_found_through_my_farm(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    _farmer, my_farm, headers = await farmer_with_farm(factory)
    other_farm = await factory.farm()
    theirs = await factory.product(other_farm, stock=10)

    response = await client.patch(
        f"/api/farms/{my_farm.id}/products/{theirs.id}", json={"stock": 0}, headers=headers
    )

    assert error(response, 404)["error"] == "Product not found."
    listed = ok(await client.get(f"/api/farms/{other_farm.id}/products", headers=headers))
    assert listed[0]["stock"] == 10


async def test_unknown_product_is_not_found(client: httpx.AsyncClient, factory: Factory) -> None:
    _farmer, farm, headers = await farmer_with_farm(factory)

    response = await client.patch(
        f"/api/farms/{farm.id}/products/no-such-product", json={"stock": 1}, headers=headers
    )

    error(response, 404)


async def test_products_are_listed_by_name_for_any_signed_in_user(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    farm = await factory.farm()
    pears = await factory.product(farm, name="Pears", price="3.25")
    apples = await factory.product(farm, name="Apples", price="3.75")
    await factory.product(await factory.farm(), name="Elsewhere")
    customer = await factory.user(Role.CUSTOMER)

    listed = ok(
        await client.get(f"/api/farms/{farm.id}/products", headers=await factory.headers(customer))
    )

    assert [(p["id"], p["price"]) for p in listed] == [(apples.id, "3.75"), (pears.id, "3.25")]
    assert all(set(p) >= {"id", "farmId", "name", "unit", "price", "stock"} for p in listed)


async def test_an_off_sale_product_is_listed_only_for_its_farm(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    _farmer, farm, headers = await farmer_with_farm(factory)
    eggs = await factory.product(farm, name="Eggs")
    kale = await factory.product(farm, name="Kale")
    customer_headers = await factory.headers(await factory.user(Role.CUSTOMER))
    stranger_headers = await factory.headers(await factory.user(Role.FARMER))

    changed = ok(
        await client.patch(
            f"/api/farms/{farm.id}/products/{kale.id}", json={"onSale": False}, headers=headers
        )
    )

    assert changed["onSale"] is False
    url = f"/api/farms/{farm.id}/products"
    assert [p["id"] for p in ok(await client.get(url, headers=customer_headers))] == [eggs.id]
    assert [p["id"] for p in ok(await client.get(url, headers=stranger_headers))] == [eggs.id]
    mine = ok(await client.get(url, headers=headers))
    assert [(p["id"], p["onSale"]) for p in mine] == [(eggs.id, True), (kale.id, False)]


async def test_a_stock_set_from_a_stale_view_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    _farmer, farm, headers = await farmer_with_farm(factory)
    eggs = await factory.product(farm, name="Eggs", stock=10)
    await factory.order(farm=farm, products=[eggs], quantity=3)  # stock now 7
    url = f"/api/farms/{farm.id}/products/{eggs.id}"

    stale = await client.patch(url, json={"stock": 20, "expectedStock": 10}, headers=headers)
    fresh = await client.patch(url, json={"stock": 20, "expectedStock": 7}, headers=headers)

    body = error(stale, 409)
    assert body["error"] == "Stock changed meanwhile (now 7)."
    assert body["details"] == {"field": "stock", "currentStock": 7}
    assert ok(fresh)["stock"] == 20
