"""The garbage collector set up for a server process, and left alone otherwise."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from farmstand.app import create_app
from tests import services
from tests.conftest import make_settings


@pytest.fixture
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


async def test_a_server_freezes_its_start_up_objects_and_raises_the_young_threshold(
    sqlite_url: str, tmp_path: Path, restore_gc: None
):
    gc.unfreeze()
    app = create_app(make_settings(sqlite_url, tmp_path, gc_young_threshold=4321), tune_gc=True)
    async with services.lifespan(app):
        assert gc.get_threshold()[0] == 4321
        # The app, its mappers and its API document: skipped by every collection from now on.
        assert gc.get_freeze_count() > 50_000
        assert app.openapi_schema is not None


async def test_an_app_built_without_tuning_leaves_the_collector_alone(
    sqlite_url: str, tmp_path: Path, restore_gc: None
):
    gc.unfreeze()
    before = gc.get_threshold()
    app = create_app(make_settings(sqlite_url, tmp_path, gc_young_threshold=4321))
    async with services.lifespan(app):
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() == 0
