"""The event bus: how a sequenced event reaches every server process.

Two backends behind one small interface: in-process (the embedded default) and Redis
pub/sub (many processes and hosts). The bus is only the fast path: events live in the
database, and each process's hub catches up from there whatever the bus loses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from farmstand.config import EventBusKind, Settings

log = logging.getLogger(__name__)

Message = dict[str, Any]
Handler = Callable[[list[Message]], Awaitable[None]]
ReconnectHandler = Callable[[], Awaitable[None]]


class EventBus(Protocol):
    async def start(self, handler: Handler, on_reconnect: ReconnectHandler) -> None:
        """Subscribe: ``handler`` gets every published batch, from any process."""

    async def publish(self, messages: list[Message]) -> None:
        """Hand a batch of sequenced events to every subscribed process."""

    async def close(self) -> None: ...


class MemoryBus:
    """One process: publishing calls the local handler directly."""

    def __init__(self) -> None:
        self._handler: Handler | None = None

    async def start(self, handler: Handler, on_reconnect: ReconnectHandler) -> None:
        self._handler = handler

    async def publish(self, messages: list[Message]) -> None:
        if self._handler is not None and messages:
            await self._handler(messages)

    async def close(self) -> None:
        self._handler = None


class RedisBus:
    """Redis pub/sub on one channel; one subscription per process."""

    def __init__(self, url: str, channel: str) -> None:
        import redis.asyncio as redis

        # Named, so `CLIENT LIST` on the Redis server shows which process each connection is.
        self.client_name = f"farmstand-bus:{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._redis = redis.from_url(
            url, health_check_interval=15, socket_keepalive=True, client_name=self.client_name
        )
        self._channel = channel
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def start(self, handler: Handler, on_reconnect: ReconnectHandler) -> None:
        self._task = asyncio.create_task(self._listen(handler, on_reconnect), name="redis-bus")
        # Wait for the first subscription so nothing published after start() is missed.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), timeout=10)
        if not self._subscribed.is_set():
            log.warning("Redis bus not subscribed yet; the hub catches up from the database")

    async def _listen(self, handler: Handler, on_reconnect: ReconnectHandler) -> None:
        from redis.exceptions import RedisError

        delay, first = 0.2, True
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                self._subscribed.set()
                if not first:
                    log.info("Redis bus re-subscribed")
                    await on_reconnect()  # whatever was published meanwhile is in the database
                first, delay = False, 0.2
                async for raw in pubsub.listen():
                    if raw.get("type") != "message":
                        continue
                    try:
                        messages = json.loads(raw["data"])
                    except (ValueError, TypeError):
                        log.warning("dropping a malformed bus message")
                        continue
                    await handler(messages)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("Redis bus connection lost (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis

    async def publish(self, messages: list[Message]) -> None:
        if messages:
            await self._redis.publish(self._channel, json.dumps(messages, separators=(",", ":")))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._redis.aclose()


def make_bus(settings: Settings) -> EventBus:
    if settings.event_bus is EventBusKind.REDIS:
        return RedisBus(settings.redis_url, settings.redis_channel)
    return MemoryBus()
