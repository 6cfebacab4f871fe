"""Several server processes on one PostgreSQL and one Redis: a change made through any process
reaches streams held on every process."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from farmstand.accounts import service as accounts
from farmstand.accounts.models import AuthSession
from farmstand.accounts.roles import Role
from farmstand.app import build_runtime
from farmstand.db import utcnow
from farmstand.deps import Runtime
from tests import services
from tests.conftest import TEST_SECRET, make_settings
from tests.factories import PASSWORD, Factory
from tests.live import ServerProcess, SseStream, open_stream, run_cli


@pytest.fixture
def redis_url() -> str:
    services.require("redis")
    return services.REDIS_URL


@pytest.fixture
def cluster_env(postgres_url: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "FARMSTAND_DATABASE_URL": postgres_url,
        "FARMSTAND_EVENT_BUS": "redis",
        "FARMSTAND_REDIS_URL": redis_url,
        # A channel of its own, so parallel runs on this Redis don't see each other.
        "FARMSTAND_REDIS_CHANNEL": f"farmstand:test:{uuid.uuid4().hex}",
        "FARMSTAND_SECRET_KEY": TEST_SECRET,
        "FARMSTAND_DATA_DIR": str(tmp_path),
        "FARMSTAND_PASSWORD_HASH_TIME_COST": "1",
        "FARMSTAND_PASSWORD_HASH_MEMORY_KIB": "64",
        "FARMSTAND_EVENT_RELAY_GRACE_SECONDS": "0.5",
        "FARMSTAND_EVENT_RELAY_INTERVAL_SECONDS": "0.2",
        "FARMSTAND_LOG_LEVEL": "WARNING",
    }


@pytest.fixture
async def seed(postgres_url: str, tmp_path: Path) -> AsyncIterator[Factory]:
    """Builders writing to the cluster's database from this test process."""
    runtime: Runtime = build_runtime(make_settings(postgres_url, tmp_path))
    try:
        yield Factory(runtime)
    finally:
        await runtime.db.dispose()


@pytest.fixture
def servers(cluster_env: dict[str, str], tmp_path: Path) -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    try:
        for name in ("a", "b"):
            server = ServerProcess(cluster_env, log_path=tmp_path / f"server-{name}.log")
            started.append(server.start())
        yield started
    finally:
        for server in started:
            server.stop()


async def test_a_change_through_one_process_reaches_a_stream_on_another(
    servers: list[ServerProcess], seed: Factory
):
    a, b = servers
    farmer = await seed.user(Role.FARMER)
    farm = await seed.farm(farmer)
    orders = [await seed.order(farm=farm) for _ in range(2)]
    headers = await seed.headers(farmer)
    await asyncio.sleep(1.5)  # the seeded orders' events are relayed before we connect

    async with (
        httpx.AsyncClient(timeout=30) as http,
        open_stream(http, f"{b.url}/api/orders/events?farmId={farm.id}", headers) as on_b,
        open_stream(http, f"{a.url}/api/orders/events?farmId={farm.id}", headers) as on_a,
    ):
        assert (await on_b.next()).event == "CONNECTED"
        assert (await on_a.next()).event == "CONNECTED"
        # When the change goes through A, B's stream gets it, and the other way round.
        for via, order in ((a, orders[0]), (b, orders[1])):
            response = await http.put(
                f"{via.url}/api/orders/{order.id}/status",
                json={"status": "CONFIRMED"},
                headers=headers,
            )
            assert response.status_code == 200, response.text
            for stream in (on_a, on_b):
                event = await stream.next()
                assert event.event == "STATUS_CHANGE"
                assert event.json()["orderId"] == order.id


async def test_several_workers_behind_one_port_share_events(
    cluster_env: dict[str, str], seed: Factory, tmp_path: Path
):
    farmer = await seed.user(Role.FARMER)
    farm = await seed.farm(farmer)
    order = await seed.order(farm=farm)
    headers = await seed.headers(farmer)
    server = ServerProcess(cluster_env, log_path=tmp_path / "workers.log").start("--workers", "3")
    try:
        await asyncio.sleep(1.5)
        async with httpx.AsyncClient(timeout=30) as http:
            url = f"{server.url}/api/orders/events?orderId={order.id}"
            streams = [open_stream(http, url, headers) for _ in range(6)]
            opened = [await cm.__aenter__() for cm in streams]
            try:
                for stream in opened:
                    assert (await stream.next()).event == "CONNECTED"
                response = await http.put(
                    f"{server.url}/api/orders/{order.id}/status",
                    json={"status": "CONFIRMED"},
                    headers=headers,
                )
                assert response.status_code == 200
                # Whichever worker each stream landed on, every stream gets the change.
                for stream in opened:
                    event = await stream.next()
                    assert event.json()["data"]["status"] == "CONFIRMED"
            finally:
                for cm in streams:
                    await cm.__aexit__(None, None, None)
    finally:
        server.stop()


def test_the_embedded_bus_refuses_several_workers(tmp_path: Path):
    result = run_cli(
        {"FARMSTAND_DATA_DIR": str(tmp_path), "FARMSTAND_EVENT_BUS": "memory"},
        "serve",
        "--workers",
        "2",
    )
    assert result.returncode == 2
    assert "Redis" in result.stderr


# -- streams follow their sessions on every process -------------------------------------------


async def session_ended(stream: SseStream, timeout: float = 10) -> str:
    """The stream's next frame ends the session (nothing of the orders comes first), and then
    the response ends; returns the reason given."""
    final = await stream.next(timeout)
    assert final.event == "SESSION_ENDED", (final.event, final.data)
    with pytest.raises(EOFError):
        await stream.next(timeout)
    return str(final.json()["reason"])


async def test_signing_out_on_one_process_ends_the_stream_on_another(
    servers: list[ServerProcess], seed: Factory
):
    # Given a customer with an order, their stream open on A,
    a, b = servers
    customer = await seed.user()
    farmer = await seed.user(Role.FARMER)
    order = await seed.order(customer=customer, farm=await seed.farm(farmer))
    headers, farmer_headers = await seed.headers(customer), await seed.headers(farmer)
    await asyncio.sleep(1.5)  # the seeded events are relayed before we connect
    async with (
        httpx.AsyncClient(timeout=30) as http,
        open_stream(http, f"{a.url}/api/events", headers) as on_a,
    ):
        assert (await on_a.next()).event == "CONNECTED"
        # when they sign out through B, and their order changes right after,
        assert (await http.post(f"{b.url}/api/auth/logout", headers=headers)).status_code == 200
        response = await http.put(
            f"{b.url}/api/orders/{order.id}/status",
            json={"status": "CONFIRMED"},
            headers=farmer_headers,
        )
        assert response.status_code == 200
        # then the stream on A ends within seconds, without the change.
        assert await session_ended(on_a, timeout=5) == "signed out"


async def test_revoking_a_user_ends_their_streams_on_every_process(
    servers: list[ServerProcess], seed: Factory
):
    a, b = servers
    customer = await seed.user()
    one, two = await seed.headers(customer), await seed.headers(customer)
    await asyncio.sleep(1.5)
    async with (
        httpx.AsyncClient(timeout=30) as http,
        open_stream(http, f"{a.url}/api/events", one) as on_a,
        open_stream(http, f"{b.url}/api/events", two) as on_b,
    ):
        assert (await on_a.next()).event == "CONNECTED"
        assert (await on_b.next()).event == "CONNECTED"
        # Every session of the user revoked by a process that serves no streams (as the CLI or
        # a worker would): the servers hear of it from the database.
        async with seed.db.transaction() as session:
            await session.execute(
                update(AuthSession)
                .where(AuthSession.user_id == customer.id)
                .values(revoked_at=utcnow())
            )
            accounts.account_changed(session, customer.id, reason="user disabled")
        for stream in (on_a, on_b):
            assert await session_ended(stream, timeout=5) == "user disabled"


async def test_a_session_that_expires_ends_its_streams(
    cluster_env: dict[str, str], seed: Factory, tmp_path: Path
):
    env = {**cluster_env, "FARMSTAND_SESSION_TTL_HOURS": str(4.5 / 3600)}  # 4 s sessions
    started = []
    try:
        for name in ("a", "b"):
            server = ServerProcess(env, log_path=tmp_path / f"short-{name}.log")
            started.append(server.start())
        a, b = started
        customer = await seed.user()
        async with httpx.AsyncClient(timeout=30) as http:
            login = await http.post(
                f"{b.url}/api/auth/login", json={"email": customer.email, "password": PASSWORD}
            )
            assert login.status_code == 200
            headers = {"Authorization": f"Bearer {login.json()['data']['token']}"}
            async with open_stream(http, f"{a.url}/api/events", headers) as on_a:
                assert (await on_a.next()).event == "CONNECTED"
                assert await session_ended(on_a, timeout=10) == "session expired"
            assert (await http.get(f"{a.url}/api/auth/me", headers=headers)).status_code == 401
    finally:
        for server in started:
            server.stop()
