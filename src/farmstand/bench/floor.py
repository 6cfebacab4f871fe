"""The floor: the status-update transaction done straight through the database driver.

The same shape as a status change, nothing else: lock the order, update it, insert a history
row and an event row, commit; ``connections`` connections side by side (PostgreSQL, asyncpg)
or one (SQLite, which has one writer), each cycling through orders of its own for a fixed
time. What it reaches is what the database and driver allow on this machine; Farmstand's
peak is reported as a fraction of it.

The event rows are dated a day ahead, so that the server's relay (which sequences events a
couple of seconds old) leaves them alone, and are deleted at the end.

    python -m farmstand.bench.floor JOB.json      (prints one JSON line: the figures)
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from farmstand.bench.engine import CpuClock, latency_summary

HISTORY_META = json.dumps({"notifyCustomer": True})
LOCK = "SELECT status, version FROM orders WHERE id = $1 FOR UPDATE"
UPDATE = (
    "UPDATE orders SET status = 'CONFIRMED', confirmed_at = $2, updated_at = $2, "
    "version = version + 1 WHERE id = $1"
)
HISTORY = (
    "INSERT INTO order_status_history (id, seq, order_id, from_status, to_status, changed_by, "
    "reason, metadata, created_at) VALUES ($1, $2, $3, $4, 'CONFIRMED', $5, NULL, $6::jsonb, $7)"
)
EVENT = (
    "INSERT INTO order_events (type, order_id, farm_id, customer_id, user_id, data, created_at) "
    "VALUES ('STATUS_CHANGE', $1, $2, $3, NULL, $4::jsonb, $5)"
)
CLEANUP = "DELETE FROM order_events WHERE position IS NULL AND created_at > $1"


def _event_data(status: str, version: int, now: datetime) -> str:
    return json.dumps(
        {
            "previousStatus": status,
            "status": "CONFIRMED",
            "version": version + 1,
            "timestamps": {"confirmedAt": now.isoformat()},
            "floor": True,
        }
    )


async def postgres(job: dict[str, Any]) -> dict[str, Any]:
    import asyncpg

    dsn = job["url"].replace("postgresql+asyncpg://", "postgresql://", 1)
    connections = int(job["connections"])
    orders: list[list[str]] = job["orders"]
    slices = [orders[i::connections] for i in range(connections)]
    pool = [await asyncpg.connect(dsn) for _ in range(connections)]
    latencies: list[float] = []
    errors: dict[str, int] = {}
    count = 0
    stop_at = time.perf_counter() + float(job["duration"])

    async def client(conn: Any, mine: list[list[str]]) -> None:
        nonlocal count
        i = 0
        while time.perf_counter() < stop_at and mine:
            order_id, farm_id, customer_id, farmer_id = mine[i % len(mine)]
            i += 1
            start = time.perf_counter()
            now = datetime.now(UTC)
            ahead = now + timedelta(days=1)
            try:
                async with conn.transaction():
                    row = await conn.fetchrow(LOCK, order_id)
                    await conn.execute(UPDATE, order_id, now)
                    await conn.execute(
                        HISTORY,
                        str(uuid.uuid4()),
                        row["version"] + 1,
                        order_id,
                        row["status"],
                        farmer_id,
                        HISTORY_META,
                        now,
                    )
                    await conn.execute(
                        EVENT,
                        order_id,
                        farm_id,
                        customer_id,
                        _event_data(row["status"], row["version"], now),
                        ahead,
                    )
            except Exception as exc:
                key = type(exc).__name__
                errors[key] = errors.get(key, 0) + 1
                continue
            latencies.append(time.perf_counter() - start)
            count += 1

    clock = CpuClock()
    started = time.perf_counter()
    await asyncio.gather(*(client(c, s) for c, s in zip(pool, slices, strict=True)))
    elapsed = time.perf_counter() - started
    generator = clock.report()
    await pool[0].execute(CLEANUP, datetime.now(UTC) + timedelta(hours=1))
    for conn in pool:
        await conn.close()
    return _figures(count, elapsed, latencies, errors, connections, generator)


def sqlite(job: dict[str, Any]) -> dict[str, Any]:
    import sqlite3

    path = job["url"].split(":///", 1)[1]
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA synchronous=NORMAL")
    orders: list[list[str]] = job["orders"]
    latencies: list[float] = []
    errors: dict[str, int] = {}
    count = 0
    clock = CpuClock()
    started = time.perf_counter()
    stop_at = started + float(job["duration"])
    i = 0
    while time.perf_counter() < stop_at and orders:
        order_id, farm_id, customer_id, farmer_id = orders[i % len(orders)]
        i += 1
        start = time.perf_counter()
        now = datetime.now(UTC).replace(tzinfo=None)
        ahead = now + timedelta(days=1)
        try:
            conn.execute("BEGIN IMMEDIATE")
            status, version = conn.execute(
                "SELECT status, version FROM orders WHERE id = ?", (order_id,)
            ).fetchone()
            conn.execute(
                "UPDATE orders SET status = 'CONFIRMED', confirmed_at = ?, updated_at = ?, "
                "version = version + 1 WHERE id = ?",
                (str(now), str(now), order_id),
            )
            conn.execute(
                "INSERT INTO order_status_history (id, seq, order_id, from_status, to_status, "
                "changed_by, reason, metadata, created_at) "
                "VALUES (?, ?, ?, ?, 'CONFIRMED', ?, NULL, ?, ?)",
                (
                    str(uuid.uuid4()),
                    version + 1,
                    order_id,
                    status,
                    farmer_id,
                    HISTORY_META,
                    str(now),
                ),
            )
            conn.execute(
                "INSERT INTO order_events (type, order_id, farm_id, customer_id, user_id, data, "
                "created_at) VALUES ('STATUS_CHANGE', ?, ?, ?, NULL, ?, ?)",
                (order_id, farm_id, customer_id, _event_data(status, version, now), str(ahead)),
            )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            key = type(exc).__name__
            errors[key] = errors.get(key, 0) + 1
            continue
        latencies.append(time.perf_counter() - start)
        count += 1
    elapsed = time.perf_counter() - started
    generator = clock.report()
    conn.execute(
        "DELETE FROM order_events WHERE position IS NULL AND created_at > ?",
        (str(datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=1)),),
    )
    conn.close()
    return _figures(count, elapsed, latencies, errors, 1, generator)


def _figures(
    count: int,
    elapsed: float,
    latencies: list[float],
    errors: dict[str, int],
    connections: int,
    generator: dict[str, Any],
) -> dict[str, Any]:
    return {
        "transactions": count,
        "connections": connections,
        "elapsed_seconds": round(elapsed, 3),
        "throughput": round(count / elapsed, 2) if elapsed > 0 else 0.0,
        "errors": errors,
        **latency_summary(latencies),
        "generator": generator,
    }


def main() -> None:
    with open(sys.argv[1]) as handle:
        job = json.load(handle)
    result = sqlite(job) if job["url"].startswith("sqlite") else asyncio.run(postgres(job))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
