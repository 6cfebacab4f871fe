"""How a stream lives on a real socket: heartbeats, every way it ends, and what it costs."""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import statistics
import time
from dataclasses import dataclass

import httpx
import pytest

from farmstand.accounts.roles import Role
from farmstand.app import create_app
from farmstand.events import service as events
from farmstand.events.hub import CloseReason
from farmstand.events.models import EventType
from tests.events.conftest import Live, live_settings
from tests.factories import Factory
from tests.live import open_stream, serve_in_process


@dataclass
class RawStream:
    """A stream on a bare socket: nothing but the request and the bytes that come back."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def read_until(self, marker: bytes, timeout: float = 10) -> bytes:
        return await asyncio.wait_for(self.reader.readuntil(marker), timeout)

    def close(self) -> None:
        self.writer.close()


async def open_raw(live: Live, path: str, headers: dict[str, str]) -> RawStream:
    host, port = live.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{lines}\r\n".encode())
    return RawStream(reader, writer)


async def until(condition, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def server_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("live_overrides", [{"sse_heartbeat_seconds": 0.3}])
async def test_idle_streams_get_a_heartbeat_every_interval(live: Live):
    user = await live.factory.user()
    stream = await open_raw(live, "/api/events", await live.factory.headers(user))
    await stream.read_until(b"event: CONNECTED")
    began = time.monotonic()
    beats: list[float] = []
    while time.monotonic() - began < 2.5:
        line = await stream.read_until(b"\n")
        if line.startswith(b": ping"):
            beats.append(time.monotonic())
    stream.close()
    # A comment every 0.3 s on a stream with nothing else to say (not a burst, not silence).
    # Bounds wide enough for a machine busy with other tests (about 8 beats when idle).
    assert 3 <= len(beats) <= 11, beats
    gaps = [b - a for a, b in itertools.pairwise(beats)]
    assert 0.2 <= statistics.median(gaps) <= 0.8, gaps


async def test_a_client_that_goes_away_is_unsubscribed_at_once(live: Live):
    """No event and no heartbeat (30 s) needed: the server notices the socket closing."""
    user = await live.factory.user()
    stream = await open_raw(live, "/api/events", await live.factory.headers(user))
    await stream.read_until(b"event: CONNECTED")
    assert live.runtime.hub.open_streams == 1

    stream.close()

    began = time.monotonic()
    await until(lambda: not live.runtime.hub.subscriptions(), timeout=10)
    assert time.monotonic() - began < 5  # the heartbeat that would find out is 30 s away
    assert live.runtime.hub.closed == {CloseReason.CLIENT: 1}
    assert live.runtime.hub.open_streams == 0


@pytest.mark.parametrize("live_overrides", [{"sse_queue_size": 3}])
async def test_a_client_that_falls_behind_is_told_and_resumes_without_loss(live: Live):
    farmer = await live.factory.user(Role.FARMER)
    farm = await live.factory.farm(farmer)
    headers = await live.factory.headers(farmer)
    url = f"/api/orders/events?farmId={farm.id}"
    await live.settle()

    async with open_stream(live.http, url, headers) as stream:
        connected = await stream.next()
        assert connected.id is not None
        # Given more events at once (one transaction) than the stream may hold pending,
        async with live.runtime.db.transaction() as session:
            for n in range(5):
                events.record(
                    session,
                    EventType.ORDER_UPDATE,
                    order_id=None,
                    farm_id=farm.id,
                    customer_id=None,
                    data={"n": n},
                )
        # then it is told it fell behind, with where to resume from, and the stream ends.
        overflow = await stream.next()
        assert overflow.event == "OVERFLOW"
        assert overflow.json()["lastEventId"] == int(connected.id)
        with pytest.raises(EOFError):
            await stream.next()
    assert live.runtime.hub.closed[CloseReason.OVERFLOW] == 1

    # When it resumes from there, it gets all five.
    async with open_stream(live.http, url, {**headers, "Last-Event-ID": connected.id}) as stream:
        resumed = await stream.collect(5)
    assert [e.json()["data"]["n"] for e in resumed] == [0, 1, 2, 3, 4]


async def test_streams_end_cleanly_and_promptly_when_the_server_stops(
    database_url, tmp_path, caplog
):
    app = create_app(live_settings(database_url, tmp_path))
    async with httpx.AsyncClient(timeout=30) as http:
        async with serve_in_process(app, timeout_graceful_shutdown=20) as url:
            factory = Factory(app.state.runtime, http)
            user = await factory.user()
            headers = await factory.headers(user)
            cm = open_stream(http, f"{url}/api/events", headers)
            stream = await cm.__aenter__()
            assert (await stream.next()).event == "CONNECTED"
            stopping = time.monotonic()
        # serve_in_process has stopped the server: well before its 20 s grace period ran out
        # (a stream left open holds the server that long), as the stream ended as soon as the
        # server began to stop,
        assert time.monotonic() - stopping < 10
        # and properly: the chunked body is complete, nothing was cancelled or logged.
        with pytest.raises(EOFError):
            await stream.next(timeout=5)
        await cm.__aexit__(None, None, None)
    assert app.state.runtime.hub.closed == {CloseReason.SHUTDOWN: 1}
    assert server_errors(caplog) == []


async def test_streams_carry_the_sse_headers_and_head_opens_none(live: Live):
    user = await live.factory.user()
    headers = await live.factory.headers(user)
    async with live.http.stream("GET", "/api/events", headers=headers) as response:
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-accel-buffering"] == "no"
    head = await live.http.head("/api/events", headers=headers)
    assert head.status_code in (200, 405)  # never a stream left open
    assert live.runtime.hub.open_streams == 0


async def test_an_open_stream_costs_at_most_one_extra_task_and_no_connection(live: Live):
    users = [await live.factory.user() for _ in range(5)]
    tokens = [await live.factory.headers(u) for u in users]
    warm = await open_raw(live, "/api/events", tokens[0])  # first-use caches filled
    await warm.read_until(b"event: CONNECTED")
    gc.collect()
    tasks_before, objects_before = len(asyncio.all_tasks()), len(gc.get_objects())

    count = 50
    streams = [await open_raw(live, "/api/events", tokens[n % 5]) for n in range(count)]
    for stream in streams:
        await stream.read_until(b"event: CONNECTED")
    gc.collect()
    tasks = len(asyncio.all_tasks()) - tasks_before
    objects = (len(gc.get_objects()) - objects_before) / count

    # The request's own task and one waiter for the client's disconnect; nothing per stream
    # for heartbeats or sending. (sse-starlette's response ran five, and ~300 objects.)
    assert tasks <= 2 * count + 2, tasks
    # Objects per stream, server and this client's together: 125-135 depending on what ran
    # before in the process, most of them uvicorn's and the client's (sse-starlette's
    # response, inside the whole request stack, made it 330).
    assert objects <= 150, objects
    # And none holds a database connection (authorisation used one, and gave it back).
    assert live.runtime.db.engine.pool.checkedout() <= 1  # type: ignore[attr-defined]
    for stream in [warm, *streams]:
        stream.close()
    await until(lambda: live.runtime.hub.open_streams == 0)


async def test_the_api_document_describes_streams_as_event_streams_and_errors_as_json(client):
    document = (await client.get("/openapi.json")).json()
    for path in ("/api/events", "/api/orders/events"):
        responses = document["paths"][path]["get"]["responses"]
        assert list(responses["200"]["content"]) == ["text/event-stream"]
        assert list(responses["404"]["content"]) == ["application/json"]
