"""The measured phases of a bench run, in the order they run.

Notifications run first, on an empty queue; event delivery next; then the floor (the database
alone); then history fetches, the status-update rate search and peak, and order placement.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from farmstand.bench import servers
from farmstand.bench.engine import latency_summary
from farmstand.bench.plan import P95_LIMIT_MS, REPORTED_RATE, SSE_UPDATE_RATE, floor_connections
from farmstand.bench.runner import BenchError, Context
from farmstand.notifications.models import OrderNotification

Phase = Callable[[str], Callable[[int, int], None]]
N = OrderNotification.__table__.c
OUTBOUND = ("EMAIL", "SMS", "PUSH")


class Phases:
    def __init__(self, ctx: Context, phase: Phase, say: Callable[[str], None]) -> None:
        self.ctx = ctx
        self.phase = phase
        self.say = say
        self.engine: AsyncEngine = create_async_engine(ctx.database_url)

    async def close(self) -> None:
        await self.engine.dispose()

    # -- helpers -------------------------------------------------------------------------------

    async def open_loop(self, label: str, **command: Any) -> dict[str, Any]:
        duration, drain = float(command["duration"]), self.ctx.config.request_drain
        command = {"op": "open", "pool": self.ctx.config.pool, "drain": drain, **command}
        run = await self.ctx.load.call(command, duration + drain + 120, self.phase(label))
        return await self._unanswered(label, run)

    async def closed_loop(self, label: str, **command: Any) -> dict[str, Any]:
        duration = float(command["duration"])
        drain = self.ctx.config.request_drain
        command = {
            "op": "closed",
            "concurrency": self.ctx.config.concurrency,
            "drain": drain,
            **command,
        }
        run = await self.ctx.load.call(command, duration + drain + 120, self.phase(label))
        return await self._unanswered(label, run)

    async def _unanswered(self, label: str, run: dict[str, Any]) -> dict[str, Any]:
        """Requests the server never answered: say so, with the server's stacks in its log."""
        errors = run.get("errors", {})
        lost = sum(errors.get(key, 0) for key in ("unfinished", "timeout"))
        if lost:
            dumped = await self.ctx.dump_server_stacks()
            self.ctx.warnings.append(
                f"{label}: {lost} request(s) unanswered; the stacks of {dumped} server "
                "process(es) are in the server log"
            )
        return run

    async def sign_in(self, farmers: int, customers: int) -> dict[str, Any]:
        result = await self.ctx.load.call(
            {"op": "login", "farmers": farmers, "customers": customers, "concurrency": 16},
            within=900,
            on_progress=self.phase(f"Signing in {farmers + customers:,} accounts"),
        )
        if result["failed"]:
            raise BenchError(f"{result['failed']} sign-ins failed: {result['errors']}")
        return result

    async def _due(self) -> int:
        now = datetime.now(UTC)
        query = (
            select(func.count())
            .select_from(OrderNotification.__table__)
            .where(
                N.channel.in_(OUTBOUND),
                (N.status == "SENDING") | ((N.status == "QUEUED") & (N.next_attempt_at <= now)),
            )
        )
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def wait_sent(self, label: str) -> bool:
        """Until no notification is due or being sent (bounded by --drain-timeout)."""
        deadline = time.monotonic() + self.ctx.config.drain_timeout
        first = None
        progress = self.phase(label)
        while time.monotonic() < deadline:
            due = await self._due()
            first = due if first is None else max(first, due)
            progress(first - due, max(first, 1))
            if due == 0:
                return True
            await asyncio.sleep(0.25)
        return False

    async def _ready_rows(self, since: datetime, until: datetime) -> list[Any]:
        query = select(N.channel, N.status, N.created_at, N.sent_at, N.attempts).where(
            N.type == "ORDER_READY", N.created_at >= since, N.created_at <= until
        )
        async with self.engine.connect() as conn:
            return list(await conn.execute(query))

    # -- phases --------------------------------------------------------------------------------

    async def notifications(self) -> dict[str, Any]:
        ctx, config = self.ctx, self.ctx.config
        await self.wait_sent("Waiting for an empty notification queue")
        # Commit-to-send: READY changes at a steady rate, the workers sending as they come.
        since = datetime.now(UTC)
        count = len(ctx.data.orders["notify_latency"])
        steady = await self.open_loop(
            "Notifications: READY at a steady rate",
            scenario="status",
            segment="notify_latency",
            start=ctx.take("notify_latency", count),
            target="READY_FOR_PICKUP",
            rate=config.notify_rate,
            duration=min(config.duration, count / config.notify_rate),
        )
        drained = await self.wait_sent("Notifications: sending")
        rows = await self._ready_rows(since, datetime.now(UTC))
        sent_delays = [
            (r.sent_at - r.created_at).total_seconds()
            for r in rows
            if r.status == "SENT" and r.channel in OUTBOUND
        ]
        # Throughput: a backlog queued while no worker runs, then drained by the workers.
        backlog_count = len(ctx.data.orders["notify_backlog"])
        if not config.embedded:
            await ctx.stop_workers()
        since_backlog = datetime.now(UTC)
        queued = await self.closed_loop(
            "Notifications: queueing a backlog",
            scenario="status",
            segment="notify_backlog",
            start=ctx.take("notify_backlog", backlog_count),
            target="READY_FOR_PICKUP",
            count=backlog_count,
            duration=max(60.0, backlog_count / 20),
        )
        backlog = await self._due()
        if not config.embedded:
            await ctx.start_workers()
        drained_backlog = await self.wait_sent(f"Notifications: draining {backlog:,}")
        backlog_rows = await self._ready_rows(since_backlog, datetime.now(UTC))
        outbound = [r for r in backlog_rows if r.channel in OUTBOUND]
        sent_times = sorted(r.sent_at for r in outbound if r.status == "SENT")
        if config.embedded:
            start = min((r.created_at for r in outbound), default=None)
        else:  # from the first send: the workers' start-up is not sending time
            start = sent_times[0] if sent_times else None
        span = (sent_times[-1] - start).total_seconds() if sent_times and start else 0.0
        statuses = Counter(f"{r.channel}:{r.status}" for r in rows + backlog_rows)
        if not (drained and drained_backlog):
            ctx.warnings.append(
                "notifications were still queued after the drain timeout "
                f"({config.drain_timeout:.0f} s)"
            )
        return {
            "steady": {
                "updates": steady,
                "sent": len(sent_delays),
                "drained": drained,
            },
            "backlog": {
                "updates": queued,
                "queued": backlog,
                "sent": len(sent_times),
                "seconds": round(span, 3),
                "drained": drained_backlog,
            },
            "per_minute": round(len(sent_times) / span * 60, 1) if span > 0 else None,
            "commit_to_send": latency_summary(sent_delays),
            "failed": sum(1 for r in rows + backlog_rows if r.status == "FAILED"),
            "retried": sum(1 for r in rows + backlog_rows if r.attempts and r.attempts > 1),
            "by_channel_status": dict(sorted(statuses.items())),
        }

    async def events(self, farm_streams: int, customer_streams: int) -> dict[str, Any]:
        ctx, config = self.ctx, self.ctx.config
        pids = servers.group_pids(ctx.serve.pid)
        before = servers.rss_bytes(pids)
        opened = await ctx.load.call(
            {
                "op": "sse_open",
                "farms": farm_streams,
                "customers": customer_streams,
                "concurrency": 100,
                "timeout": 60,
            },
            within=900,
            on_progress=self.phase(f"Opening {farm_streams + customer_streams:,} streams"),
        )
        await asyncio.sleep(2.0)
        after = servers.rss_bytes(servers.group_pids(ctx.serve.pid))
        count = len(ctx.data.orders["sse"])
        updates = await self.open_loop(
            f"Events: updates at {SSE_UPDATE_RATE}/s",
            scenario="status",
            segment="sse",
            start=ctx.take("sse", count),
            rate=SSE_UPDATE_RATE,
            duration=min(config.duration, count / SSE_UPDATE_RATE),
            track=True,
        )
        frames = await ctx.load.call({"op": "sse_wait", "timeout": 30}, within=120)
        await ctx.load.call({"op": "sse_close"}, within=120)
        streams = opened["opened"]
        if streams < opened["requested"]:
            ctx.warnings.append(
                f"only {streams} of {opened['requested']} streams opened: {opened['failed']}"
            )
        return {
            "streams_requested": opened["requested"],
            "streams_opened": streams,
            "streams_failed": opened["failed"],
            "open_seconds": opened["seconds"],
            "open_generator": opened["generator"],
            "server_rss_before_bytes": before,
            "server_rss_after_bytes": after,
            "memory_per_stream_bytes": round((after - before) / streams, 1) if streams else None,
            "update_rate": SSE_UPDATE_RATE,
            "updates": updates,
            "latency_basis": "frame arrival minus the event's createdAt (server clock, in the "
            "transaction, before commit)",
            **{k: v for k, v in frames.items() if k != "generator"},
            "generator": frames["generator"],
        }

    async def floor(self) -> dict[str, Any]:
        ctx = self.ctx
        rows = ctx.data.orders["floor"]
        start = ctx.take("floor", len(rows))
        job = {
            "url": ctx.database_url,
            "connections": floor_connections(ctx.config),
            "duration": ctx.config.floor_seconds,
            "orders": [
                [
                    order_id,
                    ctx.data.farm_ids[farm],
                    ctx.data.customer_ids[customer],
                    ctx.data.farmer_ids[farm],
                ]
                for order_id, farm, customer, _ in rows[start:]
            ],
        }
        path = ctx.work / "floor.json"
        path.write_text(json.dumps(job))
        progress = self.phase("Raw-driver floor")
        import subprocess
        import sys

        child = ctx.children.spawn(
            "floor",
            [sys.executable, "-m", "farmstand.bench.floor", str(path)],
            env=ctx.env,
            cwd=ctx.work,
            log=ctx.work / "floor.log",
            stdout=subprocess.PIPE,
        )
        started = time.monotonic()
        limit = ctx.config.floor_seconds + 120
        while child.alive() and time.monotonic() - started < limit:
            progress(
                min(int(time.monotonic() - started), int(ctx.config.floor_seconds)),
                int(ctx.config.floor_seconds) or 1,
            )
            await asyncio.sleep(0.25)
        assert child.proc.stdout is not None
        output = child.proc.stdout.read() if not child.alive() else b""
        await ctx.children.stop(child)
        if not output:
            raise BenchError(f"the floor process failed:\n{child.log_tail()}")
        result: dict[str, Any] = json.loads(output)
        return result

    async def history(self) -> dict[str, Any]:
        config = self.ctx.config
        open_run = await self.open_loop(
            f"History fetches at {config.history_rate}/s",
            scenario="history",
            segment="status",
            rate=config.history_rate,
            duration=config.duration,
        )
        peak = await self.closed_loop(
            "History fetches: peak",
            scenario="history",
            segment="status",
            count=int(max(config.max_rate, 1000) * config.duration),
            duration=config.duration,
        )
        return {"open": open_run, "peak": peak}

    async def status_updates(self) -> dict[str, Any]:
        ctx, config, plan = self.ctx, self.ctx.config, self.ctx.plan
        steps: list[dict[str, Any]] = []
        best: int | None = None
        for rate, count in zip(plan.status_rates, plan.status_step_orders, strict=True):
            step = await self.open_loop(
                f"Status updates at {rate:,}/s",
                scenario="status",
                segment="status",
                start=ctx.take("status", count),
                rate=rate,
                duration=config.duration,
            )
            steps.append(step)
            p95 = step["p95_ms"]
            kept = (
                p95 is not None and p95 < P95_LIMIT_MS and step["failed"] <= 0.01 * step["requests"]
            )
            if kept:
                best = rate if best is None else max(best, rate)
            elif plan.searching:
                break  # past the knee: higher rates only queue more
            await asyncio.sleep(2.0)  # what the step left queued in the server settles
        await asyncio.sleep(2.0)
        peak = await self.closed_loop(
            "Status updates: peak",
            scenario="status",
            segment="status",
            start=ctx.take("status", plan.peak_orders),
            count=plan.peak_orders,
            duration=config.duration,
        )
        if peak["ran_out"]:
            ctx.warnings.append(
                "the status-update peak ran out of orders: raise --max-rate or --orders"
            )
        at_500 = next((s["p95_ms"] for s in steps if s["offered_rate"] == REPORTED_RATE), None)
        return {
            "searching": plan.searching,
            "p95_limit_ms": P95_LIMIT_MS,
            "steps": steps,
            "max_rate_p95_under_limit": best,
            "p95_at_500_ms": at_500,
            "peak": peak,
        }

    async def placement(self) -> dict[str, Any]:
        config = self.ctx.config
        open_run = await self.open_loop(
            f"Order placement at {config.place_rate}/s",
            scenario="place",
            rate=config.place_rate,
            duration=config.duration,
        )
        peak = await self.closed_loop(
            "Order placement: peak",
            scenario="place",
            count=int(max(config.max_rate, 1000) * config.duration),
            duration=config.duration,
        )
        return {"open": open_run, "peak": peak}

    async def peers(self) -> dict[str, Any]:
        """What the peers received against what the database says was sent."""
        status, body = await servers.http_get(self.ctx.peers_port, "/_stats", limit=30)
        if status != 200:
            raise BenchError(f"the notification peers answered {status}")
        stats = json.loads(body)
        query = select(N.id, N.channel).where(N.status == "SENT", N.channel.in_(OUTBOUND))
        async with self.engine.connect() as conn:
            sent = list(await conn.execute(query))
        result: dict[str, Any] = {"lost": 0, "duplicates": 0, "unrecorded": 0, "channels": {}}
        for channel in OUTBOUND:
            tally = stats[channel.lower()]
            received = set(tally["ids"])
            recorded = {row.id for row in sent if row.channel == channel}
            lost = len(recorded - received)
            result["channels"][channel] = {
                "sent_in_database": len(recorded),
                "received": tally["total"],
                "distinct": tally["distinct"],
                "duplicates": tally["duplicates"],
                "refused": tally["refused"],
                "lost": lost,
                # Received but not (yet) recorded SENT: a send whose result was not written.
                "unrecorded": len(received - recorded),
            }
            result["lost"] += lost
            result["duplicates"] += tally["duplicates"]
            result["unrecorded"] += len(received - recorded)
        result["errors"] = stats["errors"]
        return result
