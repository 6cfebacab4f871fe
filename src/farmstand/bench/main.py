"""``run_bench``: one bench run, with a progress bar, ending in the report (always cleaned up)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from farmstand.bench import report, servers
from farmstand.bench.phases import Phases
from farmstand.bench.plan import BenchConfig
from farmstand.bench.runner import BenchError, Context, prepare, segments, workspace
from farmstand.bench.servers import Children


class Ui:
    """One progress bar for the phase under way, and lines printed above it."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.task: TaskID | None = None
        self.started = time.monotonic()

    @contextlib.contextmanager
    def live(self) -> Iterator[None]:
        with self.progress:
            yield

    def say(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        self.progress.console.print(f"[dim]{elapsed:6.1f}s[/dim] {text}")

    def phase(self, name: str) -> Callable[[int, int], None]:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(name, total=1)
        self.say(name)
        task = self.task

        def update(done: int, total: int) -> None:
            self.progress.update(task, completed=done, total=max(total, 1))

        return update


async def run_bench(config: BenchConfig, console: Console) -> dict[str, Any]:
    """Run every phase; the report (also written to ``config.out``)."""
    limits = servers.raise_nofile_limit()
    ui = Ui(console)
    children = Children()
    cleanup: list[Callable[[], Any]] = []
    started_at = datetime.now(UTC)
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    assert main is not None
    loop.add_signal_handler(signal.SIGTERM, main.cancel)
    try:
        async with workspace(config.out) as work:
            with ui.live():
                try:
                    return await _run(config, ui, children, work, cleanup, started_at, limits)
                finally:
                    ui.say("stopping every process the bench started")
                    took = await children.stop_all()
                    slow = ", ".join(
                        f"{name} {seconds:.1f} s" for name, seconds in took if seconds > 1
                    )
                    ui.say(f"stopped{f' ({slow})' if slow else ''}")
                    for step in reversed(cleanup):
                        with contextlib.suppress(Exception):
                            await step()
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        children.kill_all()


async def _run(
    config: BenchConfig,
    ui: Ui,
    children: Children,
    work: Any,
    cleanup: list[Callable[[], Any]],
    started_at: datetime,
    limits: tuple[int, int],
) -> dict[str, Any]:
    if config.embedded:
        setup = "embedded (SQLite, one server process, its dispatcher)"
    else:
        setup = (
            f"PostgreSQL + Redis, serve --workers {config.workers}, "
            f"{config.notification_workers} notification worker(s)"
        )
    ui.say(f"farmstand bench: {setup}")
    ctx = await prepare(config, children, work, ui.say, cleanup)
    phases = Phases(ctx, ui.phase, ui.say)
    try:
        _, _, (farm_streams, customer_streams) = segments(config, ctx.plan)
        placing = min(config.customers, 200)
        await phases.sign_in(config.farms, max(customer_streams, placing))
        running(ctx, "signing in")
        notifications = await phases.notifications()
        running(ctx, "the notifications phase")
        events = await phases.events(farm_streams, customer_streams)
        running(ctx, "the streams phase")
        floor = await phases.floor()
        history = await phases.history()
        running(ctx, "the history fetches")
        status = await phases.status_updates()
        running(ctx, "the status updates")
        placement = await phases.placement()
        running(ctx, "order placement")
        await phases.wait_sent("Waiting for the last notifications")
        notifications["peers"] = await phases.peers()
        running(ctx, "the last notifications")
        machine = servers.machine_info()
        if not config.embedded:
            machine["postgresql"] = await servers.postgres_version(ctx.database_url)
        machine["open_files_limit"] = list(limits)
    finally:
        await phases.close()
        await ctx.load.quit()
    peak = status["peak"]["throughput"]
    floor["farmstand_ratio"] = round(peak / floor["throughput"], 4) if floor["throughput"] else None
    saturated = _saturated(status, history, placement, events)
    if saturated:
        ctx.warnings.append(
            "the load generator used more than 70% of a core in: "
            + ", ".join(saturated)
            + " — those figures may be the generator's limit, not the server's"
        )
    result = {
        "version": 1,
        "started_at": started_at.isoformat(),
        "seconds": round((datetime.now(UTC) - started_at).total_seconds(), 1),
        "config": config.to_json(),
        "machine": machine,
        "dataset": {
            "seed": config.seed,
            **ctx.data.counts(),
            "pending_orders_planned": ctx.plan.pending_total,
        },
        "status_updates": status,
        "history": history,
        "placement": placement,
        "events": events,
        "notifications": notifications,
        "floor": floor,
        "generator_saturated": saturated,
        "warnings": ctx.warnings,
    }
    return result


def running(ctx: Context, during: str) -> None:
    """Stop the run when a server or worker has died: every figure after that would be the
    dead process's, not the product's (and a run that goes on hides why)."""
    for child in (ctx.serve, *ctx.workers):
        if not child.alive():
            raise BenchError(
                f"{child.name} exited (code {child.exit_code()}) during {during}:\n"
                f"{child.log_tail()}"
            )


def _saturated(
    status: dict[str, Any],
    history: dict[str, Any],
    placement: dict[str, Any],
    events: dict[str, Any],
) -> list[str]:
    runs = [(f"status updates at {s['offered_rate']}/s", s) for s in status["steps"]]
    runs += [("status updates peak", status["peak"])]
    for name, section in (("history", history), ("placement", placement)):
        runs += [(f"{name} open loop", section["open"]), (f"{name} peak", section["peak"])]
    runs += [("event delivery", events["updates"])]
    return [name for name, run in runs if run.get("generator", {}).get("saturated")]


def write_outputs(result: dict[str, Any], config: BenchConfig, console: Console) -> None:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    json_path = config.out / f"bench-{stamp}.json"
    png_path = config.out / f"bench-{stamp}.png"
    report.write_json(result, json_path)
    report.plot(result, png_path)
    report.print_report(result, console)
    console.print(f"Wrote {json_path} and {png_path}")


__all__ = ["BenchError", "run_bench", "write_outputs"]
