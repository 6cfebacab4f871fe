"""The bench's parts that need no server: the plan, the HTTP and SSE parsing, the figures."""

from __future__ import annotations

import asyncio
import json

import pytest

from farmstand.bench.engine import latency_summary, percentile
from farmstand.bench.http import ChunkDecoder, HttpConnection, SseConnection, sse_field
from farmstand.bench.plan import BenchConfig, PlanError, make_plan


def test_plan_sizes_every_phase_from_rate_and_duration() -> None:
    # Given fixed rates for 2 s steps
    config = BenchConfig(rates=[50, 100], duration=2.0, farms=2, customers=10, connections=4)
    # When the plan is made
    plan = make_plan(config)
    # Then each step has an order per request, and the total covers every phase
    assert plan.status_step_orders == (101, 201)
    assert plan.pending_needed == 101 + 201 + plan.peak_orders + plan.sse_orders + plan.floor_orders
    assert not plan.searching


def test_plan_grows_orders_that_are_too_few() -> None:
    plan = make_plan(BenchConfig(rates=[100], duration=1.0, orders=10, customers=10, connections=4))
    assert plan.pending_total == plan.pending_needed > 10


def test_rate_search_stops_at_the_maximum_rate() -> None:
    plan = make_plan(BenchConfig(max_rate=700, customers=10, connections=4))
    assert plan.searching
    assert plan.status_rates == (100, 200, 400, 500, 700)


@pytest.mark.parametrize(
    "option",
    [
        {"database_url": "postgresql+asyncpg://postgres@db.example.com/postgres"},
        {"redis_url": "redis://10.0.0.5:6379/0"},
    ],
)
def test_only_this_machine_is_ever_targeted(option: dict[str, str]) -> None:
    with pytest.raises(PlanError, match=r"127\.0\.0\.1"):
        make_plan(BenchConfig(customers=10, connections=4, **option))  # type: ignore[arg-type]


def test_more_streams_than_accounts_is_refused() -> None:
    with pytest.raises(PlanError, match="--connections"):
        make_plan(BenchConfig(farms=2, customers=3, connections=10))


def test_chunked_bodies_are_decoded_across_reads() -> None:
    decoder, out = ChunkDecoder(), bytearray()
    buf = bytearray(b"5\r\nhel")
    decoder.feed(buf, out)
    buf += b"lo\r\n6;ext=1\r\n world\r\n0\r\n\r\n"
    decoder.feed(buf, out)
    assert bytes(out) == b"hello world" and decoder.done


def test_a_response_split_anywhere_is_parsed() -> None:
    async def scenario() -> tuple[int, bytes]:
        conn = HttpConnection()
        conn.transport = _NullTransport()  # type: ignore[assignment]
        pending = asyncio.ensure_future(conn.request(b"GET / HTTP/1.1\r\n\r\n"))
        await asyncio.sleep(0)
        reply = b'HTTP/1.1 201 Created\r\nContent-Length: 7\r\nX: y\r\n\r\n{"a":1}'
        for i in range(len(reply)):
            conn.data_received(reply[i : i + 1])
        return await pending

    assert asyncio.run(scenario()) == (201, b'{"a":1}')


class _NullTransport:
    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


def test_sse_frames_are_split_and_heartbeats_counted() -> None:
    async def scenario() -> tuple[list[bytes], int]:
        frames: list[bytes] = []
        conn = SseConnection(0, lambda _c, frame, _t: frames.append(frame))
        conn.transport = _NullTransport()  # type: ignore[assignment]
        body = (
            b"retry: 3000\n\nid: 4\nevent: CONNECTED\ndata: {}\n\n: ping\n\n"
            b'id: 5\nevent: STATUS_CHANGE\ndata: {"orderId":"o-1"}\n\n'
        )
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:30], body[30:]))
        conn.data_received(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked[:50])
        conn.data_received(chunked[50:])
        assert conn.opened.done()
        return frames, conn.heartbeats

    frames, heartbeats = asyncio.run(scenario())
    assert heartbeats == 1
    assert len(frames) == 1
    assert json.loads(sse_field(frames[0], b"data") or b"") == {"orderId": "o-1"}
    assert sse_field(frames[0], b"id") == b"5"


def test_percentiles_use_the_nearest_rank() -> None:
    values = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    assert percentile(values, 50) == 0.05
    assert percentile(values, 99) == 0.099
    summary = latency_summary(values)
    assert summary["p95_ms"] == 95.0 and summary["max_ms"] == 100.0
    assert latency_summary([])["p50_ms"] is None
