"""The bench's child processes: an exited child is reaped only after its process group was
signalled for the last time, so a group id that went back to the system (and on to somebody
else's process) is never signalled."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

from farmstand.bench.servers import Children, group_pids


def state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return None


async def until(condition, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_an_exited_child_keeps_its_group_id_until_it_is_stopped(tmp_path: Path) -> None:
    children = Children()
    # The leader exits at once; what it started stays in its group.
    child = children.spawn(
        "leader",
        ["sh", "-c", "sleep 60 & exit 3"],
        env={"PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        log=tmp_path / "leader.log",
    )
    await until(lambda: not child.alive())
    assert not child.alive()  # asked twice: still not reaped
    assert state(child.pid) == "Z"  # a zombie holds the pid, so the group id stays ours
    assert child.exit_code() == 3
    stragglers = [pid for pid in group_pids(child.pid) if pid != child.pid]
    assert stragglers, "the sleep should still run in the group"

    await children.stop(child)

    assert state(child.pid) is None  # reaped now
    assert child.exit_code() == 3
    await until(lambda: all(state(pid) in (None, "Z") for pid in stragglers))
    children.kill_all()


async def test_a_running_child_is_stopped_and_reaped(tmp_path: Path) -> None:
    children = Children()
    child = children.spawn(
        "sleeper",
        ["sleep", "60"],
        env={"PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        log=None,
        stdout=subprocess.DEVNULL,
    )
    assert child.alive()
    await children.stop(child, grace=5)
    assert not child.alive()
    assert child.exit_code() == -15  # SIGTERM
    assert state(child.pid) is None


async def test_unanswered_requests_leave_the_servers_stacks_in_its_log(
    sqlite_url: str, tmp_path: Path
) -> None:
    """What the bench does when requests go unanswered: the server says where it waits."""
    from types import SimpleNamespace

    from farmstand.bench.runner import Context
    from farmstand.bench.servers import farmstand_command, free_port, wait_healthy
    from tests.conftest import TEST_SECRET

    children = Children()
    port = free_port()
    log = tmp_path / "serve.log"
    env = {
        **os.environ,
        "FARMSTAND_DATABASE_URL": sqlite_url,
        "FARMSTAND_DATA_DIR": str(tmp_path),
        "FARMSTAND_SECRET_KEY": TEST_SECRET,
    }
    serve = children.spawn(
        "serve", farmstand_command("serve", "--port", str(port)), env=env, cwd=tmp_path, log=log
    )
    try:
        await wait_healthy(serve, port, within=60)
        ctx = SimpleNamespace(serve=serve, config=SimpleNamespace(workers=1, embedded=True))
        assert await Context.dump_server_stacks(ctx) == 1  # type: ignore[arg-type]
        await until(lambda: "--- end of tasks" in log.read_text(errors="replace"))
        assert serve.alive()
    finally:
        await children.stop(serve)
