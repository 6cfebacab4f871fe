"""`farmstand worker` processes on PostgreSQL: a killed worker loses nothing, and two workers
never send the same notification twice in a normal run."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from farmstand.app import build_runtime
from farmstand.deps import Runtime
from farmstand.notifications.models import NotificationChannel, OrderNotification
from farmstand.orders.states import OrderStatus
from tests import services
from tests.conftest import TEST_SECRET, make_settings
from tests.factories import Factory
from tests.live import FARMSTAND
from tests.notifications.peers import SmtpPeer


@pytest.fixture
def smtp() -> Iterator[SmtpPeer]:
    with SmtpPeer() as peer:
        yield peer


@pytest.fixture
async def seed(postgres_url: str, tmp_path: Path) -> AsyncIterator[Factory]:
    runtime: Runtime = build_runtime(make_settings(postgres_url, tmp_path))
    try:
        yield Factory(runtime)
    finally:
        await runtime.db.dispose()


def worker_env(postgres_url: str, smtp: SmtpPeer, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "FARMSTAND_DATABASE_URL": postgres_url,
        "FARMSTAND_SECRET_KEY": TEST_SECRET,
        "FARMSTAND_DATA_DIR": str(tmp_path),
        "FARMSTAND_SMTP_HOST": smtp.host,
        "FARMSTAND_SMTP_PORT": str(smtp.port),
        "FARMSTAND_SMTP_SECURITY": "none",
        "FARMSTAND_DISPATCHER_POLL_SECONDS": "0.2",
        "FARMSTAND_SCHEDULER_INTERVAL_SECONDS": "3600",
        "FARMSTAND_LOG_LEVEL": "WARNING",
        **extra,
    }


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [FARMSTAND, "worker"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=20)


async def email_ids(seed: Factory) -> set[str]:
    async with seed.db.transaction(write=False) as session:
        return set(
            await session.scalars(
                select(OrderNotification.id).where(
                    OrderNotification.channel == NotificationChannel.EMAIL
                )
            )
        )


async def unsent(seed: Factory) -> int:
    async with seed.db.transaction(write=False) as session:
        return int(
            await session.scalar(
                select(func.count())
                .select_from(OrderNotification)
                .where(
                    OrderNotification.channel == NotificationChannel.EMAIL,
                    OrderNotification.status != "SENT",
                )
            )
            or 0
        )


def received_ids(smtp: SmtpPeer) -> Counter[str]:
    return Counter(m.message["Message-ID"].strip("<>").split("@")[0] for m in smtp.messages)


async def wait_for(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.2)
    raise AssertionError("timed out")


async def test_a_worker_killed_mid_batch_loses_nothing(
    postgres_url: str, smtp: SmtpPeer, seed: Factory, tmp_path: Path
):
    farm = await seed.farm()
    for _ in range(15):
        await seed.order(status=OrderStatus.CONFIRMED, farm=farm)  # 30 emails
    expected = await email_ids(seed)
    assert len(expected) == 30
    smtp.delay = 0.3  # slow enough to catch the worker with a batch in flight
    env = worker_env(
        postgres_url,
        smtp,
        tmp_path,
        FARMSTAND_NOTIFICATION_LEASE_SECONDS="2",
        FARMSTAND_DISPATCHER_BATCH_SIZE="10",
        FARMSTAND_EMAIL_CONCURRENCY="2",
    )

    first = start_worker(env, tmp_path / "worker-1.log")
    try:
        await wait_for(lambda: _at_least(smtp, 3), timeout=30)
    finally:
        stop(first, signal.SIGKILL)  # mid-batch: some rows claimed, not recorded
    async with seed.db.transaction(write=False) as session:
        in_flight = await session.scalar(
            select(func.count())
            .select_from(OrderNotification)
            .where(OrderNotification.status == "SENDING")
        )
    assert in_flight, "the worker should have died with claims outstanding"

    smtp.delay = 0
    second = start_worker(env, tmp_path / "worker-2.log")
    try:

        async def all_sent() -> bool:
            return await unsent(seed) == 0

        await wait_for(all_sent, timeout=60)
    finally:
        stop(second)
    # Every notification arrived at least once; none was lost.
    assert set(received_ids(smtp)) == expected


async def _at_least(smtp: SmtpPeer, count: int) -> bool:
    return len(smtp.messages) >= count


async def test_two_workers_never_send_the_same_notification_twice(
    postgres_url: str, smtp: SmtpPeer, seed: Factory, tmp_path: Path
):
    farm = await seed.farm()
    for _ in range(40):
        await seed.order(status=OrderStatus.CONFIRMED, farm=farm)  # 80 emails
    expected = await email_ids(seed)
    smtp.delay = 0.02
    env = worker_env(postgres_url, smtp, tmp_path, FARMSTAND_DISPATCHER_BATCH_SIZE="5")

    workers = [start_worker(env, tmp_path / f"worker-{n}.log") for n in range(2)]
    try:

        async def all_sent() -> bool:
            return await unsent(seed) == 0

        await wait_for(all_sent, timeout=60)
    finally:
        for proc in workers:
            stop(proc)

    received = received_ids(smtp)
    assert set(received) == expected
    assert max(received.values()) == 1  # no row sent twice
    async with seed.db.transaction(write=False) as session:
        claimers = set(
            await session.scalars(
                select(OrderNotification.claimed_by).where(
                    OrderNotification.channel == NotificationChannel.EMAIL
                )
            )
        )
    assert len(claimers) == 2  # both workers really sent a share


async def test_a_worker_sends_what_a_server_commits_without_waiting_for_its_poll(
    postgres_url: str, smtp: SmtpPeer, tmp_path: Path
):
    """Servers and workers share the Redis bus: a change's events wake every worker."""
    services.require("redis")
    channel = f"farmstand-test:{uuid.uuid4().hex}"
    bus = {"FARMSTAND_EVENT_BUS": "redis", "FARMSTAND_REDIS_CHANNEL": channel}
    server: Runtime = build_runtime(
        make_settings(postgres_url, tmp_path, event_bus="redis", redis_channel=channel)
    )
    await server.start(streams=False, dispatch=False)  # publishes what it commits
    env = worker_env(postgres_url, smtp, tmp_path, FARMSTAND_DISPATCHER_POLL_SECONDS="120", **bus)
    log = tmp_path / "worker.log"
    worker = start_worker(env, log)
    try:

        async def idle() -> bool:  # started, and its first look at the queue is done
            return "sending notifications" in log.read_text()

        await wait_for(idle, timeout=60)
        await asyncio.sleep(1)
        factory = Factory(server)
        await factory.order(status=OrderStatus.CONFIRMED)  # one confirmation email
        started = time.monotonic()
        await wait_for(lambda: _at_least(smtp, 1), timeout=30)
        assert time.monotonic() - started < 15  # far sooner than the 120 s poll
    finally:
        stop(worker)
        await server.stop()
