"""A busy server refuses work early with 503 and Retry-After, and loses nothing doing so."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from sqlalchemy import func, select

from farmstand.accounts.roles import Role
from farmstand.app import create_app
from farmstand.orders.models import OrderStatusHistory
from tests import services
from tests.conftest import make_settings
from tests.factories import Factory


async def test_past_the_in_flight_cap_requests_get_503_at_once(
    database_url: str, tmp_path: Path
) -> None:
    app = create_app(make_settings(database_url, tmp_path, max_requests_in_flight=2))
    async with services.lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            factory = Factory(app.state.runtime, client)
            farmer = await factory.user(Role.FARMER)
            farm = await factory.farm(farmer)
            orders = [await factory.order(farm=farm) for _ in range(12)]
            headers = await factory.headers(farmer)
            await client.get("/api/auth/me", headers=headers)

            responses = await asyncio.gather(
                *(
                    client.put(
                        f"/api/orders/{order.id}/status",
                        json={"status": "CONFIRMED"},
                        headers=headers,
                    )
                    for order in orders
                )
            )

            codes = sorted(r.status_code for r in responses)
            assert set(codes) <= {200, 503} and 503 in codes and 200 in codes
            for refused in (r for r in responses if r.status_code == 503):
                assert refused.headers["retry-after"] == "1"
                assert refused.json() == {
                    "success": False,
                    "error": "The server is busy; try again in a moment.",
                }
            assert app.state.runtime.shed["in_flight"] == codes.count(503)
            # Nothing half-done: exactly the accepted changes are in the history.
            async with app.state.runtime.db.transaction(write=False) as session:
                confirmed = await session.scalar(
                    select(func.count())
                    .select_from(OrderStatusHistory)
                    .where(OrderStatusHistory.to_status == "CONFIRMED")
                )
            assert confirmed == codes.count(200)
            # Health checks (and live streams, long-lived by design) never count against it.
            assert (await client.get("/healthz")).status_code == 200


async def test_no_connection_within_the_pool_timeout_is_a_503_not_a_500(
    postgres_url: str, tmp_path: Path
) -> None:
    app = create_app(
        make_settings(postgres_url, tmp_path, db_pool_size=1, db_pool_timeout_seconds=0.2)
    )
    async with services.lifespan(app):
        runtime = app.state.runtime
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            factory = Factory(runtime, client)
            user = await factory.user()
            order = await factory.order(customer=user)
            headers = await factory.headers(user)
            await client.get("/api/auth/me", headers=headers)
            # Someone holds the only connection for longer than the timeout.
            async with runtime.db.transaction() as held:
                await held.connection()
                response = await client.get(f"/api/orders/{order.id}", headers=headers)

            assert response.status_code == 503
            assert response.headers["retry-after"] == "2"
            assert runtime.shed["db_pool"] == 1
            assert (await client.get(f"/api/orders/{order.id}", headers=headers)).status_code == 200


async def test_a_database_that_refuses_connections_is_a_503_not_a_500(
    postgres_url: str, tmp_path: Path
) -> None:
    """PostgreSQL out of connection slots ("too many clients", SQLSTATE 53300) is overload,
    as a pool timeout is: 503 with Retry-After, counted, nothing written. It was a 500 with a
    stack in the log when a full test run used up the server's max_connections."""
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    import asyncpg

    role = f"farmstand_full_{uuid.uuid4().hex[:8]}"
    admin_dsn = postgres_url.replace("+asyncpg", "")
    conn = await asyncpg.connect(admin_dsn)
    try:
        # A role with no connection slot at all (superusers are exempt from such limits).
        await conn.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 0')
        parts = urlsplit(postgres_url)
        limited = urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}"))
        app = create_app(make_settings(limited, tmp_path))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.post(
                "/api/auth/login", json={"email": "a@example.com", "password": "x" * 12}
            )
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "2"
        assert response.json() == {
            "success": False,
            "error": "The server is busy; try again in a moment.",
        }
        assert app.state.runtime.shed == {"db_unavailable": 1}
        await app.state.runtime.db.dispose()
    finally:
        await conn.execute(f'DROP ROLE IF EXISTS "{role}"')
        await conn.close()
