"""The two bus backends behind one interface; Redis survives a dropped connection."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as redis

from farmstand.events.bus import MemoryBus, RedisBus
from tests import services


async def test_memory_bus_hands_batches_to_the_local_handler():
    got: list[list[dict]] = []

    async def handler(batch: list[dict]) -> None:
        got.append(batch)

    async def on_reconnect() -> None: ...

    bus = MemoryBus()
    await bus.publish([{"eventId": 0}])  # before anyone listens: nothing to hand over
    await bus.start(handler, on_reconnect)
    await bus.publish([{"eventId": 1}, {"eventId": 2}])
    await bus.close()
    await bus.publish([{"eventId": 3}])
    assert got == [[{"eventId": 1}, {"eventId": 2}]]


@pytest.fixture
def redis_url() -> str:
    services.require("redis")
    return services.REDIS_URL


async def wait_until(predicate, timeout: float = 10) -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


async def test_redis_bus_delivers_between_two_buses_and_resubscribes_after_a_drop(
    redis_url: str,
):
    channel = f"farmstand:test:{uuid.uuid4().hex}"
    got: list[dict] = []
    reconnects: list[bool] = []

    async def handler(batch: list[dict]) -> None:
        got.extend(batch)

    async def on_reconnect() -> None:
        reconnects.append(True)

    async def ignore(batch: list[dict]) -> None: ...

    receiver, sender = RedisBus(redis_url, channel), RedisBus(redis_url, channel)
    await receiver.start(handler, on_reconnect)
    await sender.start(ignore, on_reconnect)
    try:
        await sender.publish([{"eventId": 1}])
        await wait_until(lambda: got == [{"eventId": 1}])

        # When Redis drops the receiver's subscription (a restart, a network blip),
        admin = redis.from_url(redis_url, decode_responses=True)
        for client in await admin.client_list(_type="pubsub"):
            if client["name"] == receiver.client_name:
                await admin.client_kill_filter(_id=client["id"])
        await admin.aclose()
        # then it subscribes again and asks the hub to catch up from the database,
        await wait_until(lambda: bool(reconnects))
        # and later events arrive again.
        await sender.publish([{"eventId": 2}])
        await wait_until(lambda: {"eventId": 2} in got)
    finally:
        await receiver.close()
        await sender.close()


async def test_redis_bus_drops_a_malformed_message(redis_url: str):
    channel = f"farmstand:test:{uuid.uuid4().hex}"
    got: list[dict] = []

    async def handler(batch: list[dict]) -> None:
        got.extend(batch)

    async def on_reconnect() -> None: ...

    bus = RedisBus(redis_url, channel)
    await bus.start(handler, on_reconnect)
    try:
        raw = redis.from_url(redis_url)
        await raw.publish(channel, "not json{")
        await raw.aclose()
        await bus.publish([{"eventId": 7}])
        await wait_until(lambda: got == [{"eventId": 7}])
    finally:
        await bus.close()
