"""A live in-process server per test (SSE needs a real socket), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from farmstand.app import create_app
from farmstand.config import Settings
from farmstand.deps import Runtime
from farmstand.events.models import OrderEvent
from tests.conftest import make_settings
from tests.factories import Factory
from tests.live import serve_in_process


@dataclass
class Live:
    url: str
    runtime: Runtime
    factory: Factory
    http: httpx.AsyncClient

    async def settle(self) -> None:
        """Wait until every committed event has been sequenced and delivered here."""
        await all_sequenced(self.runtime)
        from farmstand.events.service import last_position

        target = await last_position(self.runtime.db)
        for _ in range(200):
            if self.runtime.hub.position >= target:
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the hub did not catch up")


async def all_sequenced(runtime: Runtime) -> None:
    for _ in range(200):
        async with runtime.db.transaction(write=False) as session:
            pending = await session.scalar(
                select(OrderEvent.id).where(OrderEvent.position.is_(None)).limit(1)
            )
        if pending is None:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("events were not sequenced")


def live_settings(database_url: str, tmp_path: Path, **overrides: object) -> Settings:
    return make_settings(
        database_url,
        tmp_path,
        **{
            "event_relay_interval_seconds": 0.2,
            "event_relay_grace_seconds": 0.5,
            "event_poll_interval_seconds": 0.3,
            **overrides,
        },
    )


@pytest.fixture
def live_overrides() -> dict[str, object]:
    """Override in a test module to change the live server's settings."""
    return {}


@pytest.fixture
async def live(
    database_url: str, tmp_path: Path, live_overrides: dict[str, object]
) -> AsyncIterator[Live]:
    app = create_app(live_settings(database_url, tmp_path, **live_overrides))
    async with serve_in_process(app) as url:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:
            runtime: Runtime = app.state.runtime
            yield Live(url, runtime, Factory(runtime, http), http)
