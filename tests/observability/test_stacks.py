"""``kill -USR1`` on a server or worker writes where it is (every thread, every asyncio task)
to its log, and it goes on serving."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from farmstand.bench.servers import group_pids
from tests.conftest import TEST_SECRET
from tests.live import FARMSTAND, ServerProcess

pytestmark = pytest.mark.slow


def env_for(sqlite_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "FARMSTAND_DATABASE_URL": sqlite_url,
        "FARMSTAND_DATA_DIR": str(tmp_path),
        "FARMSTAND_SECRET_KEY": TEST_SECRET,
    }


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def wait_for_text(path: Path, text: str, count: int = 1, seconds: float = 30) -> str:
    deadline = time.monotonic() + seconds
    while True:
        log = path.read_text(errors="replace")
        if log.count(text) >= count:
            return log
        assert time.monotonic() < deadline, log[-3000:]
        time.sleep(0.1)


def test_a_server_writes_its_threads_and_tasks_and_goes_on(sqlite_url: str, tmp_path: Path):
    server = ServerProcess(env_for(sqlite_url, tmp_path), log_path=tmp_path / "serve.log")
    server.start()
    try:
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGUSR1)
        log = wait_for_text(tmp_path / "serve.log", "--- end of tasks")
        assert "Current thread" in log  # faulthandler: the threads, the main one marked
        assert "asyncio task(s)" in log
        assert "event-hub" in log  # a task of ours, by name, with its stack
        assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
    finally:
        server.stop()


def test_every_process_of_a_multi_process_server_writes_its_own(sqlite_url: str, tmp_path: Path):
    from tests import services

    services.require("redis")
    env = {
        **env_for(sqlite_url, tmp_path),
        "FARMSTAND_EVENT_BUS": "redis",
        "FARMSTAND_REDIS_URL": services.REDIS_URL,
        "FARMSTAND_DISPATCHER": "off",
    }
    server = ServerProcess(env, log_path=tmp_path / "serve.log")
    server.start("--workers", "2", timeout=120)
    log_path = tmp_path / "serve.log"
    try:
        assert server.proc is not None
        supervisor = server.proc.pid
        # uvicorn's supervisor takes SIGUSR1 (and ignores it): it must not die of it.
        os.kill(supervisor, signal.SIGUSR1)
        time.sleep(1)
        assert server.proc.poll() is None
        # One process at a time: dumps written at once interleave in the shared log.
        workers = [pid for pid in group_pids(supervisor) if b"spawn_main" in cmdline(pid)]
        assert len(workers) == 2, workers
        for done, pid in enumerate(workers, start=1):
            os.kill(pid, signal.SIGUSR1)
            wait_for_text(log_path, "--- end of tasks", count=done)
        assert server.proc.poll() is None  # the supervisor lives on, and so do the workers
        assert all(b"spawn_main" in cmdline(pid) for pid in workers)  # alive, the same ones
        assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
    finally:
        server.stop()


def test_a_worker_writes_its_tasks_and_goes_on(sqlite_url: str, tmp_path: Path):
    log_path = tmp_path / "worker.log"
    proc = subprocess.Popen(
        [FARMSTAND, "worker"],
        env={**os.environ, **env_for(sqlite_url, tmp_path)},
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_text(log_path, "sending notifications")
        proc.send_signal(signal.SIGUSR1)
        log = wait_for_text(log_path, "--- end of tasks")
        assert "notification-dispatcher" in log
        time.sleep(0.5)
        assert proc.poll() is None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
