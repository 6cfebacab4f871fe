"""An unexpected error: answered once (an envelope for the API, a page for a page), logged
once, never re-raised to the server."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import FastAPI

from farmstand.web.pages import page_router


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


async def test_a_bug_on_a_page_shows_an_error_page_with_a_reference_and_logs_once(
    app: FastAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
):
    router = page_router()

    @router.get("/broken-page")
    async def broken() -> None:
        raise RuntimeError("a bug with a secret in it")

    app.include_router(router)
    caplog.set_level(logging.INFO)

    page = await client.get("/broken-page")  # the transport raises what the app re-raises

    assert page.status_code == 500
    assert page.headers["content-type"].startswith("text/html")
    reference = page.headers["x-request-id"]
    assert "Something went wrong" in page.text and reference in page.text
    assert "secret" not in page.text
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.name for r in errors] == ["farmstand.http_errors"]
