"""Fixtures: a migrated database per backend (SQLite, PostgreSQL), an app, a client."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from farmstand.app import create_app
from farmstand.config import Settings, load_settings
from farmstand.migrate import upgrade
from farmstand.models import Base
from tests import services
from tests.factories import Factory

TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"


def make_settings(database_url: str, data_dir: Path, **overrides: object) -> Settings:
    return load_settings(
        environment="test",
        data_dir=data_dir,
        database_url=database_url,
        secret_key=TEST_SECRET,
        password_hash_time_cost=1,
        password_hash_memory_kib=64,
        **{
            # Tests that send notifications run a dispatcher themselves, in their own time.
            "dispatcher": "off",
            **overrides,
        },
    )


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file; each test gets a copy (migrating once is the slow part)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    services.run_sync(upgrade, f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run, migrated from empty, dropped at the end."""
    services.require("postgres")
    name = f"farmstand_test_{uuid.uuid4().hex[:10]}"
    services.run(services.admin_execute(f'CREATE DATABASE "{name}"'))
    url = services.postgres_url_for(name)
    try:
        services.run_sync(upgrade, url)
        yield url
    finally:
        services.run(services.admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _truncate_postgres(url: str) -> None:
    """Empty every table (DELETE is much faster than TRUNCATE on tables this small)."""
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        async with conn.transaction():
            for table in reversed(Base.metadata.sorted_tables):
                if table.name == "event_counter":
                    await conn.execute('UPDATE "event_counter" SET position = 0')
                else:
                    await conn.execute(f'DELETE FROM "{table.name}"')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Each test against both backends, starting from empty tables."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "farmstand.db"
        shutil.copyfile(template, path)
        yield f"sqlite+aiosqlite:///{path}"
    else:
        url: str = request.getfixturevalue("postgres_database")
        services.run(_truncate_postgres(url))
        yield url


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "farmstand.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    services.run(_truncate_postgres(postgres_database))
    return postgres_database


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with services.lifespan(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
def factory(app: FastAPI, client: httpx.AsyncClient) -> Factory:
    return Factory(app.state.runtime, client)
