"""Finding the real services tests need; skip locally, fail in CI (FARMSTAND_REQUIRE_SERVICES=1)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
from asgi_lifespan import LifespanManager

POSTGRES_URL = os.environ.get(
    "FARMSTAND_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("FARMSTAND_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

T = TypeVar("T")


def services_required() -> bool:
    return os.environ.get("FARMSTAND_REQUIRE_SERVICES", "") not in ("", "0", "false")


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url.replace("+asyncpg", ""))
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), timeout=2
        ):
            return True
    except OSError:
        return False


def require(service: str) -> None:
    """Skip (locally) or fail (in CI) when ``service`` is not reachable."""
    url, port = {"postgres": (POSTGRES_URL, 5432), "redis": (REDIS_URL, 6379)}[service]
    if _reachable(url, port):
        return
    message = f"{service} is not reachable at {url}"
    if services_required():
        pytest.fail(f"{message} (required: FARMSTAND_REQUIRE_SERVICES=1)")
    pytest.skip(message)


CHROMIUM = os.environ.get("FARMSTAND_TEST_CHROMIUM", "/usr/bin/chromium")


def require_browser() -> str:
    """Debian's chromium for the browser tests (``make test`` installs it when it can): skip
    (locally) or fail (in CI) when it is missing. Returns its path."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    message = f"no browser at {CHROMIUM} (apt-get install chromium)"
    if services_required():
        pytest.fail(f"{message} (required: FARMSTAND_REQUIRE_SERVICES=1)")
    pytest.skip(message)


async def admin_execute(statement: str) -> None:
    """Run one statement on the PostgreSQL server outside a transaction (CREATE DATABASE)."""
    import asyncpg

    parts = urlsplit(POSTGRES_URL.replace("+asyncpg", ""))
    conn = await asyncpg.connect(
        host=parts.hostname,
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password,
        database=parts.path.lstrip("/") or "postgres",
    )
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def postgres_url_for(database: str) -> str:
    parts = urlsplit(POSTGRES_URL)
    return parts._replace(path=f"/{database}").geturl()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a loop of its own, even from inside a running loop."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def run_sync(function: Callable[..., T], *args: object) -> T:
    """Call a blocking function that may start its own event loop (Alembic) off this thread."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(function, *args).result()


def lifespan(app: Any) -> Any:
    """An app's start-up and shutdown around a test, with room for a crowded CI machine (the
    library's default of 5 s each turned slow machines into failed tests)."""
    return _Lifespan(app, startup_timeout=30, shutdown_timeout=30)


class _Lifespan(LifespanManager):
    """On a shutdown that times out, print where every task is stuck, then fail as before."""

    async def __aexit__(self, *exc_info: Any) -> None:
        try:
            await super().__aexit__(*exc_info)
        except TimeoutError:
            for task in asyncio.all_tasks():
                print(f"--- {task.get_name()}: {task.get_coro()!r}", file=sys.stderr)
                task.print_stack(limit=30, file=sys.stderr)
            raise
