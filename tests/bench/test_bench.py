"""``farmstand bench`` end to end, in its small configuration: the report is complete and no
request failed. How fast anything was is never checked here."""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any

import coverage
import pytest
from typer.testing import CliRunner

from farmstand.cli import app
from tests import services

pytestmark = pytest.mark.slow

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
RUN_FIGURES = ("throughput", "p50_ms", "p95_ms", "p99_ms", "max_ms", "requests", "succeeded")


def log_tails(out: Path, chars: int = 3000) -> str:
    return "\n".join(
        f"--- {log.name}\n{log.read_text(errors='replace')[-chars:]}"
        for log in sorted((out / "logs").glob("*.log"))
    )


def run_bench(out: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> dict[str, Any]:
    """``farmstand bench --quick`` in this process (its servers, load process, peers and floor
    are real processes of their own); the report it wrote."""
    for name in list(os.environ):
        if name.startswith("FARMSTAND_"):
            monkeypatch.delenv(name)
    cov = coverage.Coverage.current()
    if cov is not None:
        # Measure the bench's own processes too (load, peers, floor, servers), as coverage's
        # ``patch = subprocess`` would, for this test only: each writes a data file of its own
        # beside this one's (serialised before the chdir below: the path is made absolute).
        config = copy.copy(cov.config)
        config.parallel = True
        config.source = ["farmstand.bench"]  # the servers' own code is not traced: too slow
        monkeypatch.setenv("COVERAGE_PROCESS_CONFIG", config.serialize())
    monkeypatch.chdir(out.parent)
    result = CliRunner().invoke(app, ["bench", "--quick", "--out", str(out), *args])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}\n{log_tails(out)}"
    reports = sorted(out.glob("bench-*.json"))
    assert len(reports) == 1, list(out.iterdir())
    plots = sorted(out.glob("bench-*.png"))
    assert len(plots) == 1 and plots[0].stat().st_size > 1000
    assert "Farmstand bench: requests" in result.output
    report: dict[str, Any] = json.loads(reports[0].read_text())
    return report


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_run(name: str, run: dict[str, Any]) -> None:
    assert run["errors"] == {}, (name, run["errors"])
    for key in RUN_FIGURES:
        assert is_number(run[key]), (name, key, run[key])
    assert run["requests"] > 0, name
    assert run["failed"] == 0, name
    generator = run["generator"]
    for key in ("cpu_seconds", "wall_seconds", "busy_fraction"):
        assert is_number(generator[key]), (name, key)


def check_report(report: dict[str, Any]) -> None:
    for section in SECTIONS:
        assert report[section], section
    machine = report["machine"]
    assert is_number(machine["cores"]) and machine["cpu_model"]

    status = report["status_updates"]
    assert status["steps"], "no rate was offered"
    for step in status["steps"]:
        check_run(f"status at {step['offered_rate']}/s", step)
        assert is_number(step["offered_rate"])
    check_run("status peak", status["peak"])
    best = status["max_rate_p95_under_limit"]
    assert best is None or is_number(best)
    assert "p95_at_500_ms" in status

    for section in ("history", "placement"):
        check_run(f"{section} open", report[section]["open"])
        check_run(f"{section} peak", report[section]["peak"])

    events = report["events"]
    assert events["streams_opened"] == events["streams_requested"] > 0
    check_run("updates under streams", events["updates"])
    assert events["frames_expected"] == 2 * events["updates"]["succeeded"]
    assert events["frames_received"] == events["frames_expected"]
    assert events["frames_lost"] == events["frames_duplicated"] == 0
    assert events["frames_misrouted"] == events["frames_unreadable"] == 0
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        assert is_number(events["latency"][key]), key
    for key in ("memory_per_stream_bytes", "open_seconds", "server_rss_after_bytes"):
        assert is_number(events[key]), key

    notes = report["notifications"]
    check_run("READY at a steady rate", notes["steady"]["updates"])
    check_run("READY backlog", notes["backlog"]["updates"])
    assert notes["steady"]["drained"] and notes["backlog"]["drained"]
    assert notes["backlog"]["sent"] > 0
    assert is_number(notes["per_minute"])
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        assert is_number(notes["commit_to_send"][key]), key
    assert notes["failed"] == 0
    peers = notes["peers"]
    assert peers["lost"] == peers["duplicates"] == 0, peers
    for channel in ("EMAIL", "SMS", "PUSH"):
        assert peers["channels"][channel]["received"] > 0, channel
        assert peers["channels"][channel]["refused"] == 0, channel

    floor = report["floor"]
    assert is_number(floor["throughput"]) and floor["transactions"] > 0
    assert floor["errors"] == {}
    assert is_number(floor["farmstand_ratio"])


def checked(report: dict[str, Any], out: Path) -> None:
    """``check_report``, failing with what the servers logged (the report says what failed,
    the logs why)."""
    try:
        check_report(report)
    except AssertionError as exc:
        # Long enough for the stacks the bench has a server write when requests go unanswered.
        raise AssertionError(f"{exc}\n{report.get('warnings')}\n{log_tails(out, 60_000)}") from exc


@pytest.mark.postgres
@pytest.mark.redis
def test_bench_quick_on_postgres_and_redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    services.require("postgres")
    services.require("redis")
    report = run_bench(
        tmp_path / "out",
        monkeypatch,
        "--database-url",
        services.POSTGRES_URL,
        "--redis-url",
        services.REDIS_URL,
    )
    checked(report, tmp_path / "out")
    assert report["config"]["workers"] == 2
    assert report["machine"]["postgresql"]


def test_bench_quick_embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = run_bench(tmp_path / "out", monkeypatch, "--embedded")
    checked(report, tmp_path / "out")
    assert report["config"]["embedded"] is True
