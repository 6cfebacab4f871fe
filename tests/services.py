"""Finding the real services tests need; skip locally, fail in CI (FARMSTAND_REQUIRE_SERVICES=1)."""

from __future__ import annotations

import asyncio
import os
import socket
from urllib.parse import urlsplit

import pytest

POSTGRES_URL = os.environ.get(
    "FARMSTAND_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("FARMSTAND_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


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


def run(coro: object) -> object:
    """Run a coroutine to completion on a loop of its own, even from inside a running loop."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()  # type: ignore[arg-type]


def run_sync(function: object, *args: object) -> object:
    """Call a blocking function that may start its own event loop (Alembic) off this thread."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(function, *args).result()  # type: ignore[arg-type]
