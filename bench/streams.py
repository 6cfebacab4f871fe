"""What an open SSE stream costs a server process, and how fast events reach it.

Runs the real server (``farmstand serve``'s own code path, one process) on PostgreSQL and Redis
(or the embedded SQLite and in-process bus with ``--embedded``), holds K streams open from this
process on raw sockets, and reports:

- time to open the K streams (each authenticates and gets its ``CONNECTED`` frame);
- server memory (VmRSS), Python objects and asyncio tasks per open stream;
- the full garbage collection pause with the K streams open (timed ``gc.collect()``), and the
  longest automatic collection seen (``gc.callbacks``);
- server CPU while the K streams sit idle (heartbeats), against the same with no stream open;
- with ``--rate`` events per second committed by a separate driver process (open loop), the
  delay from commit to the frame read here: P50, P95, P99, max; and anything lost.

    .venv/bin/python bench/streams.py --streams 10000 --rate 100 --duration 30

The figures are those of one process on this machine: run nothing else meanwhile, or read the
latency as an upper bound. Server statistics come from a route the bench adds to its own copy
of the app (``/_bench/stats``); the product has no such route.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

SECRET = "bench-secret-key-that-is-long-enough-0123456789"
POSTGRES = os.environ.get("BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
SEQ = re.compile(rb'"benchSeq":(\d+)')
CLK_TCK = os.sysconf("SC_CLK_TCK")


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kb() -> int:
    status = Path("/proc/self/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# -- the server: `farmstand serve` with a statistics route ----------------------------------------


def run_server(port: int) -> None:
    """``farmstand serve`` (same uvicorn options), its app given a ``/_bench/stats`` route."""
    raise_nofile()
    # Automatic collections, timed by the clock and by this thread's CPU time (the machine
    # may be shared: CPU time is what the collection itself cost).
    pauses: dict[int, list[tuple[float, float]]] = {0: [], 1: [], 2: []}
    started: list[float] = [0.0, 0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[:] = time.perf_counter(), time.thread_time()
        else:
            pauses[info["generation"]].append(
                (time.perf_counter() - started[0], time.thread_time() - started[1])
            )

    gc.callbacks.append(on_gc)

    import farmstand.app
    from farmstand import cli

    original = farmstand.app.app_factory

    def instrumented() -> Any:
        app = original()

        @app.get("/_bench/stats", include_in_schema=False)
        async def stats(collect: bool = False, reset: bool = False) -> dict[str, Any]:
            full_gc = full_gc_cpu = None
            if collect:
                begin, begin_cpu = time.perf_counter(), time.thread_time()
                gc.collect()
                full_gc = time.perf_counter() - begin
                full_gc_cpu = time.thread_time() - begin_cpu
            report = {
                "rssKb": rss_kb(),
                "objects": len(gc.get_objects()),
                "frozen": gc.get_freeze_count(),
                "tasks": len(asyncio.all_tasks()),
                "subscriptions": len(app.state.runtime.hub.subscriptions()),
                "gcThreshold": gc.get_threshold(),
                "fullGcSeconds": full_gc,
                "fullGcCpuSeconds": full_gc_cpu,
                "autoPauses": {
                    str(gen): {
                        "count": len(p),
                        "max": max((wall for wall, _ in p), default=0.0),
                        "maxCpu": max((cpu for _, cpu in p), default=0.0),
                        "totalCpu": sum(cpu for _, cpu in p),
                    }
                    for gen, p in pauses.items()
                },
            }
            if reset:
                for p in pauses.values():
                    p.clear()
            return report

        return app

    farmstand.app.app_factory = instrumented
    cli.serve(host="127.0.0.1", port=port, workers=1, reload=False)


# -- the driver: commits events at a fixed rate, in its own process ------------------------------


async def run_driver(spec: dict[str, Any]) -> None:
    """Commit one STATUS_CHANGE-shaped event per tick (open loop) and report commit times."""
    from farmstand.app import build_runtime
    from farmstand.config import load_settings
    from farmstand.events import service as events
    from farmstand.events.models import EventType

    runtime = build_runtime(load_settings())
    committed: dict[int, float] = {}

    async def on_commit(info: dict[str, Any]) -> None:
        now = time.monotonic()
        for event in info.get(events.NEW_EVENTS_KEY, ()):
            committed[event.data["benchSeq"]] = now

    runtime.db.commit_listeners.insert(0, on_commit)  # before the sequencer publishes
    published: dict[int, float] = {}
    publish = runtime.bus.publish

    async def timed_publish(messages: list[dict[str, Any]]) -> None:
        # Splits the delay: sequencing in this process, then bus, hub and socket.
        await publish(messages)
        now = time.monotonic()
        for message in messages:
            if "benchSeq" in message["data"]:
                published[message["data"]["benchSeq"]] = now

    runtime.bus.publish = timed_publish  # type: ignore[method-assign]
    await runtime.start(streams=False, dispatch=False)
    targets: list[list[str]] = spec["targets"]  # [customer id, farm id]
    rng = random.Random(spec["seed"])
    failures = 0

    async def change(seq: int) -> None:
        nonlocal failures
        customer, farm = rng.choice(targets)
        order = str(uuid.UUID(int=rng.getrandbits(128)))
        try:
            async with runtime.db.transaction() as session:
                events.record(
                    session,
                    EventType.STATUS_CHANGE,
                    order_id=order,
                    farm_id=farm,
                    customer_id=customer,
                    data={**STATUS_CHANGE_DATA, "benchSeq": seq},
                )
        except Exception:
            failures += 1

    loop = asyncio.get_running_loop()
    start, total, pending = loop.time() + 0.2, int(spec["rate"] * spec["duration"]), set()
    cpu0 = time.process_time()
    for seq in range(total):
        delay = start + seq / spec["rate"] - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(change(seq))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending, timeout=60)
    elapsed = loop.time() - start
    await asyncio.sleep(1)  # the last ones are sequenced and published
    await runtime.stop()
    print(
        json.dumps(
            {
                "committed": committed,
                "published": published,
                "failures": failures,
                "elapsed": elapsed,
                "cpu": time.process_time() - cpu0,
            }
        )
    )


STATUS_CHANGE_DATA: dict[str, Any] = {
    "orderNumber": "FS-20261125-0042",
    "previousStatus": "PENDING",
    "status": "CONFIRMED",
    "fulfillmentType": "PICKUP",
    "changedBy": {"id": "9d3291b1-0000-4000-8000-000000000000", "name": "Rosa", "role": "FARMER"},
    "reason": None,
    "version": 2,
    "timestamps": {
        "createdAt": "2026-11-25T16:20:00.000000Z",
        "confirmedAt": "2026-11-25T16:25:38.754329Z",
        "preparingAt": None,
        "readyAt": None,
        "outForDeliveryAt": None,
        "completedAt": None,
        "cancelledAt": None,
        "refundedAt": None,
        "updatedAt": "2026-11-25T16:25:38.754329Z",
    },
}


# -- the client: K streams on raw sockets -------------------------------------------------------


@dataclass
class Stats:
    connected: int = 0
    heartbeats: int = 0
    frames: int = 0
    closed: int = 0
    open_times: list[float] = field(default_factory=list)
    arrivals: dict[int, list[float]] = field(default_factory=dict)  # seq -> arrival times


class Stream(asyncio.Protocol):
    """One SSE stream: sends the GET, decodes the chunked body, counts what arrives."""

    def __init__(self, request: bytes, stats: Stats) -> None:
        self.request = request
        self.stats = stats
        self.started = time.monotonic()
        self.connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.buffer = b""
        self.head_done = False
        self.chunk_left = 0
        self.body = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.head_done:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            if not head.startswith(b"HTTP/1.1 200"):
                self._fail(RuntimeError(head.split(b"\r\n", 1)[0].decode()))
                return
            self.head_done, self.buffer = True, rest
        # Chunked transfer encoding: <hex size>\r\n<data>\r\n ... 0\r\n\r\n
        while self.buffer:
            if self.chunk_left == 0:
                line, sep, rest = self.buffer.partition(b"\r\n")
                if not sep:
                    return
                if not line:  # the CRLF that ends a chunk
                    self.buffer = rest
                    continue
                self.chunk_left = int(line, 16)
                self.buffer = rest
                if self.chunk_left == 0:
                    return
            take = self.buffer[: self.chunk_left]
            self.buffer = self.buffer[len(take) :]
            self.chunk_left -= len(take)
            self.body += take
        self._frames()

    def _frames(self) -> None:
        now = time.monotonic()
        while True:
            frame, sep, rest = self.body.partition(b"\n\n")
            if not sep:
                return
            self.body = rest
            if frame.startswith(b":"):
                self.stats.heartbeats += 1
            elif b"event: CONNECTED" in frame:
                if not self.connected.done():
                    self.stats.connected += 1
                    self.stats.open_times.append(now - self.started)
                    self.connected.set_result(None)
            elif (match := SEQ.search(frame)) is not None:
                self.stats.frames += 1
                self.stats.arrivals.setdefault(int(match.group(1)), []).append(now)

    def _fail(self, exc: Exception) -> None:
        if not self.connected.done():
            self.connected.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.closed += 1
        if not self.connected.done():
            self.connected.set_exception(exc or ConnectionError("closed before CONNECTED"))
        if not self.closed.done():
            self.closed.set_result(None)


def _same(stream: Stream) -> Stream:
    return stream


async def open_streams(
    port: int, tokens: list[str], stats: Stats, window: int
) -> tuple[list[Stream], float]:
    loop = asyncio.get_running_loop()
    streams: list[Stream] = []
    gate = asyncio.Semaphore(window)

    async def one(token: str) -> None:
        request = (
            f"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
        async with gate:
            for attempt in range(5):
                stream = Stream(request, stats)
                try:
                    await loop.create_connection(
                        functools.partial(_same, stream), "127.0.0.1", port
                    )
                    await asyncio.wait_for(stream.connected, timeout=120)
                    streams.append(stream)
                    return
                except (OSError, TimeoutError):
                    if attempt == 4:
                        raise
                    await asyncio.sleep(0.2 * (attempt + 1))

    begin = time.monotonic()
    await asyncio.gather(*(one(t) for t in tokens))
    return streams, time.monotonic() - begin


# -- set-up: a database with K customers (and F farmers) signed in -------------------------------


async def seed(database_url: str, customers: int, farms: int) -> tuple[list[str], list[list[str]]]:
    """Users, farms and sign-in sessions in bulk; returns tokens and (customer, farm) pairs."""
    from sqlalchemy import insert

    from farmstand.accounts.models import AuthSession, User
    from farmstand.accounts.roles import Role
    from farmstand.app import build_runtime
    from farmstand.catalog.models import Farm
    from farmstand.config import load_settings
    from farmstand.db import new_id, utcnow

    runtime = build_runtime(
        load_settings(database_url=database_url, secret_key=SECRET, data_dir=tempfile.gettempdir())
    )
    password_hash = await runtime.passwords.hash("bench-password-unused")
    now = utcnow()
    farmer_ids = [new_id() for _ in range(farms)]
    farm_ids = [new_id() for _ in range(farms)]
    customer_ids = [new_id() for _ in range(customers)]

    def user(uid: str, role: Role, n: int) -> dict[str, Any]:
        return {
            "id": uid,
            "email": f"{role.lower()}{n}@bench.test",
            "name": f"{role.title()} {n}",
            "role": role,
            "password_hash": password_hash,
            "timezone": "UTC",
            "created_at": now,
            "updated_at": now,
        }

    users = [user(u, Role.FARMER, n) for n, u in enumerate(farmer_ids)]
    users += [user(u, Role.CUSTOMER, n) for n, u in enumerate(customer_ids)]
    sessions = [
        {"id": new_id(), "user_id": u["id"], "created_at": now, "expires_at": now + timedelta(1)}
        for u in users
    ]
    async with runtime.db.transaction() as session:
        for start in range(0, len(users), 1000):
            await session.execute(insert(User), users[start : start + 1000])
        await session.execute(
            insert(Farm),
            [
                {
                    "id": farm_id,
                    "owner_id": owner,
                    "name": f"Bench farm {n}",
                    "pickup_location": "Market stall 1",
                }
                for n, (farm_id, owner) in enumerate(zip(farm_ids, farmer_ids, strict=True))
            ],
        )
        for start in range(0, len(sessions), 1000):
            await session.execute(insert(AuthSession), sessions[start : start + 1000])
    await runtime.db.dispose()
    tokens = [runtime.signer.sign(s["id"]) for s in sessions]
    targets = [[c, farm_ids[n % farms]] for n, c in enumerate(customer_ids)]
    return tokens, targets


@contextlib.contextmanager
def database(embedded: bool) -> Iterator[str]:
    if embedded:
        directory = tempfile.mkdtemp(prefix="farmstand-bench-")
        try:
            yield f"sqlite+aiosqlite:///{directory}/farmstand.db"
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return
    import asyncpg  # type: ignore[import-untyped]

    name = f"farmstand_bench_{uuid.uuid4().hex[:10]}"
    admin = POSTGRES.replace("postgresql+asyncpg://", "postgresql://") + "/postgres"

    async def execute(statement: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(execute(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{POSTGRES}/{name}"
    finally:
        asyncio.run(execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# -- the run -------------------------------------------------------------------------------------


async def get_stats(port: int, **params: bool) -> dict[str, Any]:
    query = "&".join(f"{k}=true" for k, v in params.items() if v)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET /_bench/stats?{query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        body = body.split(b"\r\n", 1)[1].rsplit(b"\r\n0\r\n", 1)[0]
    return json.loads(body)  # type: ignore[no-any-return]


def error_lines(path: Path) -> dict[str, int]:
    """Distinct ERROR lines (and tracebacks) in the server's log, with how often each came."""
    counts: dict[str, int] = {}
    for line in path.read_text(errors="replace").splitlines():
        if "ERROR" in line or line.startswith("Traceback"):
            counts[line] = counts.get(line, 0) + 1
    return counts


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def start_server(port: int, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, __file__, "_server", "--port", str(port)],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def measure(args: argparse.Namespace, env: dict[str, str], port: int) -> dict[str, Any]:
    tokens, targets = await seed(env["FARMSTAND_DATABASE_URL"], args.streams, args.farms)
    customer_tokens = tokens[args.farms :]
    farmer_tokens = tokens[: args.farms]
    log(f"seeded {len(customer_tokens)} customers and {len(farmer_tokens)} farmers")

    server_log = Path(tempfile.gettempdir()) / f"bench-streams-{port}.log"
    server = start_server(port, env, server_log)
    report: dict[str, Any] = {"streams": args.streams, "farms": args.farms}
    try:
        deadline = time.monotonic() + 180  # a loaded machine can take a while
        while True:
            try:
                await get_stats(port)
                break
            except (OSError, ValueError):
                if server.poll() is not None:
                    raise RuntimeError(f"the server exited: see {server_log}") from None
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)
        base = await get_stats(port, collect=True)
        report["base"] = base
        log(f"server up: rss {base['rssKb']} kB, {base['objects']} objects")

        if args.idle_seconds:
            cpu0 = cpu_seconds(server.pid)
            await asyncio.sleep(args.idle_seconds)
            report["idleCpuNoStreams"] = (cpu_seconds(server.pid) - cpu0) / args.idle_seconds

        stats = Stats()
        all_tokens = farmer_tokens + customer_tokens
        log(f"opening {len(all_tokens)} streams ...")
        await get_stats(port, reset=True)
        client_cpu0, server_cpu0 = time.process_time(), cpu_seconds(server.pid)
        streams, open_seconds = await open_streams(port, all_tokens, stats, args.window)
        report["open"] = {
            "seconds": open_seconds,
            "serverCpuSeconds": cpu_seconds(server.pid) - server_cpu0,
            "perSecond": len(streams) / open_seconds,
            "p50": percentile(stats.open_times, 50),
            "p99": percentile(stats.open_times, 99),
            "clientCpu": time.process_time() - client_cpu0,
        }
        log(f"opened {len(streams)} streams in {open_seconds:.1f}s")
        await asyncio.sleep(2)
        during_open = await get_stats(port)
        loaded = await get_stats(port, collect=True)
        again = await get_stats(port, collect=True)
        k = len(streams)
        report["perStream"] = {
            "rssKb": (loaded["rssKb"] - base["rssKb"]) / k,
            "objects": (loaded["objects"] - base["objects"]) / k,
            "tasks": (loaded["tasks"] - base["tasks"]) / k,
        }
        report["gc"] = {
            "fullCollectSeconds": again["fullGcSeconds"],
            "fullCollectCpuSeconds": again["fullGcCpuSeconds"],
            "objectsTracked": again["objects"],
            "frozen": again["frozen"],
            "threshold": again["gcThreshold"],
            "autoPausesWhileOpening": during_open["autoPauses"],
        }
        report["loaded"] = loaded
        log(
            f"per stream: {report['perStream']}; full GC {again['fullGcSeconds'] * 1000:.0f} ms "
            f"({again['fullGcCpuSeconds'] * 1000:.0f} ms CPU); longest automatic gen2 pause "
            f"while opening {during_open['autoPauses']['2']['max'] * 1000:.0f} ms"
        )

        if args.idle_seconds:
            beats0, cpu0 = stats.heartbeats, cpu_seconds(server.pid)
            await asyncio.sleep(args.idle_seconds)
            report["idle"] = {
                "seconds": args.idle_seconds,
                "serverCpu": (cpu_seconds(server.pid) - cpu0) / args.idle_seconds,
                "heartbeats": stats.heartbeats - beats0,
            }
            report["idle"]["heartbeatCpu"] = report["idle"]["serverCpu"] - report.get(
                "idleCpuNoStreams", 0.0
            )
            log(f"idle: {report['idle']}")

        if args.rate and not args.embedded:
            await get_stats(port, reset=True)
            report["delivery"] = await drive(args, env, targets, stats, server.pid)
            report["delivery"]["autoPauses"] = (await get_stats(port))["autoPauses"]
            log(f"delivery: {report['delivery']}")

        closed_before = stats.closed
        report["closedDuringRun"] = closed_before
        stop_begin = time.monotonic()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            report["shutdown"] = {"seconds": None, "note": "did not stop in 60 s"}
        else:
            report["shutdown"] = {"seconds": time.monotonic() - stop_begin}
        await asyncio.sleep(0.5)
        report["shutdown"]["streamsEnded"] = stats.closed - closed_before
        for stream in streams:
            if stream.transport is not None:
                stream.transport.close()
        report["serverErrors"] = error_lines(server_log)
        return report
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


async def drive(
    args: argparse.Namespace,
    env: dict[str, str],
    targets: list[list[str]],
    stats: Stats,
    server_pid: int,
) -> dict[str, Any]:
    fd, name = tempfile.mkstemp(suffix=".json")
    with os.fdopen(fd, "w") as spec:
        json.dump(
            {"targets": targets, "rate": args.rate, "duration": args.duration, "seed": 7}, spec
        )
    log(f"driving {args.rate} events/s for {args.duration}s ...")
    cpu0, client_cpu0 = cpu_seconds(server_pid), time.process_time()
    driver = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "_driver",
        name,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
    )
    out, _ = await driver.communicate()
    os.unlink(name)
    result = json.loads(out.decode().strip().splitlines()[-1])
    await asyncio.sleep(1)
    committed = {int(k): v for k, v in result["committed"].items()}
    published = {int(k): v for k, v in result["published"].items()}
    to_publish = [(published[seq] - at) * 1000 for seq, at in committed.items() if seq in published]
    after_publish = [
        (arrival - published[seq]) * 1000
        for seq, arrivals in stats.arrivals.items()
        if seq in published
        for arrival in arrivals
    ]
    latencies = [
        arrival - committed[seq]
        for seq, arrivals in stats.arrivals.items()
        if seq in committed
        for arrival in arrivals
    ]
    missing = sum(1 for seq in committed if len(stats.arrivals.get(seq, ())) < 2)
    ms = [x * 1000 for x in latencies]
    return {
        "rate": args.rate,
        "committed": len(committed),
        "achievedRate": len(committed) / result["elapsed"],
        "driverFailures": result["failures"],
        "framesReceived": len(latencies),
        "eventsNotDeliveredToBothStreams": missing,
        "p50ms": percentile(ms, 50),
        "p95ms": percentile(ms, 95),
        "p99ms": percentile(ms, 99),
        "maxMs": max(ms, default=float("nan")),
        # Where the time goes: committing process's sequencer, then bus + hub + socket.
        "commitToPublishMs": {q: percentile(to_publish, q) for q in (50, 95, 99)},
        "publishToFrameMs": {q: percentile(after_publish, q) for q in (50, 95, 99)},
        "serverCpu": (cpu_seconds(server_pid) - cpu0) / result["elapsed"],
        "clientCpu": (time.process_time() - client_cpu0) / result["elapsed"],
        "driverCpu": result["cpu"] / result["elapsed"],
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_server":
        run_server(int(sys.argv[3]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_driver":
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        asyncio.run(run_driver(json.loads(Path(sys.argv[2]).read_text())))
        return

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=10_000, help="customer streams to open")
    parser.add_argument("--farms", type=int, default=20, help="farms (each farmer a stream)")
    parser.add_argument("--embedded", action="store_true", help="SQLite and in-process bus")
    parser.add_argument("--idle-seconds", type=float, default=60, help="0 to skip")
    parser.add_argument("--heartbeat", type=float, default=30, help="sse_heartbeat_seconds")
    parser.add_argument("--rate", type=float, default=100, help="events per second; 0 to skip")
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--window", type=int, default=200, help="streams opening at once")
    parser.add_argument("--json", type=Path, help="write the report here too")
    args = parser.parse_args()

    limit = raise_nofile()
    if limit < args.streams + args.farms + 100:
        parser.error(f"RLIMIT_NOFILE is {limit}: raise the hard limit (ulimit -Hn)")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    port = free_port()
    with database(args.embedded) as url:
        from farmstand.migrate import upgrade

        upgrade(url)
        env = {
            "FARMSTAND_DATABASE_URL": url,
            "FARMSTAND_SECRET_KEY": SECRET,
            "FARMSTAND_DATA_DIR": tempfile.gettempdir(),
            "FARMSTAND_LOG_LEVEL": "WARNING",
            "FARMSTAND_DISPATCHER": "off",
            "FARMSTAND_SSE_HEARTBEAT_SECONDS": str(args.heartbeat),
            "FARMSTAND_DB_POOL_SIZE": "10",
        }
        if not args.embedded:
            env |= {
                "FARMSTAND_EVENT_BUS": "redis",
                "FARMSTAND_REDIS_URL": REDIS,
                "FARMSTAND_REDIS_CHANNEL": f"farmstand:bench:{uuid.uuid4().hex}",
            }
        report = asyncio.run(measure(args, env, port))
    report.pop("loaded", None)
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
