"""Resume across out-of-order commits, the relay after a crash, retention and slow consumers."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select, update

from farmstand.accounts.roles import Role
from farmstand.app import create_app
from farmstand.db import utcnow
from farmstand.events import service as events
from farmstand.events.hub import CloseReason
from farmstand.events.models import EventType, OrderEvent
from tests.events.conftest import Live, live_settings
from tests.factories import Factory
from tests.live import ROOT, open_stream, serve_in_process


@pytest.fixture
def live_overrides() -> dict[str, object]:
    # A small queue for the slow-consumer test; a retention longer than the pruning test's
    # 8-day-old rows, so the server's own relay (which prunes on its first tick) cannot
    # remove them before the test's call does.
    return {"sse_queue_size": 12, "sse_send_timeout_seconds": 1, "event_retention_days": 30}


def record_marker(session, farm_id: str, label: str) -> OrderEvent:
    return events.record(
        session,
        EventType.ORDER_UPDATE,
        order_id=None,
        farm_id=farm_id,
        customer_id=None,
        data={"label": label},
    )


async def test_resume_does_not_skip_an_event_committed_after_a_higher_id(
    postgres_url: str, tmp_path
):
    """On PostgreSQL ids are handed out before commit: A gets the lower id but commits last.

    A client that saw B and resumes must still get A. Streams are ordered and resumed by the
    position handed out after commit, not by id, so it does.
    """
    app = create_app(live_settings(postgres_url, tmp_path))
    async with serve_in_process(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        runtime = app.state.runtime
        factory = Factory(runtime, http)
        farmer = await factory.user(Role.FARMER)
        farm = await factory.farm(farmer)
        headers = await factory.headers(farmer)
        stream_url = f"/api/orders/events?farmId={farm.id}"

        async with open_stream(http, stream_url, headers) as stream:
            await stream.next()  # CONNECTED
            # Given transaction A takes an id and stays open,
            a_open = runtime.db.transaction()
            session_a = await a_open.__aenter__()
            event_a = record_marker(session_a, farm.id, "A")
            await session_a.flush()
            # while transaction B takes a higher id and commits first,
            async with runtime.db.transaction() as session_b:
                event_b = record_marker(session_b, farm.id, "B")
            assert event_a.id < event_b.id
            got_b = await stream.next()
            assert got_b.id is not None
            assert got_b.json()["data"]["label"] == "B"
        # and the client drops off having seen B; now A commits.
        await a_open.__aexit__(None, None, None)

        # When the client resumes from B,
        async with open_stream(http, stream_url, {**headers, "Last-Event-ID": got_b.id}) as s:
            got_a = await s.next()

        # then it gets A, whose id is lower than the one it resumed from.
        assert got_a.json()["data"]["label"] == "A"
        assert got_a.id is not None
        assert int(got_a.id) > int(got_b.id)
        assert got_a.json()["data"] and event_a.id < event_b.id


async def test_an_event_left_unpublished_by_a_killed_process_is_relayed(live: Live, tmp_path):
    farmer = await live.factory.user(Role.FARMER)
    farm = await live.factory.farm(farmer)
    order = await live.factory.order(farm=farm)
    headers = await live.factory.headers(farmer)
    await live.settle()  # the order's own NEW_ORDER is out before the stream opens
    # A separate process commits a status change, then is killed before it can publish.
    script = tmp_path / "crash.py"
    script.write_text(
        textwrap.dedent(f"""
        import asyncio, os, signal
        from farmstand.app import build_runtime
        from farmstand.accounts.models import User
        from tests.conftest import make_settings
        from farmstand.orders import service
        from farmstand.orders.states import OrderStatus

        async def main():
            settings = make_settings({live.runtime.settings.database_url!r}, {str(tmp_path)!r})
            runtime = build_runtime(settings)
            async def die(info):
                os.kill(os.getpid(), signal.SIGKILL)
            runtime.db.commit_listeners.append(die)
            async with runtime.db.transaction() as session:
                user = await session.get(User, {farmer.id!r})
                await service.change_status(session, user, {order.id!r}, OrderStatus.CONFIRMED,
                                            policy=runtime.order_policy)
        asyncio.run(main())
    """)
    )
    async with open_stream(live.http, f"/api/orders/events?farmId={farm.id}", headers) as stream:
        await stream.next()  # CONNECTED
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            cwd=str(ROOT),
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        _, err = await proc.communicate()
        assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
        # The change is committed, and its writer died before publishing it ...
        async with live.runtime.db.transaction(write=False) as session:
            row = await session.scalar(
                select(OrderEvent).where(
                    OrderEvent.order_id == order.id, OrderEvent.type == EventType.STATUS_CHANGE
                )
            )
        assert row is not None
        # ... and the server's relay pass publishes it (any process sequences any committed
        # event; the server's runs every event_relay_interval_seconds).
        event = await stream.next(timeout=15)
    assert event.event == "STATUS_CHANGE"
    assert event.json()["orderId"] == order.id
    assert event.json()["data"]["previousStatus"] == "PENDING"


async def test_old_events_are_pruned_and_a_client_resuming_past_them_is_told_to_reload(
    live: Live,
):
    farmer = await live.factory.user(Role.FARMER)
    farm = await live.factory.farm(farmer)
    headers = await live.factory.headers(farmer)
    first = await live.factory.order(farm=farm)
    second = await live.factory.order(farm=farm)
    await live.settle()
    async with live.runtime.db.transaction() as session:
        # Everything up to the first order's last event (its NEW_ORDER, the farmer's
        # notification, and what came before: the farm's creation).
        old = await session.scalar(
            select(func.min(OrderEvent.position)).where(OrderEvent.order_id == first.id)
        )
        last_old = await session.scalar(
            select(func.max(OrderEvent.position)).where(OrderEvent.order_id == first.id)
        )
        aged = await session.execute(
            update(OrderEvent)
            .where(OrderEvent.position <= last_old)
            .values(created_at=utcnow() - timedelta(days=8))
        )

    removed = await events.prune(live.runtime.db, utcnow() - timedelta(days=7))

    assert removed == aged.rowcount >= 2  # type: ignore[attr-defined]
    assert old is not None
    url = f"/api/orders/events?farmId={farm.id}"
    async with open_stream(live.http, url, {**headers, "Last-Event-ID": str(old - 1)}) as stream:
        reset = await stream.next()
        replayed = await stream.next()
    assert reset.event == "RESET"
    assert replayed.json()["orderId"] == second.id


async def test_a_slow_consumer_is_cut_off_without_affecting_others(live: Live, caplog):
    farmer = await live.factory.user(Role.FARMER)
    farm = await live.factory.farm(farmer)
    headers = await live.factory.headers(farmer)
    url = f"/api/orders/events?farmId={farm.id}"
    host, port = live.url.removeprefix("http://").split(":")

    # A client that sends its request, then never reads (with a tiny receive buffer).
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect((host, int(port)))
    slow.sendall(
        f"GET {url} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {headers['Authorization']}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    for _ in range(250):
        if live.runtime.hub.subscriptions():
            break
        await asyncio.sleep(0.02)
    assert len(live.runtime.hub.subscriptions()) == 1

    total = 60
    async with open_stream(live.http, url, headers) as fast:
        await fast.next()  # CONNECTED
        received = 0
        for batch in range(total // 10):
            # Big events, ten per transaction: the slow reader's buffers fill up quickly.
            async with live.runtime.db.transaction() as session:
                for i in range(10):
                    events.record(
                        session,
                        EventType.ORDER_UPDATE,
                        order_id=None,
                        farm_id=farm.id,
                        customer_id=None,
                        data={"n": batch * 10 + i, "padding": "x" * 60_000},
                    )
            for _ in range(10):
                event = await fast.next()
                assert event.json()["data"]["n"] == received
                received += 1
        assert received == total

        # The slow one was cut off: its subscription is gone, the fast one's remains.
        for _ in range(50):
            if len(live.runtime.hub.subscriptions()) == 1:
                break
            await asyncio.sleep(0.1)
        assert len(live.runtime.hub.subscriptions()) == 1
    # The slow client got the response head and, at most, what fitted in the buffers.
    slow.settimeout(5)
    assert slow.recv(64).startswith(b"HTTP/1.1 200")
    slow.close()
    # It was dropped as a slow client (it resumes when it reads again), quietly: uvicorn saw
    # a connection that went away, not a response left unfinished.
    assert live.runtime.hub.closed[CloseReason.SLOW] == 1
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
