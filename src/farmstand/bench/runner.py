"""A bench run from start to end: set up, run the phases, report, and always clean up."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from farmstand.bench import dataset, servers
from farmstand.bench.plan import BenchConfig, Plan, make_plan
from farmstand.bench.servers import Child, Children

TWILIO_SID = "AC" + "b" * 32
QUICK_POOL_SIZE = 8  # connections per process in --quick (PostgreSQL)
TWILIO_TOKEN = "bench-twilio-token-0123456789"


class BenchError(RuntimeError):
    """A run that cannot go on, with the reason in a sentence."""


OnProgress = Callable[[int, int], None]


class LoadClient:
    """The parent's side of the load process: one JSON command in, progress and a result out."""

    def __init__(self, child: Child) -> None:
        self.child = child
        self._reader: asyncio.StreamReader | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 26)
        assert self.child.proc.stdout is not None
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), self.child.proc.stdout
        )
        self._reader = reader

    async def call(
        self, command: dict[str, Any], within: float, on_progress: OnProgress | None = None
    ) -> dict[str, Any]:
        assert self._reader is not None and self.child.proc.stdin is not None
        self.child.proc.stdin.write(json.dumps(command).encode() + b"\n")
        self.child.proc.stdin.flush()
        deadline = time.monotonic() + within
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(
                    f"the load process did not finish {command['op']} in {within:.0f} s"
                )
            try:
                line = await asyncio.wait_for(self._reader.readline(), timeout=remaining)
            except TimeoutError:
                continue
            if not line:
                raise BenchError(f"the load process exited:\n{self.child.log_tail()}")
            message = json.loads(line)
            if "progress" in message:
                if on_progress is not None:
                    on_progress(message["progress"]["done"], message["progress"]["total"])
            elif "error" in message:
                raise BenchError(f"the load process failed on {command['op']}: {message['error']}")
            else:
                result: dict[str, Any] = message["result"]
                return result

    async def quit(self) -> None:
        """Ask the load process to close its streams and exit (it is killed if it does not)."""
        with contextlib.suppress(Exception):
            await self.call({"op": "quit"}, within=10)
        await servers.wait_exit(self.child, 5)


@dataclass
class Context:
    """Everything the phases share."""

    config: BenchConfig
    plan: Plan
    work: Path
    children: Children
    data: dataset.Dataset
    database_url: str
    env: dict[str, str]
    port: int
    peers_port: int
    serve: Child
    load: LoadClient
    workers: list[Child] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    cursor: dict[str, int] = field(default_factory=dict)

    def take(self, segment: str, count: int) -> int:
        """Reserve ``count`` orders of a segment; where they start."""
        start = self.cursor.get(segment, 0)
        available = len(self.data.orders[segment]) - start
        if count > available:
            raise BenchError(f"segment {segment} has {available} orders left, {count} needed")
        self.cursor[segment] = start + count
        return start

    async def start_workers(self) -> None:
        for i in range(self.config.notification_workers):
            self.workers.append(
                self.children.spawn(
                    f"worker {i + 1}",
                    servers.farmstand_command("worker"),
                    env=self.env,
                    cwd=self.work,
                    log=self.work / f"worker-{i + 1}.log",
                )
            )

    async def dump_server_stacks(self) -> int:
        """Have each serving process write its threads' and tasks' stacks to the server log
        (SIGUSR1, ``farmstand.observability.stacks``), one at a time so the dumps do not
        interleave: where requests left unanswered were waiting. How many were asked."""
        if not self.serve.alive():
            return 0
        if self.config.workers == 1:  # --embedded is always one
            pids = [self.serve.pid]
        else:  # uvicorn's workers; not its supervisor or multiprocessing's resource tracker
            pids = [p for p in servers.group_pids(self.serve.pid) if servers.is_spawned_worker(p)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR1)
            await asyncio.sleep(1.0)
        return len(pids)

    async def stop_workers(self) -> None:
        for child in self.workers:
            await self.children.stop(child, grace=40)
        self.workers.clear()


def server_env(
    config: BenchConfig, work: Path, database_url: str, port: int, peers_port: int, smtp_port: int
) -> dict[str, str]:
    from farmstand.notifications.channels.vapid import generate_vapid_keys

    vapid = generate_vapid_keys()
    ours = {
        "FARMSTAND_ENVIRONMENT": "development",
        "FARMSTAND_DATA_DIR": str(work / "data"),
        "FARMSTAND_SECRET_KEY": secrets.token_urlsafe(48),
        "FARMSTAND_DATABASE_URL": database_url,
        "FARMSTAND_BASE_URL": f"http://127.0.0.1:{port}",
        "FARMSTAND_LOG_LEVEL": "WARNING",
        "FARMSTAND_PASSWORD_HASH_TIME_COST": str(dataset.HASH_TIME_COST),
        "FARMSTAND_PASSWORD_HASH_MEMORY_KIB": str(dataset.HASH_MEMORY_KIB),
        "FARMSTAND_SMTP_HOST": "127.0.0.1",
        "FARMSTAND_SMTP_PORT": str(smtp_port),
        "FARMSTAND_SMTP_SECURITY": "none",
        "FARMSTAND_TWILIO_ACCOUNT_SID": TWILIO_SID,
        "FARMSTAND_TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
        "FARMSTAND_TWILIO_FROM_NUMBER": "+15550000000",
        "FARMSTAND_TWILIO_API_BASE": f"http://127.0.0.1:{peers_port}",
        "FARMSTAND_PUSH_SERVICE_HOSTS": "127.0.0.1",
        "FARMSTAND_PUSH_ALLOW_HTTP": "true",
        "FARMSTAND_VAPID_PRIVATE_KEY": vapid.private_key,
        "FARMSTAND_VAPID_PUBLIC_KEY": vapid.public_key,
        # The load comes from one address and few customers: the order rate limits (one
        # upsert per order, still paid) must not refuse it.
        "FARMSTAND_ORDER_LIMIT_PER_ACCOUNT": "1000000000",
        "FARMSTAND_ORDER_LIMIT_PER_ADDRESS": "1000000000",
    }
    if config.embedded:
        ours.update({"FARMSTAND_EVENT_BUS": "memory", "FARMSTAND_DISPATCHER": "embedded"})
    else:
        ours.update(
            {
                "FARMSTAND_EVENT_BUS": "redis",
                "FARMSTAND_REDIS_URL": config.redis_url,
                # A channel of its own: other runs and tests share this Redis.
                "FARMSTAND_REDIS_CHANNEL": f"farmstand:bench:{uuid.uuid4().hex}",
                "FARMSTAND_DISPATCHER": "off",
            }
        )
        if config.quick:
            # Enough for the quick run's 16 clients over two processes; the standard 20 per
            # process (and the floor's 32 clients, see plan.floor_connections) took the
            # PostgreSQL server near its 100 connections, and the test suite's other
            # PostgreSQL tests got "too many clients".
            ours["FARMSTAND_DB_POOL_SIZE"] = str(QUICK_POOL_SIZE)
    return {**os.environ, "PYTHONUNBUFFERED": "1", **ours}


def segments(
    config: BenchConfig, plan: Plan
) -> tuple[list[dataset.Segment], list[dataset.Segment], tuple[int, int]]:
    """The order segments the phases consume, and the (farm, customer) stream counts."""
    farm_streams = min(config.farms, config.connections // 2)
    customer_streams = min(config.customers, config.connections - farm_streams)
    farm_streams = min(config.farms, config.connections - customer_streams)
    status = sum(plan.status_step_orders) + plan.peak_orders + plan.extra_orders
    pending = [
        dataset.Segment("status", status),
        dataset.Segment("sse", plan.sse_orders, customers=customer_streams, farms=farm_streams),
        dataset.Segment("floor", plan.floor_orders),
    ]
    preparing = [
        dataset.Segment("notify_latency", plan.notify_latency_orders, reachable=True),
        dataset.Segment("notify_backlog", plan.notify_backlog_orders, reachable=True),
    ]
    return pending, preparing, (farm_streams, customer_streams)


async def check_redis(url: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname, parts.port or 6379), timeout=5
        )
    except (OSError, TimeoutError) as exc:
        raise BenchError(f"Redis is not reachable at {url}: {exc}") from None
    writer.close()


async def start_peers(
    children: Children, work: Path, keys: dataset.PushKeys
) -> tuple[Child, int, int]:
    options = {
        "push_private": keys.private_scalar,
        "push_auth": keys.auth,
        "twilio_sid": TWILIO_SID,
        "twilio_token": TWILIO_TOKEN,
    }
    child = children.spawn(
        "peers",
        [sys.executable, "-m", "farmstand.bench.peers", json.dumps(options)],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        cwd=work,
        log=work / "peers.log",
        stdout=subprocess.PIPE,
    )
    assert child.proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(child.proc.stdout.readline), timeout=60)
    if not line:
        raise BenchError(f"the notification peers did not start:\n{child.log_tail()}")
    ports = json.loads(line)
    return child, int(ports["http_port"]), int(ports["smtp_port"])


async def start_server(
    ctx_children: Children, config: BenchConfig, env: dict[str, str], work: Path, port: int
) -> Child:
    args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(config.workers)]
    child = ctx_children.spawn(
        "farmstand serve",
        servers.farmstand_command(*args),
        env=env,
        cwd=work,
        log=work / "serve.log",
    )
    await servers.wait_healthy(child, port, within=300)
    if config.workers > 1:
        # Every uvicorn worker must be up, not just the first to answer.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if len(servers.group_pids(child.pid)) >= config.workers + 1:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
    return child


async def prepare(
    config: BenchConfig,
    children: Children,
    work: Path,
    say: Callable[[str], None],
    cleanup: list[Callable[[], Any]],
) -> Context:
    plan = make_plan(config)
    rng = random.Random(config.seed)
    keys = dataset.PushKeys.generate(rng)
    if not config.embedded:
        await check_redis(config.redis_url)
    _, peers_port, smtp_port = await start_peers(children, work, keys)
    if config.embedded:
        database_url = f"sqlite+aiosqlite:///{work / 'bench.db'}"
    else:
        try:
            name = await servers.create_database(config.database_url)
        except (OSError, Exception) as exc:
            raise BenchError(f"cannot create a database at {config.database_url}: {exc}") from None
        cleanup.append(lambda: servers.drop_database(config.database_url, name))
        database_url = servers.database_url_for(config.database_url, name)
        say(f"database {name}")
    port = servers.free_port()
    env = server_env(config, work, database_url, port, peers_port, smtp_port)
    await servers.run_cli(children, "migrate", ["migrate"], env, work, work / "migrate.log")
    pending, preparing, _ = segments(config, plan)
    started = time.monotonic()
    # The server starts while the data loads: both take seconds, neither needs the other.
    serving = asyncio.create_task(start_server(children, config, env, work, port))
    data, rows = await asyncio.to_thread(
        lambda: dataset.build(
            seed=config.seed,
            farms=config.farms,
            customers=config.customers,
            pending=pending,
            preparing=preparing,
            push_base=f"http://127.0.0.1:{peers_port}",
            keys=keys,
        )
    )
    try:
        await dataset.load(database_url, rows)
    except BaseException:
        serving.cancel()
        raise
    del rows
    say(f"data set loaded in {time.monotonic() - started:.1f} s: {data.counts()}")
    serve = await serving
    say(f"server up on 127.0.0.1:{port} after {time.monotonic() - started:.1f} s")
    data_path = work / "dataset.json"
    data_path.write_text(json.dumps(data.to_json()))
    load_child = children.spawn(
        "load",
        [sys.executable, "-m", "farmstand.bench.load", str(data_path), str(port)],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        cwd=work,
        log=work / "load.log",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    load = LoadClient(load_child)
    await load.start()
    ctx = Context(
        config=config,
        plan=plan,
        work=work,
        children=children,
        data=data,
        database_url=database_url,
        env=env,
        port=port,
        peers_port=peers_port,
        serve=serve,
        load=load,
    )
    if config.orders is not None and config.orders < plan.pending_needed:
        ctx.warnings.append(
            f"--orders {config.orders} was too few for the plan: loaded {plan.pending_needed} "
            "PENDING orders (each status update needs one of its own)."
        )
    if not config.embedded:
        await ctx.start_workers()
    return ctx


@contextlib.asynccontextmanager
async def workspace(keep_logs: Path) -> Any:
    """A temporary directory for the run; its logs are copied to ``keep_logs`` at the end."""
    work = Path(tempfile.mkdtemp(prefix="farmstand-bench-"))
    try:
        yield work
    finally:
        await asyncio.to_thread(_keep_logs, work, keep_logs / "logs")
        shutil.rmtree(work, ignore_errors=True)


def _keep_logs(work: Path, logs: Path) -> None:
    with contextlib.suppress(OSError):
        logs.mkdir(parents=True, exist_ok=True)
        for log in work.glob("*.log"):
            shutil.copy(log, logs / log.name)
