"""A real server, a client that stops reading its event stream: no ERROR, one counted drop."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import httpx

from farmstand.accounts.roles import Role
from farmstand.app import create_app
from farmstand.deps import Runtime
from farmstand.events import service as events
from farmstand.events.models import EventType
from tests.conftest import make_settings
from tests.factories import Factory
from tests.live import serve_in_process
from tests.observability.conftest import METRICS_TOKEN, Capture, scrape, value


async def test_a_client_that_stops_reading_is_dropped_quietly_and_counted(
    sqlite_url: str, tmp_path: Path
):
    settings = make_settings(
        sqlite_url,
        tmp_path,
        metrics_token=METRICS_TOKEN,
        sse_queue_size=12,
        sse_send_timeout_seconds=1,
        event_relay_interval_seconds=0.2,
        event_poll_interval_seconds=0.3,
    )
    app = create_app(settings)
    handler = Capture(logging.WARNING)
    logging.getLogger("uvicorn.error").addHandler(handler)
    try:
        async with serve_in_process(app) as url, httpx.AsyncClient(base_url=url) as client:
            runtime: Runtime = app.state.runtime
            factory = Factory(runtime, client)
            farmer = await factory.user(Role.FARMER)
            farm = await factory.farm(farmer)
            headers = await factory.headers(farmer)
            host, port = url.removeprefix("http://").split(":")

            # Given a client that sends its request, then never reads (tiny receive buffer)
            slow = socket.socket()
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            slow.connect((host, int(port)))
            slow.sendall(
                f"GET /api/orders/events?farmId={farm.id} HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: {headers['Authorization']}\r\n"
                "Accept: text/event-stream\r\n\r\n".encode()
            )
            for _ in range(100):
                if runtime.hub.subscriptions():
                    break
                await asyncio.sleep(0.05)
            assert len(runtime.hub.subscriptions()) == 1

            # When big events pile up behind it, more than the socket buffers hold (~4 MB)
            for batch in range(15):
                async with runtime.db.transaction() as session:
                    for i in range(10):
                        events.record(
                            session,
                            EventType.ORDER_UPDATE,
                            order_id=None,
                            farm_id=farm.id,
                            customer_id=None,
                            data={"n": batch * 10 + i, "padding": "x" * 100_000},
                        )
                await asyncio.sleep(0.1)
                if not runtime.hub.subscriptions():
                    break
            # (the stream ends at once; uvicorn logs when the blocked send times out)
            for _ in range(50):
                text = await scrape(client)
                if value(text, "farmstand_sse_disconnects_total", reason="slow"):
                    break
                await asyncio.sleep(0.1)
            slow.close()
    finally:
        logging.getLogger("uvicorn.error").removeHandler(handler)

    # Then the stream was dropped, counted once, and uvicorn's ERROR never reached a handler
    assert not runtime.hub.subscriptions()
    assert value(text, "farmstand_sse_disconnects_total", reason="slow") == 1
    errors = [r.getMessage() for r in handler.records]
    assert not [m for m in errors if "without completing" in m], errors
