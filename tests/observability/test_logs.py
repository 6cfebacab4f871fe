"""The request line, the request id, the two formats and uvicorn's slow-client error."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from farmstand.app import create_app
from farmstand.config import LogFormat
from farmstand.observability.logs import (
    ACCESS_LOGGER,
    SLOW_CLIENT_MESSAGE,
    JsonFormatter,
    configure_logging,
    redact,
)
from tests import services
from tests.conftest import make_settings
from tests.observability.conftest import METRICS_TOKEN, Capture, scrape, value


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == ACCESS_LOGGER]


async def test_one_line_per_request_with_ids_only(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    order_id = str(uuid.uuid4())

    await client.get(
        f"/api/orders/{order_id}/status?token=query-secret",
        headers={"X-Request-ID": "lb-1234", "Authorization": "Bearer header-secret"},
    )

    (record,) = _access_lines(caplog)
    line = json.loads(JsonFormatter().format(record))
    assert {k: line[k] for k in ("method", "route", "status", "request_id", "client")} == {
        "method": "GET",
        "route": "/api/orders/{order_id}/status",
        "status": 401,
        "request_id": "lb-1234",
        "client": "127.0.0.1",
    }
    assert isinstance(line["duration_ms"], float)
    text = json.dumps(line) + logging.Formatter().format(record)
    for secret in ("query-secret", "header-secret", "?", order_id):
        assert secret not in text


async def test_the_request_id_is_echoed_when_sane_and_replaced_otherwise(
    client: httpx.AsyncClient,
):
    sane = await client.get("/healthz", headers={"X-Request-ID": "edge-7f3a.b_c:1"})
    insane = await client.get("/healthz", headers={"X-Request-ID": "a b\tc" + "x" * 200})
    missing = await client.get("/healthz")

    assert sane.headers["x-request-id"] == "edge-7f3a.b_c:1"
    for response in (insane, missing):
        generated = response.headers["x-request-id"]
        assert len(generated) == 32 and int(generated, 16) >= 0


async def test_an_unexpected_error_carries_the_same_id_in_reply_header_and_logs(
    app: FastAPI, caplog: pytest.LogCaptureFixture
):
    async def boom() -> None:
        raise RuntimeError("kaboom")

    app.add_api_route("/boom", boom)
    caplog.set_level(logging.INFO)
    # Raising app exceptions: the error must be answered, never re-raised to the server
    # (which would log it a second time).
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/boom")

    assert response.status_code == 500
    request_id = response.headers["x-request-id"]
    assert response.json()["details"] == {"requestId": request_id}
    (access,) = _access_lines(caplog)
    assert (access.__dict__["status"], access.__dict__["request_id"]) == (500, request_id)
    (error,) = [r for r in caplog.records if r.name == "farmstand.http_errors"]
    assert request_id in error.getMessage()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    loggers = ("uvicorn", "uvicorn.error", "uvicorn.access", "farmstand", "httpx")
    saved_loggers = {
        name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate)
        for name in loggers
    }
    levels = {name: logging.getLogger(name).level for name in loggers}
    yield
    root.handlers[:], _ = saved
    root.setLevel(saved[1])
    for name, (handlers, propagate) in saved_loggers.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.propagate = propagate
        logger.setLevel(levels[name])


@pytest.mark.usefixtures("restore_logging")
def test_json_format_puts_each_fact_in_a_field(tmp_path: Path, sqlite_url: str):
    stream = io.StringIO()
    configure_logging(make_settings(sqlite_url, tmp_path, log_format="json"), stream=stream)
    logging.getLogger("uvicorn.error").setLevel(logging.INFO)  # as `serve` sets it

    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    try:
        raise ValueError("bad")
    except ValueError:
        logging.getLogger("farmstand.test").exception("it failed")

    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["logger"] == "uvicorn.error" and first["level"] == "INFO"
    assert first["message"] == "Started server process [42]"
    assert first["time"].endswith("+00:00")
    assert second["level"] == "ERROR" and "ValueError: bad" in second["exception"]


@pytest.mark.usefixtures("restore_logging")
def test_text_format_is_one_readable_line(tmp_path: Path, sqlite_url: str):
    stream = io.StringIO()
    settings = make_settings(sqlite_url, tmp_path)
    assert settings.log_format is LogFormat.TEXT
    configure_logging(settings, stream=stream)
    configure_logging(settings, stream=stream)  # again: still one handler

    logging.getLogger("uvicorn.error").warning("something happened")
    logging.getLogger("uvicorn.access").info("GET / 200")  # uvicorn's own: replaced by ours
    logging.getLogger("httpx").info("HTTP Request: POST https://push.example/secret-token")

    (line,) = stream.getvalue().splitlines()
    assert line.endswith("WARNING uvicorn.error: something happened")


async def test_uvicorn_slow_client_error_becomes_a_counted_debug_line(
    sqlite_url: str, tmp_path: Path
):
    app = create_app(make_settings(sqlite_url, tmp_path, metrics_token=METRICS_TOKEN))
    uvicorn_log = logging.getLogger("uvicorn.error")
    handler = Capture()
    uvicorn_log.addHandler(handler)
    try:
        async with services.lifespan(app):
            # What uvicorn's protocol logs when a stream was dropped for not reading.
            uvicorn_log.error(SLOW_CLIENT_MESSAGE + ".")
            uvicorn_log.error("Exception in ASGI application")  # other errors still pass
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                text = await scrape(client)
    finally:
        uvicorn_log.removeHandler(handler)

    assert [r.getMessage() for r in handler.records] == ["Exception in ASGI application"]
    assert value(text, "farmstand_sse_disconnects_total", reason="slow") == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("550 5.1.1 <carol+x@mail.example.com>: unknown", "550 5.1.1 <<email>>: unknown"),
        ("The 'To' number +1 555-555-0123 is not valid", "The 'To' number <phone> is not valid"),
        ("call (555) 555-0123", "call <phone>"),
        # What is not a person's: versions, addresses, times, dates, order numbers, counts.
        ("SMTP 10.0.0.1:587 at 12:30:45 on 2026-12-03", None),
        ("order FS-20261203-0042, attempt 3 of 10", None),
    ],
)
def test_redact_leaves_no_address_or_number_of_a_person(text: str, expected: str | None):
    assert redact(text) == (expected or text)
