"""A thousand concurrent streams, each receiving its own events and nobody else's.

Correctness at scale, not timing: timing is measured by the benchmark scripts under bench/.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from pathlib import Path

import httpx

from farmstand.accounts.models import AuthSession, User
from farmstand.accounts.roles import Role
from farmstand.app import build_runtime
from farmstand.db import utcnow
from farmstand.orders import service as orders
from farmstand.orders.schemas import OrderIn, OrderItemIn
from tests.conftest import TEST_SECRET, make_settings
from tests.factories import Factory
from tests.live import ServerProcess, SseStream

STREAMS = 1000


async def test_a_thousand_streams_each_get_their_own_events(sqlite_url: str, tmp_path: Path):
    runtime = build_runtime(make_settings(sqlite_url, tmp_path))
    factory = Factory(runtime)
    admin = await factory.user(Role.ADMIN)
    farm = await factory.farm()
    product = await factory.product(farm, stock=STREAMS * 2)
    # Given a thousand customers with one order each (seeded in one transaction, fast),
    customers: list[tuple[str, str]] = []  # (token, order id)
    async with runtime.db.transaction() as session:
        password_hash = await runtime.passwords.hash("unused-password")
        for n in range(STREAMS):
            user = User(
                email=f"scale{n}@example.test",
                name=f"Scale {n}",
                role=Role.CUSTOMER,
                password_hash=password_hash,
            )
            session.add(user)
            await session.flush()
            order = await orders.place_order(
                session,
                user,
                OrderIn(farm_id=farm.id, items=[OrderItemIn(product_id=product.id, quantity=1)]),
            )
            auth = AuthSession(user_id=user.id, expires_at=utcnow() + timedelta(hours=1))
            session.add(auth)
            await session.flush()
            customers.append((runtime.signer.sign(auth.id), order.id))
    admin_headers = await factory.headers(admin)
    await runtime.db.dispose()

    env = {
        "FARMSTAND_DATABASE_URL": sqlite_url,
        "FARMSTAND_SECRET_KEY": TEST_SECRET,
        "FARMSTAND_DATA_DIR": str(tmp_path),
        "FARMSTAND_EVENT_RELAY_GRACE_SECONDS": "0.2",
        "FARMSTAND_EVENT_RELAY_INTERVAL_SECONDS": "0.2",
        "FARMSTAND_SSE_QUEUE_SIZE": "100",
        "FARMSTAND_LOG_LEVEL": "WARNING",
    }
    server = ServerProcess(env, log_path=tmp_path / "server.log").start()
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    try:
        async with httpx.AsyncClient(
            base_url=server.url, limits=limits, timeout=httpx.Timeout(60)
        ) as http:
            await asyncio.sleep(1)  # the seeded orders' events are relayed first
            async with contextlib.AsyncExitStack() as stack:
                # when each customer holds a stream of everything they may see,
                async def connect(token: str) -> SseStream:
                    response = await stack.enter_async_context(
                        http.stream(
                            "GET", "/api/events", headers={"Authorization": f"Bearer {token}"}
                        )
                    )
                    assert response.status_code == 200
                    stream = SseStream(response)
                    assert (await stream.next(timeout=60)).event == "CONNECTED"
                    return stream

                streams = []
                for start in range(0, STREAMS, 100):
                    streams += await asyncio.gather(
                        *(connect(token) for token, _ in customers[start : start + 100])
                    )
                assert len(streams) == STREAMS

                # and the admin confirms every order (two bulk requests),
                ids = [order_id for _, order_id in customers]
                for start in range(0, STREAMS, 500):
                    response = await http.post(
                        "/api/orders/bulk-status",
                        json={"orderIds": ids[start : start + 500], "status": "CONFIRMED"},
                        headers=admin_headers,
                    )
                    assert response.json()["data"]["succeeded"] == 500

                # then every stream receives its own order's change, and only its own.
                async def own_change(stream: SseStream, order_id: str) -> None:
                    event = await stream.next(timeout=60)
                    assert event.json()["orderId"] == order_id
                    assert event.event == "STATUS_CHANGE"
                    assert event.json()["data"]["previousStatus"] == "PENDING"

                await asyncio.gather(
                    *(
                        own_change(s, order_id)
                        for s, (_, order_id) in zip(streams, customers, strict=True)
                    )
                )
    finally:
        server.stop()
