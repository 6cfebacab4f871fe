"""What the hot requests cost the database, pinned: a change that adds a round trip fails here.

Counted on the app's request engine, for the statements the request itself runs (the event
sequencer and the hub work on their own, after commit). A round trip is a statement, plus
BEGIN and COMMIT when the request opens a transaction (PostgreSQL reads run without one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from farmstand.accounts.roles import Role
from farmstand.orders.states import OrderStatus
from tests.factories import Factory


@dataclass
class Trips:
    statements: list[str] = field(default_factory=list)
    transactions: int = 0

    @property
    def round_trips(self) -> int:
        return len(self.statements) + 2 * self.transactions


@contextmanager
def counting(factory: Factory) -> Iterator[Trips]:
    """Count what this task sends on the request engine while the block runs."""
    engine = factory.runtime.db.engine.sync_engine
    task = asyncio.current_task()
    trips = Trips()

    def mine() -> bool:
        return asyncio.current_task() is task

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if mine() and not statement.startswith(("BEGIN", "PRAGMA")):
            trips.statements.append(statement.split(None, 1)[0])

    def on_begin(conn: Any) -> None:
        autocommit = conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
        if mine() and not autocommit:
            trips.transactions += 1

    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "begin", on_begin)
    try:
        yield trips
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine, "begin", on_begin)


@pytest.fixture
async def scene(factory: Factory) -> dict[str, Any]:
    farmer = await factory.user(Role.FARMER)
    customer = await factory.user(Role.CUSTOMER)
    farm = await factory.farm(farmer)
    products = [await factory.product(farm), await factory.product(farm)]
    orders = [
        await factory.order(farm=farm, customer=customer, products=products) for _ in range(3)
    ]
    return {
        "farm": farm,
        "products": products,
        "orders": orders,
        "farmer": await factory.headers(farmer),
        "customer": await factory.headers(customer),
    }


def is_postgres(factory: Factory) -> bool:
    return not factory.runtime.db.is_sqlite


async def test_a_signed_in_request_needs_no_database_once_the_session_is_known(
    client: httpx.AsyncClient, factory: Factory, scene: dict[str, Any]
) -> None:
    assert (await client.get("/api/auth/me", headers=scene["farmer"])).status_code == 200
    with counting(factory) as trips:
        response = await client.get("/api/auth/me", headers=scene["farmer"])
    assert response.status_code == 200
    assert trips.round_trips == 0


async def test_a_status_change_is_one_read_and_one_write(
    client: httpx.AsyncClient, factory: Factory, scene: dict[str, Any]
) -> None:
    first, second = scene["orders"][:2]
    body = {"status": "CONFIRMED"}
    # Warm: the session is cached, the statements compiled.
    await client.put(f"/api/orders/{first.id}/status", json=body, headers=scene["farmer"])

    with counting(factory) as trips:
        response = await client.put(
            f"/api/orders/{second.id}/status", json=body, headers=scene["farmer"]
        )

    assert response.status_code == 200, response.text
    assert response.json()["data"]["status"] == OrderStatus.CONFIRMED
    assert trips.transactions == 1
    if is_postgres(factory):
        # Lock and read the order (with items and the customer's preferences), then write the
        # status, history, event and notifications as one statement.
        assert trips.statements == ["SELECT", "WITH"]
        assert trips.round_trips == 4
    else:
        # SQLite is in-process: the same writes, one statement each.
        assert trips.statements == ["SELECT", "UPDATE", "INSERT", "INSERT", "INSERT"]


async def test_a_history_fetch_is_one_statement(
    client: httpx.AsyncClient, factory: Factory, scene: dict[str, Any]
) -> None:
    order = scene["orders"][0]
    url = f"/api/orders/{order.id}/status"
    await client.get(url, headers=scene["customer"])
    with counting(factory) as trips:
        response = await client.get(url, headers=scene["customer"])
    assert response.status_code == 200
    assert trips.statements == ["SELECT"]
    assert trips.round_trips == (1 if is_postgres(factory) else 3)


async def test_placing_an_order_is_four_statements(
    client: httpx.AsyncClient, factory: Factory, scene: dict[str, Any]
) -> None:
    body = {
        "farmId": scene["farm"].id,
        "items": [{"productId": p.id, "quantity": 1} for p in scene["products"]],
    }
    await client.post("/api/orders", json=body, headers=scene["customer"])
    with counting(factory) as trips:
        response = await client.post("/api/orders", json=body, headers=scene["customer"])
    assert response.status_code == 201, response.text
    assert trips.transactions == 1
    # First the order rate limits: one upsert counting the customer's and the address's
    # orders in this window (shared by every process; on PostgreSQL committed on its own, so
    # orders from one address do not queue behind each other's counter row).
    assert trips.statements[0] == "INSERT"
    if is_postgres(factory):
        # Lock the products (with the farm and its owner's preferences), insert the order,
        # then the stock, items, history, events and notifications together.
        assert trips.statements == ["INSERT", "SELECT", "INSERT", "WITH"]
    else:
        assert trips.statements[:3] == ["INSERT", "SELECT", "INSERT"]
        assert len(trips.statements) == 8
