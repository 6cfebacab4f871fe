"""Rate limits on registration, verification emails and order placement: counted in the
database (shared by every process), per account and per address, 429 with Retry-After."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from farmstand.accounts.roles import Role
from tests.accounts.test_api import app_client, register_body, second_client
from tests.factories import Factory


async def test_registrations_are_limited_per_email_and_per_address(
    database_url: str, tmp_path: Path
) -> None:
    async with app_client(
        database_url,
        tmp_path,
        register_limit_per_email=2,
        register_limit_per_address=3,
        rate_limit_window_seconds=600,
    ) as (client, _factory, application):
        same_email = [
            await client.post("/api/auth/register", json=register_body()) for _ in range(3)
        ]
        other_email = await client.post(
            "/api/auth/register", json=register_body(email="bo@example.com")
        )
        address_full = await client.post(
            "/api/auth/register", json=register_body(email="cy@example.com")
        )
        async with second_client(application, address="198.51.100.9") as elsewhere:
            from_elsewhere = await elsewhere.post(
                "/api/auth/register", json=register_body(email="cy@example.com")
            )

    assert [r.status_code for r in same_email] == [202, 202, 429]
    assert 0 < int(same_email[-1].headers["retry-after"]) <= 600
    assert same_email[-1].json()["success"] is False
    # The refused registration was not counted: the address has used 3 (2 + Bo's)
    assert other_email.status_code == 202
    assert address_full.status_code == 429
    assert from_elsewhere.status_code == 202


async def test_verification_resends_are_limited(database_url: str, tmp_path: Path) -> None:
    async with app_client(database_url, tmp_path, verification_resend_limit_per_email=2) as (
        client,
        _factory,
        _,
    ):
        replies = [
            await client.post("/api/auth/verify/resend", json={"email": "ann@example.com"})
            for _ in range(3)
        ]

    assert [r.status_code for r in replies] == [202, 202, 429]
    assert int(replies[-1].headers["retry-after"]) >= 1


async def _order(
    client: httpx.AsyncClient, factory: Factory, headers: dict[str, str], body: Mapping[str, Any]
) -> int:
    return (await client.post("/api/orders", json=body, headers=headers)).status_code


async def test_orders_are_limited_per_account_and_per_address(
    database_url: str, tmp_path: Path
) -> None:
    async with app_client(
        database_url, tmp_path, order_limit_per_account=2, order_limit_per_address=3
    ) as (client, factory, application):
        farm = await factory.farm()
        product = await factory.product(farm)
        body = {"farmId": farm.id, "items": [{"productId": product.id, "quantity": 1}]}
        ann = await factory.headers(await factory.user(Role.CUSTOMER))
        bo = await factory.headers(await factory.user(Role.CUSTOMER))
        ann_orders = [await _order(client, factory, ann, body) for _ in range(3)]
        refused = await client.post("/api/orders", json=body, headers=ann)
        bo_first = await _order(client, factory, bo, body)
        bo_second = await _order(client, factory, bo, body)  # the address's 4th
        async with second_client(application, address="198.51.100.9") as elsewhere:
            bo_elsewhere = await _order(elsewhere, factory, bo, body)

    assert ann_orders == [201, 201, 429]
    assert 0 < int(refused.headers["retry-after"]) <= 3600
    assert "too many orders" in refused.json()["error"]
    assert bo_first == 201
    assert bo_second == 429
    assert bo_elsewhere == 201


async def test_orders_from_one_address_do_not_wait_for_each_other(
    database_url: str, tmp_path: Path
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite: this process's writers take turns by design")
    async with app_client(database_url, tmp_path) as (client, factory, application):
        busy_farm, free_farm = await factory.farm(), await factory.farm()
        busy, free = await factory.product(busy_farm), await factory.product(free_farm)
        ann = await factory.headers(await factory.user(Role.CUSTOMER))
        bo = await factory.headers(await factory.user(Role.CUSTOMER))
        engine = application.state.runtime.db.engine
        # Given Ann's order, counted and then waiting for a product row someone else holds
        async with engine.connect() as holder:
            await holder.execute(
                text("SELECT id FROM products WHERE id = :id FOR UPDATE"), {"id": busy.id}
            )
            waiting = asyncio.create_task(
                client.post(
                    "/api/orders",
                    json={"farmId": busy_farm.id, "items": [{"productId": busy.id, "quantity": 1}]},
                    headers=ann,
                )
            )
            await asyncio.sleep(0.5)
            assert not waiting.done()
            # When Bo orders from the same address meanwhile
            bo_order = await asyncio.wait_for(
                client.post(
                    "/api/orders",
                    json={"farmId": free_farm.id, "items": [{"productId": free.id, "quantity": 1}]},
                    headers=bo,
                ),
                timeout=20,
            )
            await holder.rollback()
        ann_order = await waiting

    # Then Bo's order went through without waiting for Ann's (their address's count is shared)
    assert bo_order.status_code == 201, bo_order.text
    assert ann_order.status_code == 201, ann_order.text
