"""GET /metrics: who may read it, what it says, and the separate port."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text, update

from farmstand.accounts.roles import Role
from farmstand.app import create_app
from farmstand.db import utcnow
from farmstand.deps import Runtime
from farmstand.notifications.models import NotificationChannel, OrderNotification
from farmstand.observability import metrics as metrics_module
from farmstand.orders.states import OrderStatus
from tests import services
from tests.conftest import make_settings
from tests.factories import Factory
from tests.live import free_port
from tests.observability.conftest import METRICS_TOKEN, SCRAPE, samples, scrape, value

EVERY_METRIC = {
    "farmstand_http_request_duration_seconds_bucket",
    "farmstand_sse_streams_open",
    "farmstand_sse_disconnects_total",
    "farmstand_events_published_total",
    "farmstand_events_relayed_late_total",
    "farmstand_notifications_total",
    "farmstand_db_pool_in_use",
    "farmstand_db_pool_waiting",
    "farmstand_requests_shed_total",
    "farmstand_notification_queue_depth",
    "farmstand_notification_oldest_due_age_seconds",
}


async def test_the_token_reads_every_metric(client: httpx.AsyncClient):
    await client.get("/healthz")

    response = await client.get("/metrics", headers=SCRAPE)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    names = {name for name, _ in samples(response.text)}
    assert names >= EVERY_METRIC, EVERY_METRIC - names
    # Series that alerts divide by exist at 0 before anything happened.
    text = response.text
    assert value(text, "farmstand_notifications_total", channel="SMS", result="failed") == 0
    assert value(text, "farmstand_sse_disconnects_total", reason="slow") == 0


async def test_anyone_else_gets_the_404_of_a_path_that_does_not_exist(
    client: httpx.AsyncClient, factory: Factory
):
    customer = await factory.user(Role.CUSTOMER)
    farmer = await factory.user(Role.FARMER)
    unknown = await client.get("/no-such-page")
    attempts = {
        "anonymous": {},
        "wrong token": {"Authorization": "Bearer not-the-scrape-token-at-all"},
        "token in another scheme": {"Authorization": f"Basic {METRICS_TOKEN}"},
        "customer": await factory.headers(customer),
        "farmer": await factory.headers(farmer),
    }
    for who, headers in attempts.items():
        response = await client.get("/metrics", headers=headers)
        assert response.status_code == 404, who
        assert response.json() == unknown.json(), who
    client.cookies.set("farmstand_session", await factory.token(farmer))
    assert (await client.get("/metrics")).status_code == 404


async def test_an_admin_session_reads_the_metrics(client: httpx.AsyncClient, factory: Factory):
    admin = await factory.user(Role.ADMIN)

    by_header = await client.get("/metrics", headers=await factory.headers(admin))
    client.cookies.set("farmstand_session", await factory.token(admin))
    by_cookie = await client.get("/metrics")

    assert by_header.status_code == by_cookie.status_code == 200
    # The scrapes are this app's, counted in its own registry (the first one by the second)
    count = "farmstand_http_request_duration_seconds_count"
    assert value(by_header.text, count, method="GET", route="/metrics", status="200") is None
    assert value(by_cookie.text, count, method="GET", route="/metrics", status="200") == 1


async def test_without_a_token_setting_no_bearer_opens_it(sqlite_url: str, tmp_path: Path):
    app = create_app(make_settings(sqlite_url, tmp_path))  # metrics_token unset
    async with (
        services.lifespan(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        for token in ("", "None", "null"):
            response = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 404


async def test_latency_is_labelled_by_route_template_never_by_path(client: httpx.AsyncClient):
    order_id = str(uuid.uuid4())
    await client.get(f"/api/orders/{order_id}/status?token=secret-in-the-query")
    await client.get(f"/no/such/{order_id}")
    await client.get("/static/no-such-file.css")

    text = await scrape(client)

    assert order_id not in text and "secret-in-the-query" not in text
    count = "farmstand_http_request_duration_seconds_count"
    assert value(text, count, method="GET", route="/api/orders/{order_id}/status", status="401")
    assert value(text, count, method="GET", route="other", status="404") == 1
    assert value(text, count, method="GET", route="/static/{path}", status="404") == 1


async def test_status_changes_are_counted_by_from_and_to(
    client: httpx.AsyncClient, factory: Factory
):
    await factory.order(status=OrderStatus.PREPARING)

    text = await scrape(client)

    name = "farmstand_status_changes_total"
    assert value(text, name, from_status="PENDING", to_status="CONFIRMED") == 1
    assert value(text, name, from_status="CONFIRMED", to_status="PREPARING") == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_the_queue_gauges_show_due_notifications_and_how_late_the_oldest_is(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
):
    url = request.getfixturevalue(f"{backend}_url")
    app = create_app(make_settings(url, tmp_path, metrics_token=METRICS_TOKEN))
    async with (
        services.lifespan(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        runtime: Runtime = app.state.runtime
        factory = Factory(runtime, client)
        before = await scrape(client)
        order = await factory.order(status=OrderStatus.CONFIRMED)  # an email is queued
        async with runtime.db.transaction() as session:
            await session.execute(
                update(OrderNotification)
                .where(
                    OrderNotification.order_id == order.id,
                    OrderNotification.channel == NotificationChannel.EMAIL,
                )
                .values(next_attempt_at=utcnow() - timedelta(seconds=90))
            )

        after = await scrape(client)

    assert value(before, "farmstand_notification_queue_depth") == 0
    assert value(before, "farmstand_notification_oldest_due_age_seconds") == 0
    depth = value(after, "farmstand_notification_queue_depth")  # the customer's, the farmer's
    assert depth is not None and depth >= 1
    age = value(after, "farmstand_notification_oldest_due_age_seconds")
    assert age is not None and 90 <= age < 150


async def test_a_slow_database_leaves_out_the_queue_gauges_only(
    client: httpx.AsyncClient, app: object, monkeypatch: pytest.MonkeyPatch
):
    async def stuck(*_args: object) -> None:
        await asyncio.sleep(10)

    monkeypatch.setattr(metrics_module, "_probe_queue", stuck)
    runtime: Runtime = app.state.runtime  # type: ignore[attr-defined]
    runtime.metrics.queue_probe_timeout = 0.05

    started = asyncio.get_running_loop().time()
    text = await scrape(client)

    assert asyncio.get_running_loop().time() - started < 5  # the probe alone would take 10
    names = {name for name, _ in samples(text)}
    assert "farmstand_notification_queue_depth" not in names
    assert "farmstand_notification_oldest_due_age_seconds" not in names
    assert "farmstand_notifications_total" in names


async def test_on_postgres_a_locked_queue_is_given_up_on_and_the_connection_kept(
    postgres_url: str, tmp_path: Path
):
    app = create_app(make_settings(postgres_url, tmp_path, metrics_token=METRICS_TOKEN))
    async with (
        services.lifespan(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        runtime: Runtime = app.state.runtime
        runtime.metrics.queue_probe_timeout = 0.5
        async with runtime.db.engine.begin() as blocker:
            await blocker.execute(text("LOCK TABLE order_notifications IN ACCESS EXCLUSIVE MODE"))
            started = asyncio.get_running_loop().time()
            blocked = await scrape(client)
            waited = asyncio.get_running_loop().time() - started
        unblocked = await scrape(client)

    assert waited < 5
    assert value(blocked, "farmstand_notification_queue_depth") is None
    assert value(unblocked, "farmstand_notification_queue_depth") == 0


async def test_the_pool_gauges_count_connections_in_use(client: httpx.AsyncClient, app: object):
    runtime: Runtime = app.state.runtime  # type: ignore[attr-defined]
    async with runtime.db.transaction() as session:
        await session.connection()  # holds one while the scrape runs
        text = await scrape(client)
    in_use = value(text, "farmstand_db_pool_in_use")
    assert in_use is not None and in_use >= 1
    assert value(text, "farmstand_db_pool_waiting") == 0


async def _get(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    reply = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return reply


async def test_the_metrics_port_serves_without_auth_on_localhost(sqlite_url: str, tmp_path: Path):
    port = free_port()
    app = create_app(make_settings(sqlite_url, tmp_path, metrics_port=port))

    async def queue_depth() -> float | None:
        reply = await _get(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        return value(body.decode(), "farmstand_notification_queue_depth")

    async with (
        services.lifespan(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        # This app's own registry, not a process-wide one: its value moves with what it does
        before = await queue_depth()
        await Factory(app.state.runtime, client).order(status=OrderStatus.CONFIRMED)
        after = await queue_depth()
        assert before == 0 and after is not None and after > before
        other = await _get(port, b"GET /secrets HTTP/1.1\r\nHost: x\r\n\r\n")
        post = await _get(port, b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert other.startswith(b"HTTP/1.1 404") and post.startswith(b"HTTP/1.1 405")
    with pytest.raises(OSError):  # closed with the app
        await _get(port, b"GET /metrics HTTP/1.1\r\n\r\n")
