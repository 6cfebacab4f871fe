"""The ceiling of event sequencing when several processes write at once.

Each of ``--processes`` OS processes runs ``--writers`` tasks that commit one event per
transaction (through ``events.service.record``, as the app writes them) as fast as they can,
and the app's own ``Sequencer`` (the one every server process runs), which gives committed
events their positions and publishes them (on the in-process bus: Redis is not what is
measured). After ``--duration`` seconds it reports, from the database:

- events committed per second, and sequencing transactions per second (with the mean batch);
- commit to position (``published_at - created_at``): P50, P95, P99, max;
- a check that positions are gap-free and unique.

    .venv/bin/python bench/sequencer.py --processes 2 --writers 16 --duration 10

It creates a PostgreSQL database of its own on 127.0.0.1 and drops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import time
import uuid
from datetime import timedelta
from typing import Any

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _worker(url: str, writers: int, duration: float, queue: Any) -> None:
    asyncio.run(_work(url, writers, duration, queue))


async def _work(url: str, writers: int, duration: float, queue: Any) -> None:
    from farmstand.db import Database
    from farmstand.events import service
    from farmstand.events.bus import MemoryBus
    from farmstand.events.models import EventType
    from farmstand.events.relay import Sequencer

    db = Database(url, pool_size=writers + 2)
    sequencer = Sequencer(db, MemoryBus(), relay_interval=1, grace=2, retention=timedelta(days=1))
    db.commit_listeners.append(sequencer.on_commit)
    sequencer.start()
    committed = 0
    deadline = time.monotonic() + duration

    async def write() -> None:
        nonlocal committed
        while time.monotonic() < deadline:
            async with db.transaction() as session:
                service.record(
                    session,
                    EventType.ORDER_UPDATE,
                    order_id=None,
                    farm_id="bench",
                    customer_id=None,
                    data={"n": committed},
                )
            committed += 1

    await asyncio.gather(*(write() for _ in range(writers)))
    await sequencer.stop()
    await db.dispose()
    queue.put({"committed": committed, "published": sequencer.published})


async def _admin(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _report(url: str, duration: float) -> dict[str, Any]:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        rows = await conn.fetch(
            "SELECT position, extract(epoch FROM published_at - created_at) * 1000 AS lag "
            "FROM order_events ORDER BY position"
        )
        transactions = await conn.fetchval("SELECT count(DISTINCT published_at) FROM order_events")
    finally:
        await conn.close()
    positions = [row["position"] for row in rows]
    lags = sorted(float(row["lag"]) for row in rows)

    def pct(p: float) -> float:
        return round(lags[min(len(lags) - 1, int(len(lags) * p))], 1)

    return {
        "events": len(rows),
        "events_per_second": round(len(rows) / duration, 1),
        "sequencing_transactions_per_second": round(transactions / duration, 1),
        "mean_batch": round(len(rows) / max(1, transactions), 1),
        "commit_to_position_ms": {
            "p50": pct(0.5),
            "p95": pct(0.95),
            "p99": pct(0.99),
            "max": round(lags[-1], 1),
            "mean": round(statistics.fmean(lags), 1),
        },
        "gap_free_and_unique": positions == list(range(1, len(positions) + 1)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--writers", type=int, default=16, help="committing tasks per process")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--json", help="also write the report to this file")
    args = parser.parse_args()

    name = f"farmstand_seqbench_{uuid.uuid4().hex[:8]}"
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        from farmstand.migrate import upgrade

        upgrade(url)
        queue: Any = multiprocessing.get_context("spawn").Queue()
        procs = [
            multiprocessing.get_context("spawn").Process(
                target=_worker, args=(url, args.writers, args.duration, queue)
            )
            for _ in range(args.processes)
        ]
        for proc in procs:
            proc.start()
        results = [queue.get(timeout=args.duration + 120) for _ in procs]
        for proc in procs:
            proc.join(timeout=60)
        report = {
            "processes": args.processes,
            "writers_per_process": args.writers,
            "duration_seconds": args.duration,
            "committed": sum(r["committed"] for r in results),
            **asyncio.run(_report(url, args.duration)),
        }
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as handle:
            handle.write(text + "\n")
    sys.exit(0 if report["gap_free_and_unique"] else 1)


if __name__ == "__main__":
    main()
