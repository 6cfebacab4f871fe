"""Helpers for the order API tests: calls that read like the user's action, and checks."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from farmstand.accounts.models import User
from farmstand.accounts.roles import Role
from farmstand.catalog.models import Farm, Product
from farmstand.orders.records import OrderRecord
from farmstand.orders.states import FulfillmentType, OrderStatus, replay
from tests.factories import Factory

ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
Headers = dict[str, str]
Json = dict[str, Any]


@dataclass
class Party:
    """A signed-in user and the headers that carry their session."""

    user: User
    headers: Headers

    @property
    def id(self) -> str:
        return self.user.id


@dataclass
class Shop:
    """A farm with its farmer, two products and a customer: the usual cast of a test."""

    farm: Farm
    farmer: Party
    customer: Party
    carrots: Product  # 4.50 a lb, 10 in stock
    eggs: Product  # 2.25 a lb, 5 in stock


async def sign_in(factory: Factory, role: Role) -> Party:
    """A new user of ``role``, signed in."""
    user = await factory.user(role)
    return Party(user, await factory.headers(user))


async def open_shop(factory: Factory, *, pickup_location: str = "Barn door, 12 Mill Lane") -> Shop:
    """A new farm with its signed-in farmer and customer, 10 carrots (4.50) and 5 eggs (2.25)."""
    farmer = await sign_in(factory, Role.FARMER)
    farm = await factory.farm(farmer.user, pickup_location=pickup_location)
    return Shop(
        farm=farm,
        farmer=farmer,
        customer=await sign_in(factory, Role.CUSTOMER),
        carrots=await factory.product(farm, price="4.50", stock=10, name="Carrots"),
        eggs=await factory.product(farm, price="2.25", stock=5, name="Eggs"),
    )


def expect(response: httpx.Response, status: int, case: object = None) -> Any:
    """Assert the status code (showing the body, and the case, when it differs) and return the
    reply's data (or, for an error, the whole error envelope)."""
    assert response.status_code == status, f"{case or ''} {response.status_code}: {response.text}"
    body = response.json()
    if status < 400:
        assert body["success"] is True
        return body["data"]
    assert body["success"] is False
    assert isinstance(body["error"], str) and body["error"]
    return body


async def place(client: httpx.AsyncClient, who: Party, body: Json) -> httpx.Response:
    return await client.post("/api/orders", json=body, headers=who.headers)


def order_body(shop: Shop, *lines: tuple[Product, int], **fields: Any) -> Json:
    """A POST /api/orders body for the shop's farm (PICKUP unless ``fields`` say otherwise)."""
    return {
        "farmId": shop.farm.id,
        "items": [{"productId": product.id, "quantity": qty} for product, qty in lines],
        **fields,
    }


async def set_status(
    client: httpx.AsyncClient,
    order_id: str,
    who: Party,
    status: OrderStatus | str,
    *,
    reason: str | None = None,
    expected_version: int | None = None,
) -> httpx.Response:
    body: Json = {"status": str(status)}
    if reason is not None:
        body["reason"] = reason
    if expected_version is not None:
        body["expectedVersion"] = expected_version
    return await client.put(f"/api/orders/{order_id}/status", json=body, headers=who.headers)


async def get_order(client: httpx.AsyncClient, order_id: str, who: Party) -> Json:
    return expect(await client.get(f"/api/orders/{order_id}", headers=who.headers), 200)


async def history(client: httpx.AsyncClient, order_id: str, who: Party) -> list[Json]:
    response = await client.get(f"/api/orders/{order_id}/status", headers=who.headers)
    return expect(response, 200)


def replayed(rows: list[Json]) -> OrderStatus:
    """The status the history leads to, checked step by step against the transition table."""
    return replay(
        [
            (
                OrderStatus(row["fromStatus"]) if row["fromStatus"] else None,
                OrderStatus(row["toStatus"]),
            )
            for row in rows
        ]
    )


async def stock(client: httpx.AsyncClient, farm: Farm, who: Party) -> dict[str, int]:
    """Stock per product id, as the farm's product list shows it."""
    response = await client.get(f"/api/farms/{farm.id}/products", headers=who.headers)
    return {product["id"]: product["stock"] for product in expect(response, 200)}


async def make_order(
    factory: Factory,
    shop: Shop,
    status: OrderStatus = OrderStatus.PENDING,
    *,
    fulfillment: FulfillmentType = FulfillmentType.PICKUP,
    customer: Party | None = None,
    quantity: int = 1,
    placed_at: datetime | None = None,
) -> OrderRecord:
    """An order of the shop's carrots, walked to ``status`` by the farm."""
    return await factory.order(
        status=status,
        fulfillment=fulfillment,
        customer=(customer or shop.customer).user,
        farm=shop.farm,
        products=[shop.carrots],
        quantity=quantity,
        placed_at=placed_at,
    )
