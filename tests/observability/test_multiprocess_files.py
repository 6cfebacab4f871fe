"""The multi-process metrics directory: fresh per server, stale ones and dead processes' live
gauges cleaned up, counters kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from farmstand.observability import multiprocess


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_each_server_gets_a_fresh_private_directory(tmp_path: Path):
    dead, alive = _dead_pid(), os.getppid()
    stale = tmp_path / f".metrics-8000-{dead}"
    running = tmp_path / f".metrics-8000-{alive}"
    other_port = tmp_path / f".metrics-9000-{dead}"
    for path in (stale, running, other_port):
        path.mkdir()
        (path / "counter_1.db").write_bytes(b"x")

    made = multiprocess.prepare(tmp_path, 8000)

    assert made == tmp_path / f".metrics-8000-{os.getpid()}"
    assert list(made.iterdir()) == [] and made.stat().st_mode & 0o777 == 0o700
    assert not stale.exists()  # its server is gone
    assert running.exists() and other_port.exists()  # not ours to remove
    multiprocess.remove(made)
    assert not made.exists()


def test_a_dead_process_live_gauges_are_forgotten_and_its_counters_kept(tmp_path: Path):
    dead, alive = _dead_pid(), os.getpid()
    names = [
        f"gauge_livesum_{dead}.db",
        f"gauge_livesum_{alive}.db",
        f"counter_{dead}.db",
        f"histogram_{dead}.db",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"")

    assert multiprocess.reap_dead_processes(str(tmp_path)) == 1

    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[1:])
