"""Event delivery, seen from the clients: K open streams, and which frames reached which.

Each farm and each customer holds its own ``GET /api/events`` stream. While status updates run,
every ``STATUS_CHANGE`` frame is matched to the order it is about: a successful update must
reach exactly two streams (its farm's and its customer's), once each. Latency is the frame's
arrival minus the event's ``createdAt`` (the server's clock, taken in the change's transaction
before it commits: an upper bound on commit-to-frame), and, second, minus the time the PUT's
response reached the client (negative when the frame came first).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from farmstand.bench.engine import Progress, latency_summary
from farmstand.bench.http import SseConnection, open_stream, sse_field

STATUS_CHANGE = b"event: STATUS_CHANGE"


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class Streams:
    def __init__(self, host: str, port: int, authority: str) -> None:
        self.host = host
        self.port = port
        self.authority = authority
        self.conns: list[SseConnection] = []
        self.keys: list[tuple[str, int]] = []  # per connection index: ("farm"|"customer", i)
        self.frames: list[tuple[int, str, int, str, float]] = []
        self.other_frames = 0
        self.bad_frames = 0
        # Orders changed in this phase: order id -> (farm, customer), and when its PUT answered.
        self.expected: dict[str, tuple[int, int]] = {}
        self.answered: dict[str, float] = {}

    def _on_frame(self, conn: SseConnection, frame: bytes, arrival: float) -> None:
        if STATUS_CHANGE not in frame:
            self.other_frames += 1
            return
        try:
            data = json.loads(sse_field(frame, b"data") or b"")
            self.frames.append(
                (conn.index, data["orderId"], int(data["eventId"]), data["createdAt"], arrival)
            )
        except (ValueError, KeyError, TypeError):
            self.bad_frames += 1

    async def open(
        self,
        requests: list[tuple[str, int, bytes]],
        *,
        concurrency: int,
        limit: float,
        progress: Progress,
    ) -> dict[str, Any]:
        """Open every stream (``concurrency`` at a time) and wait for each one's CONNECTED."""
        semaphore = asyncio.Semaphore(concurrency)
        failures: Counter[str] = Counter()
        started = time.perf_counter()
        opened = 0

        async def one(kind: str, i: int, request: bytes) -> None:
            nonlocal opened
            async with semaphore:
                index = len(self.keys)
                self.keys.append((kind, i))
                try:
                    conn = await open_stream(
                        self.host, self.port, request, index, self._on_frame, limit
                    )
                except TimeoutError:
                    failures["timeout"] += 1
                except (OSError, ConnectionError) as exc:
                    failures[str(exc)[:60] or type(exc).__name__] += 1
                else:
                    self.conns.append(conn)
                    opened += 1
                progress(opened + sum(failures.values()), len(requests))

        await asyncio.gather(*(one(*r) for r in requests))
        return {
            "requested": len(requests),
            "opened": opened,
            "failed": dict(failures),
            "seconds": round(time.perf_counter() - started, 3),
        }

    def tracker(self, rows: list[list[Any]]) -> Callable[[int, int, bytes], None]:
        """The on-response hook of the update run: remember which orders changed, and when."""

        def on_response(index: int, status: int, body: bytes) -> None:
            if 200 <= status < 300:
                order_id, farm, customer, _ = rows[index]
                self.expected[order_id] = (farm, customer)
                self.answered[order_id] = time.time()

        return on_response

    async def wait(self, within: float) -> dict[str, Any]:
        """Until every expected frame arrived (or ``within`` seconds); then the figures."""
        deadline = time.monotonic() + within
        expected_frames = 2 * len(self.expected)
        while time.monotonic() < deadline:
            if self.figures()["frames_received"] >= expected_frames:
                break
            await asyncio.sleep(0.1)
        return self.figures()

    def figures(self) -> dict[str, Any]:
        seen: Counter[tuple[str, int, str]] = Counter()
        misrouted = 0
        latencies: list[float] = []
        after_response: list[float] = []
        for index, order_id, _event_id, created_at, arrival in self.frames:
            kind, i = self.keys[index]
            target = self.expected.get(order_id)
            if (
                target is None
                or (kind == "farm" and target[0] != i)
                or (kind == "customer" and target[1] != i)
            ):
                misrouted += 1
                continue
            seen[(kind, i, order_id)] += 1
            if seen[(kind, i, order_id)] == 1:
                latencies.append(arrival - _epoch(created_at))
                if order_id in self.answered:
                    after_response.append(arrival - self.answered[order_id])
        received = len(seen)
        expected = 2 * len(self.expected)
        return {
            "updates_changed": len(self.expected),
            "frames_expected": expected,
            "frames_received": received,
            "frames_lost": expected - received,
            "frames_duplicated": sum(seen.values()) - received,
            "frames_misrouted": misrouted,
            "frames_unreadable": self.bad_frames,
            "other_frames": self.other_frames,
            "streams_open": sum(1 for c in self.conns if not c.closed),
            "latency": latency_summary(latencies),
            "latency_after_response": latency_summary(after_response),
        }

    def close(self) -> dict[str, Any]:
        still_open = sum(1 for c in self.conns if not c.closed)
        for conn in self.conns:
            conn.close()
        self.conns.clear()
        self.keys.clear()
        self.frames.clear()
        self.expected.clear()
        self.answered.clear()
        return {"closed": still_open}
