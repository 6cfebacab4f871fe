"""Where a stuck process is stuck: ``kill -USR1 <pid>`` writes every thread's stack and then
every asyncio task's stack to the process's stderr (its log), and the process goes on.

The thread stacks come from ``faulthandler`` in C, so they are written even when the event
loop is blocked (the main thread's stack then shows what blocks it). The tasks are listed by
the event loop once it gets to the signal: a request waiting forever on a lock or a future
shows there with the line it waits on. Installed by ``farmstand serve`` (in the serving
process, or in each worker with ``--workers N``: uvicorn's supervisor takes the signal and
ignores it) and ``farmstand worker``. Signal one process at a time: dumps written at once
interleave in a shared log.
"""

from __future__ import annotations

import asyncio
import faulthandler
import io
import signal
import sys

SIGNAL = signal.SIGUSR1


def install(loop: asyncio.AbstractEventLoop) -> None:
    """Dump the threads and ``loop``'s tasks on SIGUSR1 (call it from that loop)."""
    loop.add_signal_handler(SIGNAL, dump_tasks)
    # Last, chaining to the loop's handler: the C handler dumps the threads, then the signal
    # goes on to the loop, which lists the tasks when it runs next.
    faulthandler.register(SIGNAL, file=sys.stderr, all_threads=True, chain=True)


def dump_tasks() -> None:
    out = io.StringIO()
    tasks = asyncio.all_tasks()
    out.write(f"--- {len(tasks)} asyncio task(s)\n")
    for task in sorted(tasks, key=lambda t: t.get_name()):
        task.print_stack(limit=12, file=out)
    out.write("--- end of tasks\n")
    sys.stderr.write(out.getvalue())
    sys.stderr.flush()
