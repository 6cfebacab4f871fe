"""The bench's output: a table on the terminal, a JSON file with everything, a PNG plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

SECTIONS = (
    "config",
    "machine",
    "dataset",
    "status_updates",
    "history",
    "placement",
    "events",
    "notifications",
    "floor",
)


def _ms(value: Any) -> str:
    return "—" if value is None else f"{value:,.1f}"


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def _errors(run: dict[str, Any]) -> str:
    errors = run.get("errors") or {}
    if not errors:
        return "0"
    return ", ".join(f"{code}: {count}" for code, count in errors.items())


def _cpu(run: dict[str, Any]) -> str:
    generator = run.get("generator") or {}
    busy = generator.get("busy_fraction")
    if busy is None:
        return "—"
    return f"{busy * 100:.0f}%" + (" ⚠" if generator.get("saturated") else "")


def _row(table: Table, name: str, run: dict[str, Any], offered: str) -> None:
    table.add_row(
        name,
        offered,
        _num(run.get("throughput"), 1),
        _ms(run.get("p50_ms")),
        _ms(run.get("p95_ms")),
        _ms(run.get("p99_ms")),
        _errors(run),
        _cpu(run),
    )


def requests_table(report: dict[str, Any]) -> Table:
    table = Table(title="Farmstand bench: requests", title_justify="left")
    for column in ("Scenario", "Offered /s", "Achieved /s", "P50 ms", "P95 ms", "P99 ms"):
        table.add_column(column, justify="left" if column == "Scenario" else "right")
    table.add_column("Errors", justify="left")
    table.add_column("Gen CPU", justify="right")
    status = report["status_updates"]
    for step in status["steps"]:
        _row(table, "Status update (open loop)", step, _num(step["offered_rate"]))
    _row(
        table,
        f"Status update (peak, {status['peak']['concurrency']} clients)",
        status["peak"],
        "closed",
    )
    for key, label in (("history", "History fetch"), ("placement", "Order placement")):
        section = report[key]
        _row(table, f"{label} (open loop)", section["open"], _num(section["open"]["offered_rate"]))
        _row(
            table,
            f"{label} (peak, {section['peak']['concurrency']} clients)",
            section["peak"],
            "closed",
        )
    return table


def summary_table(report: dict[str, Any]) -> Table:
    table = Table(title="Farmstand bench: figures", title_justify="left", show_header=False)
    table.add_column("What")
    table.add_column("Figure", justify="right")
    status = report["status_updates"]
    best = status["max_rate_p95_under_limit"]
    table.add_row(
        f"Highest offered rate with P95 < {status['p95_limit_ms']:.0f} ms",
        "none reached" if best is None else f"{best:,} /s",
    )
    at_500 = status["p95_at_500_ms"]
    table.add_row(
        "Status update P95 at 500/s",
        "not offered" if at_500 is None else f"{_ms(at_500)} ms",
    )
    table.add_row("Status update peak", _num(status["peak"]["throughput"], 1) + " /s")
    floor = report["floor"]
    table.add_row(
        f"Raw-driver floor ({floor['connections']} connections)",
        _num(floor["throughput"], 1) + " /s",
    )
    ratio = floor["farmstand_ratio"]
    table.add_row("Farmstand peak / floor", "—" if ratio is None else f"{ratio * 100:.1f}%")
    events = report["events"]
    table.add_row(
        f"Streams opened ({events['streams_requested']:,} asked)",
        f"{events['streams_opened']:,} in {events['open_seconds']:.1f} s",
    )
    latency = events["latency"]
    table.add_row(
        f"Event delivery at {events['update_rate']}/s: P50 / P95 / P99",
        f"{_ms(latency['p50_ms'])} / {_ms(latency['p95_ms'])} / {_ms(latency['p99_ms'])} ms",
    )
    table.add_row(
        "Frames received / expected (lost, duplicated, misrouted)",
        f"{events['frames_received']:,} / {events['frames_expected']:,} "
        f"({events['frames_lost']}, {events['frames_duplicated']}, {events['frames_misrouted']})",
    )
    per_stream = events["memory_per_stream_bytes"]
    table.add_row(
        "Server memory per open stream",
        "—" if per_stream is None else f"{per_stream / 1024:,.1f} KB",
    )
    notes = report["notifications"]
    table.add_row("Notifications sent per minute", _num(notes["per_minute"]))
    table.add_row(
        "Notification commit-to-send P50 / P95",
        f"{_ms(notes['commit_to_send']['p50_ms'])} / {_ms(notes['commit_to_send']['p95_ms'])} ms",
    )
    peers = notes["peers"]
    table.add_row(
        "Notifications failed / lost / sent twice",
        f"{notes['failed']} / {peers['lost']} / {peers['duplicates']}",
    )
    return table


def print_report(report: dict[str, Any], console: Console) -> None:
    console.print(requests_table(report))
    console.print(summary_table(report))
    for warning in report.get("warnings", []):
        console.print(f"[yellow]! {warning}[/yellow]")


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")


def plot(report: dict[str, Any], path: Path) -> None:
    """Latency percentiles of status updates against the offered rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = report["status_updates"]["steps"]
    rates = [step["offered_rate"] for step in steps]
    figure, axes = plt.subplots(figsize=(8, 5))
    for key, label in (("p50_ms", "P50"), ("p95_ms", "P95"), ("p99_ms", "P99")):
        values = [step.get(key) for step in steps]
        points = [(r, v) for r, v in zip(rates, values, strict=True) if v is not None]
        if points:
            axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    limit = report["status_updates"]["p95_limit_ms"]
    axes.axhline(limit, color="grey", linestyle="--", linewidth=1, label=f"{limit:.0f} ms")
    axes.set_xlabel("Offered rate (status updates per second, open loop)")
    axes.set_ylabel("Latency from the scheduled start (ms)")
    axes.set_yscale("log")
    machine = report["machine"]
    axes.set_title(
        f"Farmstand status updates — {machine['cores']} cores, "
        f"{report['config']['workers']} server process(es)"
    )
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
