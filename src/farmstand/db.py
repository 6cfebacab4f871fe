"""Engine, sessions and the one-transaction helper every use case goes through."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    MetaData,
    Numeric,
    String,
    Table,
    bindparam,
    event,
    func,
    insert,
    literal,
    select,
    union_all,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from farmstand.config import Settings
from farmstand.files import private_sqlite

log = logging.getLogger(__name__)

# Told about every commit with the committed session's ``info`` (e.g. which events it wrote).
CommitListener = Callable[[dict[str, Any]], Awaitable[None]]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


async def wait_event(event: asyncio.Event, seconds: float) -> None:
    """Wait until ``event`` is set or ``seconds`` pass.

    Not ``asyncio.wait_for``: on Python 3.11 it can swallow a cancellation that arrives as the
    event is set, and a background loop cancelled at shutdown would then never stop."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite returns naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Money(TypeDecorator[Decimal]):
    """NUMERIC(10, 2) on PostgreSQL; an exact decimal string on SQLite (which has no decimal)."""

    impl = Numeric(10, 2)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(16))
        return dialect.type_descriptor(Numeric(10, 2, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        quantized = Decimal(value).quantize(Decimal("0.01"))
        return str(quantized) if dialect.name == "sqlite" else quantized

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(str(value)).quantize(Decimal("0.01"))


JSONType = JSON().with_variant(JSONB(), "postgresql")


# -- writing several rows of several tables in one round trip ---------------------------------


@dataclass(frozen=True)
class Write:
    """One DML statement of a use case's change, built once per shape and reused.

    ``build`` makes the statement with bind parameters named after ``prefix`` (so writes of
    one change never share a name); ``params`` fills them for this change; ``counted`` marks
    a statement with RETURNING whose row count the caller checks (an UPDATE's compare-and-set).
    """

    shape: Hashable
    build: Callable[[], Any]
    params: dict[str, Any]
    counted: bool = False


def insert_rows(
    table: Table, columns: Sequence[str], count: int, prefix: str, shared: Sequence[str] = ()
) -> Any:
    """``INSERT INTO table (columns) SELECT <row 0> UNION ALL SELECT <row 1> …`` with typed
    bind parameters ``{prefix}{i}_{column}`` (``{prefix}_{column}`` for ``shared`` ones).

    Unlike a multi-row VALUES, SQLAlchemy can cache this statement's compiled form."""

    def param(index: int, name: str) -> Any:
        key = f"{prefix}_{name}" if name in shared else f"{prefix}{index}_{name}"
        return bindparam(key, type_=table.c[name].type)

    rows = [select(*(param(index, name) for name in columns)) for index in range(count)]
    source = rows[0] if count == 1 else union_all(*rows)
    return insert(table).from_select([table.c[name] for name in columns], source)


def rows_params(
    prefix: str, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    return {
        f"{prefix}{index}_{name}": row[name] for index, row in enumerate(rows) for name in columns
    }


_STATEMENTS: dict[tuple[str, Hashable], Any] = {}


def _statement(dialect: str, key: Hashable, build: Callable[[], Any]) -> Any:
    statement = _STATEMENTS.get((dialect, key))
    if statement is None:
        statement = _STATEMENTS[(dialect, key)] = build()
    return statement


async def write_together(session: AsyncSession, writes: Sequence[Write]) -> list[int]:
    """Run the writes in the caller's transaction, in order; returns the row counts of the
    ``counted`` ones (0 for the others). Core on the session's connection: the ORM's execute
    path costs more than these statements need.

    On PostgreSQL they go as ONE statement (data-modifying CTEs), so a change of a status,
    its history, events and notifications costs one round trip; SQLite (in-process, no
    round trips) runs them one after another. Statements are built once per shape.
    """
    dialect = session.get_bind().dialect.name
    if dialect != "postgresql" or len(writes) == 1:
        counts = []
        connection = await session.connection()
        for write in writes:
            result = await connection.execute(
                _statement(dialect, write.shape, write.build), write.params
            )
            counts.append(int(result.rowcount) if write.counted else 0)
        return counts

    def combined() -> Any:
        ctes = [write.build().cte(f"w{index}") for index, write in enumerate(writes)]
        counted = [
            select(func.count()).select_from(cte).scalar_subquery() if write.counted else literal(0)
            for write, cte in zip(writes, ctes, strict=True)
        ]
        return select(*counted).add_cte(*ctes)

    params: dict[str, Any] = {}
    for write in writes:
        params.update(write.params)
    key = ("together", tuple(write.shape for write in writes))
    row = (
        await (await session.connection()).execute(_statement(dialect, key, combined), params)
    ).one()
    return [int(count) for count in row]


class Database:
    """Owns the engines and hands out transactions; one per app, none at import time.

    Requests share one pool; background work (event sequencing, the hub's catch-up, the
    embedded dispatcher) has a small pool of its own, so it never queues behind requests.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 20,
        max_overflow: int = 0,
        pool_timeout: float = 5.0,
        background_pool_size: int = 3,
    ) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.dialect = "sqlite" if self.is_sqlite else "postgresql"
        if self.is_sqlite:
            in_memory = url.rstrip("/").endswith(("sqlite+aiosqlite:", ":memory:"))
            if not in_memory:
                private_sqlite(url)  # 0600, and so its -wal and -shm files
            self.engine: AsyncEngine = create_async_engine(
                url,
                connect_args={"timeout": 30},
                # An in-memory database is one connection (StaticPool): nothing to wait for.
                **({} if in_memory else {"pool_timeout": pool_timeout}),
            )
            _configure_sqlite(self.engine)
            # Writers take SQLite's write lock up front (BEGIN IMMEDIATE) so they queue on the
            # busy timeout instead of failing when a stale read snapshot tries to upgrade.
            write_engine = self.engine.execution_options(sqlite_begin="IMMEDIATE")
            # Reads keep a transaction: WAL gives them one snapshot across statements.
            read_engine = self.engine
            # One process, one file: background work shares the pool (and writes IMMEDIATE).
            self.background_engine: AsyncEngine = write_engine
            background_read = read_engine
        else:
            # Connections are kept (no overflow ones opened and closed under load, each a
            # PostgreSQL backend forked), not pinged before use (a round trip each time; a
            # dead connection fails one transaction and the pool reconnects), and a request
            # waits at most ``pool_timeout`` for one before it is refused with a 503.
            self.engine = create_async_engine(
                url,
                pool_size=pool_size,
                max_overflow=max_overflow,
                pool_timeout=pool_timeout,
                pool_recycle=3600,
            )
            write_engine = self.engine
            # A read of one statement needs no BEGIN/COMMIT; at READ COMMITTED each statement
            # of a read transaction sees its own snapshot anyway.
            read_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
            self.background_engine = create_async_engine(
                url, pool_size=background_pool_size, max_overflow=0, pool_recycle=3600
            )
            background_read = self.background_engine.execution_options(isolation_level="AUTOCOMMIT")
        self._write_sessions = async_sessionmaker(write_engine, expire_on_commit=False)
        self._read_sessions = async_sessionmaker(read_engine, expire_on_commit=False)
        self._background_writes = async_sessionmaker(self.background_engine, expire_on_commit=False)
        self._background_reads = async_sessionmaker(background_read, expire_on_commit=False)
        self.commit_listeners: list[CommitListener] = []
        self._writers = _WriterQueue() if self.is_sqlite else None
        # Copied into every session's ``info``: what use cases need from the app (the notifier).
        self.session_context: dict[str, Any] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_timeout=settings.db_pool_timeout_seconds,
        )

    @asynccontextmanager
    async def transaction(
        self, *, write: bool = True, background: bool = False
    ) -> AsyncIterator[AsyncSession]:
        """One transaction: commit on success, roll back on error; then tell the commit
        listeners (the event sequencer, the notification dispatcher) what was committed.

        ``background`` takes the connection from the background pool (work that must not
        wait behind requests)."""
        if background:
            factory = self._background_writes if write else self._background_reads
        else:
            factory = self._write_sessions if write else self._read_sessions
        async with self.writing(write), factory() as session:
            session.info.update(self.session_context)
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise
            info = session.info
        if info.keys() - self.session_context.keys():  # only a transaction that wrote news
            for listener in self.commit_listeners:
                try:
                    await listener(info)
                except Exception:  # the outbox relay retries whatever a listener failed to do
                    log.exception("commit listener failed")

    @asynccontextmanager
    async def writing(self, write: bool = True) -> AsyncIterator[None]:
        """Hold this process's turn to write, on SQLite (a no-op on PostgreSQL).

        SQLite has one write lock per file, and a writer that finds it taken sleeps in the
        busy handler (up to 100 ms a try) instead of queueing: under load, requests and the
        embedded dispatcher then wait hundreds of milliseconds for a lock that was free long
        before. Writers of this process queue here in arrival order instead; the busy timeout
        still covers other processes (the CLI) on the same file."""
        if self._writers is None or not write:
            yield
            return
        async with self._writers.turn():
            yield

    async def dispose(self) -> None:
        await self.engine.dispose()
        if not self.is_sqlite:
            await self.background_engine.dispose()


class _WriterQueue:
    """A first-come, first-served lock, re-entrant within one task: a use case that opens a
    second write transaction while its first has not written yet keeps working as before."""

    def __init__(self) -> None:
        self._locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
        self._owner: asyncio.Task[Any] | None = None

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        task = asyncio.current_task()
        if task is not None and task is self._owner:
            yield
            return
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:  # one lock per event loop (tests run several loops over time)
            self._locks = {loop: asyncio.Lock()}
            lock = self._locks[loop]
        async with lock:
            self._owner = task
            try:
                yield
            finally:
                self._owner = None


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN is ours to emit.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")
