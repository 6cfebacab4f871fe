"""Open-loop and closed-loop request runners, and the figures they report.

Open loop: request i is due at ``t0 + i / rate`` whatever happened before it, and its latency
is measured from that due time, so a server that falls behind shows its queue in the figures
instead of slowing the generator down (no coordinated omission). Requests go out over a bounded
pool of keep-alive connections; a request due while every connection is busy waits for one,
and that wait is part of its latency.

Closed loop: ``concurrency`` clients each send their next request as soon as the last one
answered; the throughput is the server's peak, the latency is per request.
"""

from __future__ import annotations

import asyncio
import math
import resource
import time
from array import array
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from farmstand.bench.http import ConnectionClosed, HttpConnection

IDLE_RECONNECT = 4.0  # uvicorn closes idle keep-alive connections after 5 s
Progress = Callable[[int, int], None]
OnResponse = Callable[[int, int, bytes], None]  # (request index, status, body)


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    # Nearest rank: the smallest value with at least q% of the values at or below it.
    rank = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[rank]


def latency_summary(latencies: array[float] | list[float]) -> dict[str, float | None]:
    """P50/P95/P99/max in milliseconds (None when nothing completed)."""
    values = sorted(latencies)
    ms = {
        f"p{q}_ms": (None if (v := percentile(values, q)) is None else round(v * 1000, 3))
        for q in (50, 95, 99)
    }
    ms["max_ms"] = round(values[-1] * 1000, 3) if values else None
    ms["mean_ms"] = round(sum(values) / len(values) * 1000, 3) if values else None
    return ms


class CpuClock:
    """This process's CPU (user + system) and wall time over a span."""

    def __init__(self) -> None:
        self.wall0 = time.perf_counter()
        self.cpu0 = self._cpu()

    @staticmethod
    def _cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def report(self) -> dict[str, float | bool]:
        wall = time.perf_counter() - self.wall0
        cpu = self._cpu() - self.cpu0
        busy = cpu / wall if wall > 0 else 0.0
        return {
            "cpu_seconds": round(cpu, 3),
            "wall_seconds": round(wall, 3),
            "busy_fraction": round(busy, 3),
            "saturated": busy > 0.7,
        }


class Pool:
    """Keep-alive connections, reopened when the server closed them."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.free: list[HttpConnection] = []
        self.last_used: dict[int, float] = {}

    async def fill(self, size: int) -> None:
        async def one() -> None:
            try:
                self.free.append(await HttpConnection.open(self.host, self.port))
            except (OSError, TimeoutError):
                self.free.append(closed_connection())  # each request tries to connect again

        for start in range(0, size, 64):
            await asyncio.gather(*(one() for _ in range(min(64, size - start))))

    async def send(
        self, conn: HttpConnection | None, data: bytes
    ) -> tuple[HttpConnection, int, bytes]:
        """Send on ``conn`` (or a new connection); the connection to use next time."""
        if conn is None or conn.closed:
            conn = await HttpConnection.open(self.host, self.port)
        idle = time.monotonic() - self.last_used.get(id(conn), time.monotonic())
        try:
            status, body = await conn.request(data)
        except ConnectionClosed:
            if idle < IDLE_RECONNECT:
                raise
            # The server closed it for idleness as we wrote: what any client does, once.
            conn = await HttpConnection.open(self.host, self.port)
            status, body = await conn.request(data)
        self.last_used[id(conn)] = time.monotonic()
        return conn, status, body

    def close(self) -> None:
        for conn in self.free:
            conn.close()
        self.free.clear()


def closed_connection() -> HttpConnection:
    """A placeholder the pool reconnects on its next use."""
    conn = HttpConnection()
    conn.closed = True
    return conn


class Tally:
    def __init__(self) -> None:
        self.latencies: array[float] = array("d")
        self.statuses: Counter[str] = Counter()
        self.completed = 0
        self.last = 0.0  # when the last response arrived (perf_counter)

    def ok(self, status: int, latency: float) -> None:
        self.completed += 1
        self.last = time.perf_counter()
        self.statuses[str(status)] += 1
        self.latencies.append(latency)

    def failed(self, reason: str) -> None:
        self.statuses[reason] += 1

    def summary(self, requests: int, elapsed: float) -> dict[str, Any]:
        errors = {k: v for k, v in self.statuses.items() if not k.startswith("2")}
        ok = sum(v for k, v in self.statuses.items() if k.startswith("2"))
        return {
            "requests": requests,
            "completed": self.completed,
            "succeeded": ok,
            "failed": requests - ok,
            "errors": dict(sorted(errors.items())),
            "elapsed_seconds": round(elapsed, 3),
            "throughput": round(ok / elapsed, 2) if elapsed > 0 else 0.0,
            **latency_summary(self.latencies),
        }


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionClosed):
        return "connection closed"
    if isinstance(exc, OSError):
        return "connection error"
    return f"client error: {type(exc).__name__}"


async def open_loop(
    pool: Pool,
    requests: list[bytes],
    *,
    rate: float,
    duration: float,
    connections: int,
    drain: float,
    progress: Progress,
    on_response: OnResponse | None = None,
) -> dict[str, Any]:
    """Offer ``rate`` requests per second for ``duration`` seconds (never more than given)."""
    n = min(len(requests), max(1, int(rate * duration)))
    await pool.fill(connections)
    tally = Tally()
    waiting: deque[tuple[int, float]] = deque()
    tasks: set[asyncio.Task[None]] = set()
    clock = time.perf_counter
    interval = 1.0 / rate

    async def worker(conn: HttpConnection | None, index: int, due: float) -> None:
        while True:
            try:
                conn, status, body = await pool.send(conn, requests[index])
            except Exception as exc:
                tally.failed(_reason(exc))
                if conn is not None:
                    conn.close()
                conn = None
            else:
                tally.ok(status, clock() - due)
                if on_response is not None:
                    on_response(index, status, body)
            if not waiting:
                break
            index, due = waiting.popleft()
        pool.free.append(conn if conn is not None else closed_connection())

    t0 = clock() + 0.05
    index = 0
    last_report = 0.0
    while index < n:
        now = clock()
        while index < n and t0 + index * interval <= now:
            due = t0 + index * interval
            if pool.free:
                task = asyncio.create_task(worker(pool.free.pop(), index, due))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            else:
                waiting.append((index, due))
            index += 1
        if now - last_report > 0.5:
            progress(tally.completed + _failed(tally), n)
            last_report = now
        if index < n:
            await asyncio.sleep(max(0.0, t0 + index * interval - clock()))
    deadline = clock() + drain
    while tasks and clock() < deadline:
        await asyncio.wait(set(tasks), timeout=0.5)
        progress(tally.completed + _failed(tally), n)
    for task in list(tasks):
        task.cancel()
    unfinished = len(waiting) + len(tasks)
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
    if unfinished:
        tally.statuses["unfinished"] += unfinished
    elapsed = clock() - t0
    pool.close()
    # Achieved throughput: answers per second from the first due time to the last answer.
    result = tally.summary(n, max(tally.last - t0, interval))
    result["offered_rate"] = rate
    result["elapsed_seconds"] = round(elapsed, 3)
    return result


def _failed(tally: Tally) -> int:
    return sum(v for k, v in tally.statuses.items() if not k.isdigit())


async def closed_loop(
    pool: Pool,
    requests: list[bytes],
    *,
    concurrency: int,
    duration: float,
    drain: float,
    progress: Progress,
    on_response: OnResponse | None = None,
) -> dict[str, Any]:
    """``concurrency`` clients back to back for ``duration`` seconds (or until the requests
    run out: ``ran_out`` says so)."""
    n = len(requests)
    tally = Tally()
    clock = time.perf_counter
    state = {"next": 0}
    await pool.fill(concurrency)
    t0 = clock()
    stop_at = t0 + duration

    async def client() -> None:
        conn = pool.free.pop() if pool.free else None
        while clock() < stop_at and state["next"] < n:
            index = state["next"]
            state["next"] += 1
            start = clock()
            try:
                conn, status, body = await pool.send(conn, requests[index])
            except Exception as exc:
                tally.failed(_reason(exc))
                if conn is not None:
                    conn.close()
                conn = None
                continue
            tally.ok(status, clock() - start)
            if on_response is not None:
                on_response(index, status, body)
        if conn is not None:
            conn.close()

    async def report() -> None:
        while True:
            await asyncio.sleep(0.5)
            fraction = max((clock() - t0) / duration, state["next"] / max(n, 1))
            progress(min(int(fraction * 1000), 1000), 1000)

    reporter = asyncio.create_task(report())
    clients = [asyncio.create_task(client()) for _ in range(concurrency)]
    _, pending = await asyncio.wait(clients, timeout=duration + drain)
    reporter.cancel()
    for task in pending:
        task.cancel()
    await asyncio.gather(*clients, reporter, return_exceptions=True)
    if pending:
        tally.statuses["unfinished"] += len(pending)
    elapsed = clock() - t0
    pool.close()
    sent = state["next"]
    result = tally.summary(sent, elapsed)
    result["concurrency"] = concurrency
    result["ran_out"] = sent >= n and elapsed < duration
    return result
