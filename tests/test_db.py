"""The transaction helper on the embedded database."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import event, text

from farmstand.db import Database


async def test_writers_of_one_process_take_turns_instead_of_meeting_sqlites_lock(
    tmp_path: Path,
) -> None:
    # Given a file database whose connections never wait on SQLite's busy handler
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")

    @event.listens_for(db.engine.sync_engine, "connect")
    def _no_busy_wait(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=0")

    async with db.transaction() as session:
        await session.execute(text("CREATE TABLE t (n INTEGER)"))
    order: list[int] = []

    async def write(n: int) -> None:
        async with db.transaction() as session:
            await session.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})
            await asyncio.sleep(0.01)  # hold the write lock across an await, as requests do
            order.append(n)

    # When ten writers start at once
    await asyncio.gather(*(write(n) for n in range(10)))

    # Then none met "database is locked", and they wrote in the order they asked
    async with db.transaction(write=False) as session:
        rows = (await session.execute(text("SELECT n FROM t ORDER BY rowid"))).scalars().all()
    assert list(rows) == list(range(10))
    assert order == list(range(10))
    await db.dispose()
