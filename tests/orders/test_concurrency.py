"""Races, on SQLite and PostgreSQL: many requests at once on one order or on the last stock.

Each test fires its requests together through the ASGI client with ``asyncio.gather``; the
app's pool is sized so that on PostgreSQL they really are concurrent transactions (and the
row lock, the version check and the stock compare-and-set are what decide the winner).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event

from farmstand.accounts.roles import Role
from farmstand.app import create_app
from farmstand.config import Settings
from farmstand.orders.states import OrderStatus
from tests import services
from tests.conftest import make_settings
from tests.factories import Factory
from tests.orders.helpers import (
    Party,
    Shop,
    expect,
    get_order,
    history,
    make_order,
    open_shop,
    order_body,
    place,
    replayed,
    set_status,
    sign_in,
    stock,
)

RACERS = 50
# SQLite's pool holds 15 connections; PostgreSQL's is sized below for all the racers.
MIN_OVERLAP = 10
S = OrderStatus


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """The app under test, with a pool large enough for every racer to hold a connection."""
    return make_settings(database_url, tmp_path, db_pool_size=10, db_max_overflow=RACERS)


class PoolWatch:
    """Counts the app's database connections in use, to show the racers really overlapped."""

    def __init__(self) -> None:
        self.in_use = 0
        self.peak = 0

    def checkout(self, *_args: object) -> None:
        self.in_use += 1
        self.peak = max(self.peak, self.in_use)

    def checkin(self, *_args: object) -> None:
        self.in_use -= 1


@pytest.fixture
def pool_watch(app: FastAPI) -> PoolWatch:
    watch = PoolWatch()
    engine = app.state.runtime.db.engine.sync_engine
    event.listen(engine, "checkout", watch.checkout)
    event.listen(engine, "checkin", watch.checkin)
    return watch


def codes(responses: list[httpx.Response]) -> Counter[int]:
    return Counter(response.status_code for response in responses)


async def test_one_of_fifty_identical_confirmations_wins(
    client: httpx.AsyncClient, factory: Factory, shop: Shop, admin: Party, pool_watch: PoolWatch
) -> None:
    # Given a pending order that the farmer and an admin both have open
    order = await make_order(factory, shop)

    # When 50 requests confirm it at the same moment
    responses = await asyncio.gather(
        *(
            set_status(client, order.id, (shop.farmer, admin)[i % 2], S.CONFIRMED)
            for i in range(RACERS)
        )
    )

    # Then exactly one wins and the other 49 are told it changed under them
    assert codes(responses) == {200: 1, 409: RACERS - 1}, [r.text for r in responses][:3]
    assert pool_watch.peak >= MIN_OVERLAP
    assert all(r.json()["success"] is False for r in responses if r.status_code == 409)
    final = await get_order(client, order.id, shop.farmer)
    assert (final["status"], final["version"]) == (S.CONFIRMED, order.version + 1)

    # And the history gained exactly one row, which replays to the order's status
    rows = await history(client, order.id, shop.farmer)
    assert [(row["fromStatus"], row["toStatus"]) for row in rows] == [
        (None, "PENDING"),
        ("PENDING", "CONFIRMED"),
    ]
    assert replayed(rows) == final["status"]


async def test_one_of_fifty_conflicting_changes_at_the_same_version_wins(
    client: httpx.AsyncClient, factory: Factory, shop: Shop, pool_watch: PoolWatch, admin: Party
) -> None:
    # Given a pending order of 1 carrot (10 in stock, 9 left), seen by everyone at version 1
    order = await make_order(factory, shop)
    seen = order.version

    # When 50 requests at once ask for CONFIRMED or CANCELLED, each based on that version
    def change(i: int) -> tuple[Party, OrderStatus, str | None]:
        who = (shop.farmer, admin)[i % 2]
        return (who, S.CONFIRMED, None) if i % 3 else (who, S.CANCELLED, f"racer {i}")

    plans = [change(i) for i in range(RACERS)]
    responses = await asyncio.gather(
        *(
            set_status(client, order.id, who, target, reason=reason, expected_version=seen)
            for who, target, reason in plans
        )
    )

    # Then exactly one wins; the others are conflicts, not errors
    assert codes(responses) == {200: 1, 409: RACERS - 1}, [r.text for r in responses][:3]
    assert pool_watch.peak >= MIN_OVERLAP
    [winner] = [i for i, response in enumerate(responses) if response.status_code == 200]
    who, target, reason = plans[winner]

    # And the order, its history and the stock all tell the winner's story, once
    final = await get_order(client, order.id, shop.farmer)
    assert (final["status"], final["version"]) == (target, seen + 1)
    rows = await history(client, order.id, shop.farmer)
    assert len(rows) == 2
    assert (rows[1]["toStatus"], rows[1]["changedBy"], rows[1]["reason"]) == (
        target,
        who.id,
        reason,
    )
    assert replayed(rows) == final["status"]
    expected_stock = 10 if target is S.CANCELLED else 9
    assert (await stock(client, shop.farm, shop.farmer))[shop.carrots.id] == expected_stock


async def test_orders_racing_for_the_last_units_never_oversell(
    client: httpx.AsyncClient, factory: Factory, shop: Shop, pool_watch: PoolWatch
) -> None:
    # Given 5 eggs and 10 carrots left, and four customers
    customers = [shop.customer] + [await sign_in(factory, Role.CUSTOMER) for _ in range(3)]

    # When 20 orders of one egg and one carrot arrive together (lines in either order)
    def body(i: int) -> dict[str, object]:
        lines = [(shop.eggs, 1), (shop.carrots, 1)]
        return order_body(shop, *(lines if i % 2 else lines[::-1]))

    responses = await asyncio.gather(
        *(place(client, customers[i % len(customers)], body(i)) for i in range(20))
    )

    # Then exactly as many orders succeed as there were eggs, and the losers took nothing
    assert codes(responses) == {201: 5, 409: 15}, [r.text for r in responses][:3]
    assert pool_watch.peak >= MIN_OVERLAP
    assert await stock(client, shop.farm, shop.farmer) == {shop.eggs.id: 0, shop.carrots.id: 5}
    page = expect(await client.get("/api/orders?limit=100", headers=shop.farmer.headers), 200)
    assert len(page["items"]) == 5
    assert {order["id"] for order in page["items"]} == {
        response.json()["data"]["id"] for response in responses if response.status_code == 201
    }


async def test_orders_racing_for_more_than_is_left_get_what_fits(
    client: httpx.AsyncClient, factory: Factory, shop: Shop
) -> None:
    # Given 10 carrots; 12 orders of 1, 2 or 3 at once (24 wanted)
    quantities = [1, 2, 3] * 4
    random.Random(7).shuffle(quantities)

    responses = await asyncio.gather(
        *(place(client, shop.customer, order_body(shop, (shop.carrots, q))) for q in quantities)
    )

    # Then the stock never goes below zero, and what was sold is exactly what was taken
    sold = sum(q for q, r in zip(quantities, responses, strict=True) if r.status_code == 201)
    assert set(codes(responses)) <= {201, 409}
    left = (await stock(client, shop.farm, shop.farmer))[shop.carrots.id]
    assert left >= 0
    assert sold + left == 10
    # (every order that lost found less left than it asked for)
    refused = [q for q, r in zip(quantities, responses, strict=True) if r.status_code == 409]
    assert all(q > left for q in refused)


async def test_concurrent_bulk_updates_over_the_same_orders_apply_each_change_once(
    client: httpx.AsyncClient, factory: Factory, shop: Shop, pool_watch: PoolWatch, admin: Party
) -> None:
    # Given five pending orders, and eight admins' bulk requests naming them in any order
    orders = [await make_order(factory, shop) for _ in range(5)]
    ids = [order.id for order in orders]
    requests = [random.Random(seed).sample(ids, len(ids)) for seed in range(8)]

    responses = await asyncio.gather(
        *(
            client.post(
                "/api/orders/bulk-status",
                json={"orderIds": order_ids, "status": "CONFIRMED"},
                headers=admin.headers,
            )
            for order_ids in requests
        )
    )

    # Then no request deadlocked, and each order was confirmed exactly once
    results = [expect(response, 200) for response in responses]
    assert pool_watch.peak >= len(requests)
    assert sum(result["succeeded"] for result in results) == len(ids)
    assert sum(result["failed"] for result in results) == len(ids) * (len(requests) - 1)
    for order_id in ids:
        rows = await history(client, order_id, admin)
        assert [row["toStatus"] for row in rows] == ["PENDING", "CONFIRMED"]


@pytest.mark.postgres
async def test_racers_queue_for_a_small_pool_instead_of_failing(
    postgres_url: str, tmp_path: Path
) -> None:
    # Given the app on PostgreSQL with a pool of 5 connections and no overflow
    small = make_settings(postgres_url, tmp_path, db_pool_size=5, db_max_overflow=0)
    app = create_app(small)
    watch = PoolWatch()
    transport = httpx.ASGITransport(app=app)
    async with (
        services.lifespan(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        engine = app.state.runtime.db.engine.sync_engine
        event.listen(engine, "checkout", watch.checkout)
        event.listen(engine, "checkin", watch.checkin)
        factory = Factory(app.state.runtime, client)
        shop = await open_shop(factory)
        order = await make_order(factory, shop)

        # When 50 confirmations arrive at once (no request may need a second connection while
        # it holds one, or they would starve each other)
        responses = await asyncio.wait_for(
            asyncio.gather(
                *(set_status(client, order.id, shop.farmer, S.CONFIRMED) for _ in range(RACERS))
            ),
            timeout=20,
        )

        # Then they waited their turn: one winner, 49 conflicts, never more than 5 connections
        assert codes(responses) == {200: 1, 409: RACERS - 1}, [r.text for r in responses][:3]
        assert watch.peak <= 5
        assert replayed(await history(client, order.id, shop.farmer)) == S.CONFIRMED
