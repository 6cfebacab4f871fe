"""The sequencer's shutdown."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from farmstand.db import Database
from farmstand.events import service
from farmstand.events.relay import Sequencer


class _Bus:
    async def publish(self, messages: list[Any]) -> None:
        pass


async def test_stopping_lets_the_pass_in_flight_finish(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a sequencing pass that is inside its transaction
    inside, release = asyncio.Event(), asyncio.Event()
    finished: list[bool] = []

    async def sequence_pending(_db: Database) -> list[Any]:
        inside.set()
        try:
            await release.wait()
        except asyncio.CancelledError:
            finished.append(False)
            raise
        finished.append(True)
        return []

    monkeypatch.setattr(service, "sequence_pending", sequence_pending)
    sequencer = Sequencer(
        Database("sqlite+aiosqlite://"),
        _Bus(),  # type: ignore[arg-type]
        relay_interval=60,
        grace=1,
        retention=timedelta(days=1),
    )
    sequencer.start()
    await sequencer.on_commit({service.NEW_EVENTS_KEY: True})
    await asyncio.wait_for(inside.wait(), 5)

    # When the app stops meanwhile
    stopping = asyncio.create_task(sequencer.stop())
    await asyncio.sleep(0.05)
    release.set()
    await asyncio.wait_for(stopping, 5)

    # Then the pass ran to its end (a pass cancelled inside its transaction could leave its
    # connection holding SQLite's write lock for the last flush to wait on)
    assert finished[0] is True
