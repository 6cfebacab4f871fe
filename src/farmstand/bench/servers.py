"""The processes a bench run starts, each in its own process group, and always stops.

Every child is registered the moment it starts; ``Children.stop_all`` (called from the run's
``finally``, and at interpreter exit as a last resort) sends SIGTERM to each group, waits a
bounded time, then SIGKILLs what is left. The throwaway PostgreSQL database is dropped the
same way.

A child is reaped only after its group has been signalled for the last time: until then the
exited leader stays a zombie that holds its pid, so the group id cannot be given to another
process meanwhile. Reaped first and signalled later (as before), a group id could be reused
by then (pid_max is 32,768 here and the test suite goes round it in minutes), and the signal
killed somebody else's process group: another test's server, or another bench's.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from farmstand.bench.http import HttpConnection, build_request


def raise_nofile_limit() -> tuple[int, int]:
    """Soft limit of open files up to the hard limit (inherited by every child): 10,000
    streams need 10,000 sockets in the load process and as many in the servers."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def farmstand_command(*args: str) -> list[str]:
    script = Path(sys.executable).parent / "farmstand"
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-c", "from farmstand.cli import main; main()", *args]


class Child:
    def __init__(self, name: str, proc: subprocess.Popen[bytes], log: Path | None) -> None:
        self.name = name
        self.proc = proc
        self.log = log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        """Still running (an exited child is not reaped here: see the module's docstring)."""
        if self.proc.returncode is not None:
            return False
        try:
            return self._peek() is None
        except ChildProcessError:  # reaped by somebody else
            return False

    def exit_code(self) -> int | None:
        """How it exited (None while it runs, or when somebody else reaped it), without
        reaping it."""
        if self.proc.returncode is not None:
            return self.proc.returncode
        try:
            exited = self._peek()
        except ChildProcessError:
            return None
        if exited is None:
            return None
        return exited.si_status if exited.si_code == os.CLD_EXITED else -exited.si_status

    def _peek(self) -> os.waitid_result | None:
        """The child's exit, if it has exited, left for ``proc.wait`` to reap."""
        return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)

    def log_tail(self, chars: int = 3000) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return self.log.read_text(errors="replace")[-chars:]


class Children:
    """Every process the run started."""

    def __init__(self) -> None:
        self._children: list[Child] = []
        atexit.register(self.kill_all)

    def spawn(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str],
        cwd: Path,
        log: Path | None,
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | None = None,
    ) -> Child:
        out = log.open("ab") if log is not None else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(
                argv,
                env=env,
                cwd=cwd,
                stdin=stdin,
                stdout=stdout if stdout is not None else out,
                stderr=out,
                start_new_session=True,  # its own process group: stopped as a whole
            )
        finally:
            if log is not None:
                out.close()  # type: ignore[union-attr]
        child = Child(name, proc, log)
        self._children.append(child)
        return child

    async def stop(self, child: Child, grace: float = 15) -> None:
        """SIGTERM to the child's group; SIGKILL after ``grace`` seconds; then reap it."""
        if child.proc.returncode is None:  # not reaped: the group id is still this child's
            if child.alive():
                _signal_group(child.pid, signal.SIGTERM)
                await wait_exit(child, grace)
            _signal_group(child.pid, signal.SIGKILL)  # stragglers in the group (uvicorn workers)
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(child.proc.wait, 5)
        if child in self._children:
            self._children.remove(child)

    async def stop_all(self, grace: float = 15) -> list[tuple[str, float]]:
        """Stop every child, the last started first; how long each took."""
        took = []
        for child in reversed(list(self._children)):
            started = time.monotonic()
            await self.stop(child, grace)
            took.append((child.name, time.monotonic() - started))
        return took

    def kill_all(self) -> None:
        for child in self._children:
            if child.proc.returncode is None:
                _signal_group(child.pid, signal.SIGKILL)
        self._children.clear()


async def wait_exit(child: Child, seconds: float) -> bool:
    """Whether the child exited within ``seconds`` (it is not reaped: ``Children.stop`` is)."""
    deadline = time.monotonic() + seconds
    while child.alive():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def group_pids(pgid: int) -> list[int]:
    """The processes of one process group (a `serve` and its uvicorn workers)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 2 and int(fields[2]) == pgid:
            pids.append(int(entry))
    return pids


def is_spawned_worker(pid: int) -> bool:
    """A process multiprocessing spawned to run code (a uvicorn worker), by its command line."""
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def rss_bytes(pids: list[int]) -> int:
    """The resident set of these processes, summed (VmRSS from /proc/<pid>/status)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return total


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes so far (from /proc/<pid>/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / ticks


async def http_get(port: int, path: str, limit: float = 5) -> tuple[int, bytes]:
    conn = await HttpConnection.open("127.0.0.1", port, limit=limit)
    try:
        request = build_request("GET", path, f"127.0.0.1:{port}", extra="Connection: close\r\n")
        return await asyncio.wait_for(conn.request(request), timeout=limit)
    finally:
        conn.close()


async def wait_healthy(child: Child, port: int, within: float) -> None:
    """Until ``GET /healthz`` answers 200; fails with the log's tail if the child exits."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited while starting:\n{child.log_tail()}")
        with contextlib.suppress(OSError, TimeoutError, ValueError):
            status, _ = await http_get(port, "/healthz", limit=2)
            if status == 200:
                return
        await asyncio.sleep(0.2)
    raise RuntimeError(
        f"{child.name} did not answer /healthz in {within:.0f} s:\n{child.log_tail()}"
    )


# -- PostgreSQL ---------------------------------------------------------------------------------


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def database_url_for(admin_url: str, name: str) -> str:
    parts = urlsplit(admin_url)
    scheme = "postgresql+asyncpg"
    return urlunsplit((scheme, parts.netloc, f"/{name}", parts.query, ""))


async def create_database(admin_url: str) -> str:
    """A new, uniquely named database; its name."""
    import asyncpg

    name = f"farmstand_bench_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(_asyncpg_dsn(admin_url), timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def drop_database(admin_url: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_asyncpg_dsn(admin_url), timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def postgres_version(url: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(_asyncpg_dsn(url), timeout=10)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


async def run_cli(
    children: Children, name: str, args: list[str], env: dict[str, str], cwd: Path, log: Path
) -> None:
    """A short ``farmstand`` command (``migrate``), bounded in time."""
    child = children.spawn(name, farmstand_command(*args), env=env, cwd=cwd, log=log)
    if not await wait_exit(child, 300):
        await children.stop(child)
        raise RuntimeError(f"`farmstand {' '.join(args)}` did not finish in 300 s")
    await children.stop(child)
    if child.exit_code() != 0:
        raise RuntimeError(f"`farmstand {' '.join(args)}` failed:\n{child.log_tail()}")


def machine_info() -> dict[str, object]:
    import platform

    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        first = Path("/proc/meminfo").read_text().splitlines()[0]
        memory = int(first.split()[1]) * 1024
    return {
        "cores": os.cpu_count() or 0,
        "cpu_model": model or platform.processor() or "unknown",
        "memory_bytes": memory,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": list(os.getloadavg()),
    }
