"""The ``farmstand bench`` command (options only; the run itself is in ``bench.main``)."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from typing import Annotated, Any

import typer

from farmstand.bench.plan import BenchConfig, PlanError, make_plan

EXTRA_MISSING = (
    "farmstand bench needs the 'bench' extra ({missing} missing). Install it with "
    "`uv sync --extra bench` in a checkout (or `make bench`, which does it first), or "
    "`pip install 'farmstand[bench]'`."
)


def bench(
    embedded: Annotated[
        bool,
        typer.Option(help="The embedded default: SQLite, one server process, its dispatcher."),
    ] = False,
    quick: Annotated[
        bool, typer.Option(help="A small configuration that runs every phase in seconds (CI).")
    ] = False,
    database_url: Annotated[
        str,
        typer.Option(help="PostgreSQL to create the throwaway database in (127.0.0.1 only)."),
    ] = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres",
    redis_url: Annotated[str, typer.Option(help="Redis (127.0.0.1 only).")] = (
        "redis://127.0.0.1:6379/0"
    ),
    workers: Annotated[
        int | None, typer.Option(help="`serve --workers` (default 2; 1 with --embedded).")
    ] = None,
    notification_workers: Annotated[
        int, typer.Option(help="`farmstand worker` processes sending notifications.")
    ] = 2,
    farms: Annotated[int | None, typer.Option(help="Farms, one farmer each.")] = None,
    customers: Annotated[int | None, typer.Option(help="Customers.")] = None,
    orders: Annotated[
        int | None,
        typer.Option(help="PENDING orders to load (grown to what the plan needs when short)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the data set.")] = 7,
    rate: Annotated[
        list[int] | None,
        typer.Option(help="Fixed status-update rates (repeat) instead of the rate search."),
    ] = None,
    max_rate: Annotated[
        int | None, typer.Option(help="Highest rate the search offers (per second).")
    ] = None,
    duration: Annotated[float | None, typer.Option(help="Seconds per measured step.")] = None,
    connections: Annotated[
        int | None, typer.Option(help="SSE streams held open (each farm and customer one).")
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Clients of the closed-loop peak phases.")
    ] = None,
    history_rate: Annotated[int | None, typer.Option(help="History fetches per second.")] = None,
    place_rate: Annotated[int | None, typer.Option(help="Orders placed per second.")] = None,
    notify_orders: Annotated[
        int | None, typer.Option(help="Orders made READY for the notification backlog.")
    ] = None,
    notify_rate: Annotated[
        int | None, typer.Option(help="READY changes per second while commit-to-send is timed.")
    ] = None,
    pool: Annotated[
        int | None, typer.Option(help="Keep-alive connections of an open-loop phase.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Where the JSON, the plot and the logs go.")] = Path(
        "bench-results"
    ),
) -> None:
    """Run the real server under load and measure it against the database's own limit."""
    from rich.console import Console

    missing = [m for m in ("matplotlib", "aiosmtpd") if importlib.util.find_spec(m) is None]
    if missing:
        typer.echo(EXTRA_MISSING.format(missing=", ".join(missing)), err=True)
        raise typer.Exit(2)
    options: dict[str, Any] = {
        "embedded": embedded,
        "database_url": database_url,
        "redis_url": redis_url,
        "workers": workers if workers is not None else (1 if embedded else 2),
        "notification_workers": 0 if embedded else notification_workers,
        "farms": farms,
        "customers": customers,
        "orders": orders,
        "seed": seed,
        "rates": list(rate) if rate else None,
        "max_rate": max_rate,
        "duration": duration,
        "connections": connections,
        "concurrency": concurrency,
        "history_rate": history_rate,
        "place_rate": place_rate,
        "notify_orders": notify_orders,
        "notify_rate": notify_rate,
        "pool": pool,
        "out": out,
    }
    if quick:
        config = BenchConfig.quick_config(**options)
    else:
        config = BenchConfig(**{k: v for k, v in options.items() if v is not None})
    try:
        make_plan(config)
    except PlanError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    from farmstand.bench.main import BenchError, run_bench, write_outputs

    console = Console()
    if not console.is_terminal:  # CI logs: wide enough for the table
        console = Console(width=140)
    try:
        result = asyncio.run(run_bench(config, console))
    except BenchError as exc:
        typer.echo(f"farmstand bench failed: {exc}", err=True)
        typer.echo(f"Logs of every process are in {out / 'logs'}.", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo("Interrupted; every process the bench started was stopped.", err=True)
        raise typer.Exit(130) from None
    write_outputs(result, config, console)
