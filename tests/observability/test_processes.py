"""Real processes: `serve --workers 2` reports the sum over both, whichever answers; a
`farmstand worker` serves its own metrics; both log JSON lines through one formatter."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import services
from tests.conftest import TEST_SECRET
from tests.live import FARMSTAND, ServerProcess, free_port, run_cli
from tests.observability.conftest import METRICS_TOKEN, SCRAPE, value

pytestmark = pytest.mark.slow


@pytest.fixture
def env(sqlite_url: str, tmp_path: Path) -> dict[str, str]:
    services.require("redis")
    return {
        "FARMSTAND_DATABASE_URL": sqlite_url,
        "FARMSTAND_DATA_DIR": str(tmp_path),
        "FARMSTAND_SECRET_KEY": TEST_SECRET,
        "FARMSTAND_EVENT_BUS": "redis",
        "FARMSTAND_REDIS_URL": services.REDIS_URL,
        "FARMSTAND_REDIS_CHANNEL": f"farmstand:test:{uuid.uuid4().hex}",
        "FARMSTAND_DISPATCHER": "off",
        "FARMSTAND_METRICS_TOKEN": METRICS_TOKEN,
        "FARMSTAND_LOG_FORMAT": "json",
        "FARMSTAND_LOG_LEVEL": "INFO",
    }


@pytest.fixture
def two_workers(env: dict[str, str], tmp_path: Path) -> Iterator[ServerProcess]:
    env = {**env, "FARMSTAND_METRICS_PORT": str(free_port())}
    server = ServerProcess(env, log_path=tmp_path / "serve.log")
    try:
        # Spawned workers import the app slowly on a busy host.
        yield server.start("--workers", "2", timeout=120)
    finally:
        server.stop()


def _healthz_count(text: str) -> float:
    name = "farmstand_http_request_duration_seconds_count"
    return value(text, name, method="GET", route="/healthz", status="200") or 0


def test_several_processes_report_their_sum_whichever_answers(
    two_workers: ServerProcess, env: dict[str, str], tmp_path: Path
):
    server = two_workers
    assert server.proc is not None
    metrics_dir = tmp_path / f".metrics-{server.port}-{server.proc.pid}"
    metrics_port = int(server.env["FARMSTAND_METRICS_PORT"])
    before = _healthz_count(httpx.get(f"{server.url}/metrics", headers=SCRAPE).text)

    # When 40 requests arrive on fresh connections (spread over both processes)
    for _ in range(40):
        with httpx.Client() as client:
            assert client.get(f"{server.url}/healthz").status_code == 200

    # Then every scrape, by either port and whichever process answers, counts all of them
    pids = {m[1] for m in (re.search(r"_(\d+)\.db$", p.name) for p in metrics_dir.iterdir()) if m}
    assert len(pids) >= 2, sorted(p.name for p in metrics_dir.iterdir())
    assert oct(metrics_dir.stat().st_mode & 0o777) == "0o700"
    for _ in range(6):
        with httpx.Client() as client:
            main = client.get(f"{server.url}/metrics", headers=SCRAPE)
            side = client.get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert _healthz_count(main.text) == _healthz_count(side.text) == before + 40
        # The queue gauges are read from the database once per scrape, not summed.
        assert value(main.text, "farmstand_notification_queue_depth") == 0

    # And the log holds JSON lines: ours for each request, none from uvicorn's access log
    server.stop()
    assert not metrics_dir.exists()
    lines = [
        json.loads(line)
        for line in server.log_path.read_text().splitlines()  # type: ignore[union-attr]
        if line.startswith("{")
    ]
    requests = [line for line in lines if line["logger"] == "farmstand.access"]
    assert sum(line["route"] == "/healthz" for line in requests) >= 40
    assert not [line for line in lines if line["logger"] == "uvicorn.access"]
    assert any(line["logger"] == "uvicorn.error" for line in lines)


def test_a_worker_serves_its_own_metrics_on_its_port(env: dict[str, str], tmp_path: Path):
    assert run_cli(env, "migrate").returncode == 0
    port = free_port()
    log_path = tmp_path / "worker.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [FARMSTAND, "worker"],
            env={**os.environ, **env, "FARMSTAND_WORKER_METRICS_PORT": str(port)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        text = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert value(text, "farmstand_notifications_total", channel="EMAIL", result="sent") == 0
        assert value(text, "farmstand_notification_queue_depth") == 0
    finally:
        if proc.poll() is None:  # a reaped pid may be somebody else's group by now
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    assert any("metrics on http://127.0.0.1" in line["message"] for line in lines)
