"""``farmstand serve --workers N``: every process writes its metrics to files in one directory,
and whichever process answers a scrape reports the sum over all of them.

prometheus-client picks its storage when it is first imported, from ``PROMETHEUS_MULTIPROC_DIR``;
so ``serve`` sets that variable (to a fresh directory of its own) before uvicorn starts the
workers, which inherit it. Nothing here imports prometheus-client at module level.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"

# Files of gauges counted only while their process lives ("livesum"): one per process id.
_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


def directory() -> str | None:
    """The shared directory when this process is one of several, else None."""
    return os.environ.get(ENV) or None


def prepare(data_dir: Path, port: int) -> Path:
    """A fresh directory for this server's processes, only this user can read:
    ``<data dir>/.metrics-<port>-<pid>``. Directories left by earlier servers on this port that
    are no longer running (a crash, a kill -9) are removed first; a server still running keeps
    its own, even one started by mistake a second time on the same data directory."""
    for old in data_dir.glob(f".metrics-{port}-*"):
        pid = old.name.rsplit("-", 1)[1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    path = data_dir / f".metrics-{port}-{os.getpid()}"
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True, mode=0o700)
    return path


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def reap_dead_processes(path: str) -> int:
    """Forget the live gauges (open streams, pool connections) of processes that died without
    stopping cleanly, e.g. a worker uvicorn restarted. Their counters stay: a counter's total
    never goes down because a process went away."""
    from prometheus_client.multiprocess import mark_process_dead

    reaped = set()
    for name in os.listdir(path):
        match = _LIVE_GAUGE_FILE.fullmatch(name)
        if match and (pid := int(match[1])) not in reaped and not _alive(pid):
            mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
            reaped.add(pid)
    return len(reaped)


def forget_this_process() -> None:
    """Called when this process stops: its live gauges no longer count."""
    path = directory()
    if path is not None and os.path.isdir(path):
        from prometheus_client.multiprocess import mark_process_dead

        mark_process_dead(os.getpid(), path)  # type: ignore[no-untyped-call]
