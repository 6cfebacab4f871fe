"""What a bench run does, decided and sized before anything starts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# The offered rates the search steps through (updates per second); bounded by --max-rate.
RATE_LADDER = (100, 200, 400, 500, 700, 1000, 1500, 2000, 3000, 4000, 5000)
P95_LIMIT_MS = 200.0  # the rate search keeps P95 under this
REPORTED_RATE = 500  # P95 at this rate is reported on its own when the search reaches it
SSE_UPDATE_RATE = 100  # status updates per second while the streams are open
FLOOR_CONNECTIONS = 32
QUICK_FLOOR_CONNECTIONS = 8  # --quick on PostgreSQL: few connections, the figure is not the aim
FLOOR_ORDERS_PER_CONNECTION = 100  # each floor connection cycles through its own orders
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost"})


class PlanError(ValueError):
    """A configuration the bench refuses, with the reason in a sentence."""


@dataclass
class BenchConfig:
    embedded: bool = False
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
    redis_url: str = "redis://127.0.0.1:6379/0"
    workers: int = 2
    notification_workers: int = 2
    farms: int = 200
    customers: int = 10_000
    orders: int | None = None  # PENDING orders; None: exactly what the plan needs
    seed: int = 7
    rates: list[int] = field(default_factory=list)  # fixed rates instead of the search
    max_rate: int = 2000
    duration: float = 10.0  # seconds per measured step
    connections: int = 10_000  # SSE streams held open
    concurrency: int = 64  # closed-loop clients of the peak phases
    pool: int = 256  # keep-alive connections of an open-loop phase
    history_rate: int = 200
    place_rate: int = 100
    notify_orders: int = 3000  # the backlog the notification workers drain
    notify_rate: int = 50  # READY changes per second while commit-to-send is measured
    floor_duration: float | None = None  # default: duration
    drain_timeout: float = 120.0  # the longest wait for notifications to be sent
    out: Path = Path("bench-results")
    quick: bool = False

    @classmethod
    def quick_config(cls, **overrides: Any) -> BenchConfig:
        """The CI configuration: every phase runs, on small numbers, in seconds."""
        values: dict[str, Any] = {
            "farms": 4,
            "customers": 40,
            "rates": [10, 25],
            "duration": 2.0,
            "connections": 40,
            "concurrency": 16,
            "pool": 32,
            "history_rate": 20,
            "place_rate": 10,
            "notify_orders": 30,
            "notify_rate": 10,
            "floor_duration": 2.0,
            "drain_timeout": 40.0,
            "quick": True,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["out"] = str(self.out)
        data["database_url"] = _mask(self.database_url)
        data["redis_url"] = _mask(self.redis_url)
        return data

    @property
    def request_drain(self) -> float:
        """How long a phase waits for the answers still due after its last scheduled request.

        Bounded either way; in the quick configuration long enough that even a very slow
        server answers every one of its few requests (CI checks that none failed).
        """
        return 120.0 if self.quick else max(15.0, 2 * self.duration)

    @property
    def floor_seconds(self) -> float:
        return self.floor_duration if self.floor_duration is not None else self.duration


@dataclass(frozen=True)
class Plan:
    """The phases' sizes: how many PENDING orders each consumes, in the order they run."""

    status_rates: tuple[int, ...]
    searching: bool
    peak_orders: int
    sse_orders: int
    floor_orders: int
    notify_latency_orders: int
    notify_backlog_orders: int
    status_step_orders: tuple[int, ...]
    extra_orders: int  # PENDING orders beyond the plan's needs (--orders larger than needed)

    @property
    def pending_needed(self) -> int:
        return sum(self.status_step_orders) + self.peak_orders + self.sse_orders + self.floor_orders

    @property
    def pending_total(self) -> int:
        return self.pending_needed + self.extra_orders

    @property
    def preparing_total(self) -> int:
        return self.notify_latency_orders + self.notify_backlog_orders


def make_plan(config: BenchConfig) -> Plan:
    """Size every phase from rate x duration; refuse what cannot run."""
    check_config(config)
    if config.rates:
        rates = tuple(config.rates)
        searching = False
    else:
        rates = tuple(r for r in RATE_LADDER if r <= config.max_rate) or (config.max_rate,)
        searching = True
    steps = tuple(int(rate * config.duration) + 1 for rate in rates)
    peak = int(max(max(rates), 1000 if not config.quick else 0) * config.duration) + 1
    sse = int(SSE_UPDATE_RATE * config.duration) + 1 if not config.quick else 40
    floor = floor_connections(config) * FLOOR_ORDERS_PER_CONNECTION
    if config.quick:
        floor = floor_connections(config) * 4 if not config.embedded else 16
    latency_orders = int(config.notify_rate * config.duration) + 1
    needed = sum(steps) + peak + sse + floor
    extra = 0
    if config.orders is not None:
        extra = max(0, config.orders - needed)
    return Plan(
        status_rates=rates,
        searching=searching,
        peak_orders=peak,
        sse_orders=sse,
        floor_orders=floor,
        notify_latency_orders=latency_orders,
        notify_backlog_orders=config.notify_orders,
        status_step_orders=steps,
        extra_orders=extra,
    )


def check_config(config: BenchConfig) -> None:
    if config.farms < 1 or config.customers < 1:
        raise PlanError("--farms and --customers must be at least 1.")
    if config.connections < 2:
        raise PlanError("--connections must be at least 2 (a farm stream and a customer's).")
    if config.connections > config.farms + config.customers:
        raise PlanError(
            f"--connections {config.connections} needs as many accounts: each farm and each "
            f"customer holds one stream, and there are {config.farms + config.customers} "
            "(raise --customers)."
        )
    if config.duration <= 0 or config.duration > 600:
        raise PlanError("--duration must be between 0 and 600 seconds.")
    if any(rate < 1 or rate > 100_000 for rate in config.rates):
        raise PlanError("--rate values must be between 1 and 100000 per second.")
    if not 1 <= config.max_rate <= 100_000:
        raise PlanError("--max-rate must be between 1 and 100000 per second.")
    if not 1 <= config.concurrency <= 4096 or not 1 <= config.pool <= 4096:
        raise PlanError("--concurrency and --pool must be between 1 and 4096.")
    if not 1 <= config.notify_rate <= 100_000 or not 1 <= config.notify_orders <= 1_000_000:
        raise PlanError("--notify-rate and --notify-orders must be at least 1.")
    if not 1 <= config.history_rate <= 100_000 or not 1 <= config.place_rate <= 100_000:
        raise PlanError("--history-rate and --place-rate must be between 1 and 100000.")
    if config.workers < 1:
        raise PlanError("--workers must be at least 1.")
    if not config.embedded and config.notification_workers < 1:
        raise PlanError("--notification-workers must be at least 1 (they send every notification).")
    if config.embedded and config.workers != 1:
        raise PlanError("--embedded runs one server process: leave --workers at 1.")
    if not config.embedded:
        check_loopback(config.database_url, "--database-url")
        check_loopback(config.redis_url, "--redis-url")
        if not config.database_url.startswith(("postgresql+asyncpg://", "postgresql://")):
            raise PlanError("--database-url must be a postgresql+asyncpg:// URL.")
        if not config.redis_url.startswith("redis://"):
            raise PlanError("--redis-url must be a redis:// URL.")


def check_loopback(url: str, option: str) -> None:
    """The bench only ever targets this machine: its load would hurt anything else."""
    host = urlsplit(url).hostname
    if host not in LOOPBACK_HOSTS:
        raise PlanError(
            f"{option} must point at 127.0.0.1 (the bench never targets another host), "
            f"not {host or 'a socket path'}."
        )


def _mask(url: str) -> str:
    parts = urlsplit(url)
    if not parts.password:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def floor_connections(config: BenchConfig) -> int:
    """The raw-driver floor's clients: one on SQLite (one writer at a time anyway)."""
    if config.embedded:
        return 1
    return QUICK_FLOOR_CONNECTIONS if config.quick else FLOOR_CONNECTIONS
