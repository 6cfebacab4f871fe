"""What the farmer's board costs the server with many orders: time and statements per page.

Seeds one farm with N orders (500 by default) through the real use cases, in every status,
on a fresh SQLite file and on a fresh PostgreSQL database, then requests the board pages in
process (httpx on the ASGI app: no network, no browser) as its farmer, and reports for each
page the median and P95 wall time, the median CPU time of this process (the server's own
work: less disturbed by other processes on a shared machine), and the statements it sent with
the time the database took for them.

    .venv/bin/python bench/board.py                 # 500 orders, SQLite and PostgreSQL
    .venv/bin/python bench/board.py --orders 2000 --runs 200 --only sqlite

Run nothing else meanwhile: the figures are this machine's, one process, one request at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from asgi_lifespan import LifespanManager
from sqlalchemy import event

from farmstand.accounts import service as accounts
from farmstand.accounts.roles import Role
from farmstand.app import create_app
from farmstand.catalog import service as catalog
from farmstand.catalog.schemas import FarmIn, ProductIn
from farmstand.config import load_settings
from farmstand.deps import SESSION_COOKIE
from farmstand.migrate import upgrade
from farmstand.orders import service as orders
from farmstand.orders import states
from farmstand.orders.schemas import DeliveryAddress, OrderIn, OrderItemIn, OrderPatch
from farmstand.orders.states import FulfillmentType, OrderStatus

SECRET = "bench-secret-key-that-is-long-enough-0123456789"
POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432"
PASSWORD = "correct horse battery staple"
STATUSES = list(OrderStatus)
PAGES = {
    "board, All": "",
    "board, Pending": "?tab=pending",
    "board, search": "?q=cust",
    "board, Completed today": "?tab=completed-today",
}


async def seed(app: Any, count: int) -> tuple[str, str]:
    """A farmer, their farm with products, ``count`` orders by 50 customers in every status;
    returns the farm's id and the farmer's session token."""
    runtime = app.state.runtime
    db, passwords = runtime.db, runtime.passwords
    async with db.transaction() as session:
        farmer = await accounts.create_user(
            session, passwords, email="farmer@bench.test", password=PASSWORD,
            name="Bench Farmer", role=Role.FARMER,
        )  # fmt: skip
        farm = await catalog.create_farm(
            session,
            farmer,
            FarmIn(name="Bench Farm", timezone="America/Chicago", max_open_orders=1000,
                   max_item_quantity=1000),
        )  # fmt: skip
        products = [
            await catalog.create_product(
                session,
                farmer,
                farm.id,
                ProductIn(name=f"Product {n}", unit="lb", price="3.50", stock=1_000_000),
            )
            for n in range(5)
        ]
        customers = [
            await accounts.create_user(
                session,
                passwords,
                email=f"customer{n}@bench.test",
                password=PASSWORD,
                name=f"Customer {n}",
                role=Role.CUSTOMER,
            )
            for n in range(50)
        ]
    address = DeliveryAddress(line1="1 Main St", city="Springfield", postal_code="12345")
    for n in range(count):
        status = STATUSES[n % len(STATUSES)]
        kind = (
            FulfillmentType.PICKUP
            if status is not OrderStatus.OUT_FOR_DELIVERY
            else (FulfillmentType.DELIVERY)
        )
        lines = [OrderItemIn(product_id=products[(n + k) % 5].id, quantity=1 + k) for k in range(2)]
        data = OrderIn(
            farm_id=farm.id, items=lines, fulfillment_type=kind,
            delivery_address=None if kind is FulfillmentType.PICKUP else address,
        )  # fmt: skip
        async with db.transaction() as session:
            order = await orders.place_order(session, customers[n % 50], data)
            for rule in states.path_to(status, kind):
                if rule.target in (OrderStatus.READY_FOR_PICKUP, OrderStatus.OUT_FOR_DELIVERY):
                    for item in order.items:
                        await orders.set_item_prepared(session, farmer, order.id, item.id, True)
                    if kind is FulfillmentType.SHIPPING:
                        await orders.update_details(
                            session, farmer, order.id, OrderPatch(tracking_number="1Z")
                        )
                order = await orders.change_status(
                    session, farmer, order.id, rule.target,
                    policy=runtime.order_policy, reason="bench",
                )  # fmt: skip
    signed_in = await accounts.login(
        db, passwords, runtime.signer, runtime.throttle, email="farmer@bench.test",
        password=PASSWORD, address=None, user_agent="bench",
    )  # fmt: skip
    return farm.id, signed_in.token


async def measure(url: str, data_dir: Path, count: int, runs: int) -> None:
    settings = load_settings(
        environment="test", data_dir=data_dir, database_url=url, secret_key=SECRET,
        password_hash_time_cost=1, password_hash_memory_kib=64, dispatcher="off",
        log_level="WARNING", access_log=False,
    )  # fmt: skip
    app = create_app(settings)
    async with LifespanManager(app):
        started = time.perf_counter()
        farm_id, token = await seed(app, count)
        print(f"  seeded {count} orders in {time.perf_counter() - started:.1f} s")
        engine = app.state.runtime.db.engine.sync_engine
        statements: list[str] = []
        sql_ms: list[float] = []

        def before(_conn: Any, _cursor: Any, statement: str, *args: Any) -> None:
            if not statement.startswith(("BEGIN", "PRAGMA")):
                statements.append(statement.split(None, 1)[0])
                args[-2]._bench_started = time.perf_counter()  # the execution context

        def after(_conn: Any, _cursor: Any, statement: str, *args: Any) -> None:
            started = getattr(args[-2], "_bench_started", None)
            if started is not None:
                sql_ms.append((time.perf_counter() - started) * 1000)

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            client.cookies.set(SESSION_COOKIE, token)
            for name, query in PAGES.items():
                path = f"/manage/{farm_id}{query}"
                for _ in range(5):  # warm: the session cached, the statements compiled
                    reply = await client.get(path)
                    assert reply.status_code == 200, reply.text[:300]
                wall, cpu = [], []
                for _ in range(runs):
                    started, started_cpu = time.perf_counter(), time.process_time()
                    reply = await client.get(path)
                    wall.append((time.perf_counter() - started) * 1000)
                    cpu.append((time.process_time() - started_cpu) * 1000)
                statements.clear()
                sql_ms.clear()
                event.listen(engine, "before_cursor_execute", before)
                event.listen(engine, "after_cursor_execute", after)
                for _ in range(10):
                    await client.get(path)
                event.remove(engine, "before_cursor_execute", before)
                event.remove(engine, "after_cursor_execute", after)
                wall.sort()
                p95 = wall[int(len(wall) * 0.95) - 1]
                cards = reply.text.count('class="card order-card')
                print(
                    f"  {name:<24} wall median {statistics.median(wall):5.1f} ms, P95 {p95:5.1f}"
                    f" ms; CPU median {statistics.median(cpu):5.1f} ms; "
                    f"{len(statements) // 10} statements taking {sum(sql_ms) / 10:4.1f} ms; "
                    f"{cards} cards, {len(reply.content) // 1024} KB"
                )


async def postgres_database() -> tuple[str, str]:
    name = f"farmstand_bench_board_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(POSTGRES.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name, f"{POSTGRES}/{name}"


async def drop_postgres(name: str) -> None:
    conn = await asyncpg.connect(POSTGRES.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        if args.only in (None, "sqlite"):
            url = f"sqlite+aiosqlite:///{data / 'bench.db'}"
            upgrade(url)
            print(f"SQLite, {args.orders} orders, {args.runs} runs per page:")
            asyncio.run(measure(url, data, args.orders, args.runs))
        if args.only in (None, "postgres"):
            name, url = asyncio.run(postgres_database())
            try:
                upgrade(url)
                print(f"PostgreSQL, {args.orders} orders, {args.runs} runs per page:")
                asyncio.run(measure(url, data, args.orders, args.runs))
            finally:
                asyncio.run(drop_postgres(name))


if __name__ == "__main__":
    main()
